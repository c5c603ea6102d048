#!/bin/sh
# build.sh OUTDIR — build the tiny Linux guest of labd's QEMU tests.
#
# Writes OUTDIR/vmlinuz (the kernel of Debian's linux-image-amd64) and
# OUTDIR/initrd.img (a gzip'ed newc cpio with busybox-static, the NIC and
# ACPI button modules, and ./init as /init), from Debian packages only:
# `apt-get download` then `dpkg -x` into a temporary directory. Nothing is
# installed on the host. The archive itself is written by the cpio applet of
# the downloaded busybox, so the host needs no cpio.
#
# The build is cached: when both outputs exist and are newer than every
# input file of this directory, the script exits at once. Concurrent runs
# on the same OUTDIR serialise on OUTDIR/.lock.
#
# Host needs: apt-get, apt-cache, dpkg, gzip, flock (util-linux).
set -eu

# Modules the guest loads, by name; their dependencies are added from each
# module's modinfo. Debian builds all of these as modules.
#   e1000, e1000e, virtio_net (over virtio_pci): the NICs of QEMU nodes;
#   button: the ACPI power button (system_powerdown), seen through evdev.
MODULES="e1000 e1000e virtio_pci virtio_net evdev button"

usage() { echo "usage: $0 OUTDIR" >&2; exit 2; }
[ $# -eq 1 ] || usage
out=$1
here=$(cd "$(dirname "$0")" && pwd)
inputs="$here/build.sh $here/init $here/power-button"

# fresh reports whether both outputs exist and are newer than every input.
fresh() {
	for o in "$out/vmlinuz" "$out/initrd.img"; do
		[ -s "$o" ] || return 1
		for i in $inputs; do
			[ "$o" -nt "$i" ] || return 1
		done
	done
}

fresh && exit 0
mkdir -p "$out"
exec 9>"$out/.lock"
flock 9
fresh && exit 0 # another run built it while we waited

work=$(mktemp -d "${TMPDIR:-/tmp}/labd-guest.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
mkdir "$work/debs" "$work/pkg" "$work/root"

# As root, apt-get download drops privileges to _apt, which cannot write
# into our private temporary directory; keep it root, as the caller is.
apt_opts=""
[ "$(id -u)" -ne 0 ] || apt_opts="-o APT::Sandbox::User=root"

# kernel_package prints the versioned kernel image package that the
# linux-image-amd64 metapackage depends on (e.g. linux-image-6.1.0-56-amd64).
kernel_package() {
	apt-cache depends linux-image-amd64 2>/dev/null |
		awk '$1 == "Depends:" && $2 ~ /^linux-image-/ { print $2; exit }'
}

# download fetches the kernel image and busybox-static into $work/debs.
download() {
	kpkg=$(kernel_package)
	[ -n "$kpkg" ] || return 1
	(cd "$work/debs" && apt-get -q $apt_opts download "$kpkg" busybox-static)
}

if ! download; then
	echo "build.sh: download failed; running apt-get update and retrying" >&2
	apt-get -q update
	download
fi
for deb in "$work"/debs/*.deb; do
	dpkg -x "$deb" "$work/pkg"
done

set -- "$work"/pkg/boot/vmlinuz-*
vmlinuz=$1
[ -f "$vmlinuz" ] || { echo "build.sh: no kernel in the package" >&2; exit 1; }
kver=${vmlinuz##*/vmlinuz-}
moddir=$work/pkg/lib/modules/$kver

# module_file prints the path of module $1 in the extracted package.
# modinfo names use '_' where file names may use '-'.
module_file() {
	dashed=$(echo "$1" | tr _ -)
	find "$moddir/kernel" \( -name "$1.ko*" -o -name "$dashed.ko*" \) | head -n 1
}

# module_deps prints the dependencies of module $1, read from the depends=
# field of its .modinfo section.
module_deps() {
	tr '\0' '\n' <"$(module_file "$1")" | sed -n 's/^depends=//p' | head -n 1 | tr , ' '
}

# copy_module copies module $1, uncompressed, into the image.
copy_module() {
	f=$(module_file "$1")
	dst=$work/root/lib/modules/$1.ko
	case $f in
	*.ko) cp "$f" "$dst" ;;
	*.ko.xz) xz -dc "$f" >"$dst" ;;
	*.ko.zst) zstd -qdc "$f" >"$dst" ;;
	*.ko.gz) gzip -dc "$f" >"$dst" ;;
	*) echo "build.sh: unknown module format $f" >&2; return 1 ;;
	esac
}

# add_module adds module $1 to the image after its dependencies, and
# appends it to load-order, the list /init loads in order. Plain sh has no
# local variables: this function keeps its state in $1 only, as it recurses.
add_module() {
	grep -qx "$1.ko" "$work/load-order" && return 0
	if [ -z "$(module_file "$1")" ]; then
		echo "build.sh: no module $1 in kernel $kver" >&2
		exit 1
	fi
	for dep in $(module_deps "$1"); do
		add_module "$dep"
	done
	copy_module "$1"
	echo "$1.ko" >>"$work/load-order"
}

root=$work/root
mkdir -p "$root/bin" "$root/lib/modules" "$root/etc/acpi/PWRF" \
	"$root/proc" "$root/sys" "$root/dev" "$root/tmp" "$root/root" \
	"$root/var/log" "$root/var/run"
: >"$work/load-order"
for m in $MODULES; do
	add_module "$m"
done
cp "$work/load-order" "$root/lib/modules/load-order"

cp "$work/pkg/bin/busybox" "$root/bin/busybox"
for applet in $("$root/bin/busybox" --list); do
	[ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
cp "$here/init" "$root/init"
# busybox acpid runs CONFDIR/<ACTION>/<PARAMETER> for an event; the power
# button is PWRF/00000080.
cp "$here/power-button" "$root/etc/acpi/PWRF/00000080"
chmod 0755 "$root/init" "$root/etc/acpi/PWRF/00000080"

(cd "$root" && find . | sort | "$root/bin/busybox" cpio -o -H newc -R 0:0) |
	gzip -9n >"$work/initrd.img"
cp "$vmlinuz" "$work/vmlinuz"

# Rename into place so that a reader never sees half a file.
mv -f "$work/vmlinuz" "$out/vmlinuz.new" && mv -f "$out/vmlinuz.new" "$out/vmlinuz"
mv -f "$work/initrd.img" "$out/initrd.img.new" && mv -f "$out/initrd.img.new" "$out/initrd.img"
echo "$kver" >"$out/kernel-version"
echo "build.sh: guest for kernel $kver in $out" >&2
