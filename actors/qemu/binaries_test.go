package qemu

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
)

// needQEMU fails a test on a machine without Debian's QEMU packages
// (make deps installs them).
func needQEMU(t *testing.T) {
	t.Helper()
	for _, bin := range []string{"/usr/bin/qemu-system-x86_64", "/usr/bin/qemu-img"} {
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("%s is not installed (make deps installs it)", bin)
		}
	}
}

// impostor copies /bin/true into dir under name: an executable that is
// not QEMU.
func impostor(t *testing.T, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

var releaseRE = regexp.MustCompile(`^\d+\.\d+(\.\d+)?$`)

func TestSystems(t *testing.T) {
	needQEMU(t)
	var f Finder
	all, err := f.Systems(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(all, func(b Binary) bool { return PlatformOf(b.Path) == "x86_64" })
	if i < 0 {
		t.Fatalf("Systems = %v: no qemu-system-x86_64", all)
	}
	want, _ := exec.LookPath("qemu-system-x86_64")
	if all[i].Path != want || !releaseRE.MatchString(all[i].Version) {
		t.Errorf("x86_64 binary %+v, want path %s and a version like 7.2.22", all[i], want)
	}
	for _, b := range all {
		if PlatformOf(b.Path) == "" {
			t.Errorf("Systems listed %s, not a qemu-system-<arch>", b.Path)
		}
	}
	only, err := f.Systems(t.Context(), []string{"i386"})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range only {
		if PlatformOf(b.Path) != "i386" {
			t.Errorf("filtered on i386, got %s", b.Path)
		}
	}
	if !slices.ContainsFunc(all, func(b Binary) bool { return PlatformOf(b.Path) == "sparc64" }) {
		if none, _ := f.Systems(t.Context(), []string{"sparc64"}); len(none) != 0 {
			t.Errorf("filtered on an absent platform, got %v", none)
		}
	}
}

func TestImgs(t *testing.T) {
	needQEMU(t)
	imgs, err := Finder{}.Imgs(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want, _ := exec.LookPath("qemu-img")
	if len(imgs) != 1 || imgs[0].Path != want || !releaseRE.MatchString(imgs[0].Version) {
		t.Fatalf("Imgs = %+v, want one %s with a version", imgs, want)
	}
}

func TestFinderDirsComeFirst(t *testing.T) {
	needQEMU(t)
	dir := t.TempDir()
	fake := impostor(t, dir, "qemu-system-x86_64")
	f := Finder{Dirs: []string{dir}}
	if got, err := f.System("", ""); err != nil || got != fake {
		t.Fatalf("System with a configured directory = %q, %v; want %s", got, err, fake)
	}
	all, _ := f.Systems(t.Context(), []string{"x86_64"})
	if len(all) != 1 || all[0].Path != fake || all[0].Version != "" {
		t.Fatalf("Systems = %+v, want only the configured %s, without a version", all, fake)
	}
}

func TestSystemAndImgRefuseNonQEMU(t *testing.T) {
	needQEMU(t)
	var f Finder
	for _, tc := range []struct{ path, platform, want string }{
		{"qemu-system-x86_64", "", "/usr/bin/qemu-system-x86_64"},
		{"/usr/bin/qemu-system-x86_64", "", "/usr/bin/qemu-system-x86_64"},
		{"", "", "/usr/bin/qemu-system-x86_64"},
		{"", "i386", "/usr/bin/qemu-system-i386"},
		{"/usr/bin/../bin/qemu-system-x86_64", "", "/usr/bin/qemu-system-x86_64"},
	} {
		got, err := f.System(tc.path, tc.platform)
		if err != nil {
			t.Errorf("System(%q, %q): %v", tc.path, tc.platform, err)
			continue
		}
		// $PATH may list another directory holding the same binary first.
		if filepath.Base(got) != filepath.Base(tc.want) || !filepath.IsAbs(got) {
			t.Errorf("System(%q, %q) = %q, want %q", tc.path, tc.platform, got, tc.want)
		}
	}
	if got, err := f.Img(""); err != nil || filepath.Base(got) != "qemu-img" {
		t.Errorf("Img(\"\") = %q, %v", got, err)
	}
	if got, err := f.Img("/usr/bin/qemu-img"); err != nil || got != "/usr/bin/qemu-img" {
		t.Errorf("Img(/usr/bin/qemu-img) = %q, %v", got, err)
	}
	dir := t.TempDir()
	renamed := impostor(t, dir, "qemu-system-x86_64")
	renamedImg := impostor(t, dir, "qemu-img")
	notExec := filepath.Join(dir, "qemu-system-arm")
	os.WriteFile(notExec, []byte("x"), 0o644)
	for _, path := range []string{
		"/bin/sh", "sh", renamed, renamedImg, "./qemu-system-x86_64", "bin/qemu-system-x86_64",
		"qemu-system-nowhere", "/usr/bin/qemu-system-x86_64-microvm", "qemu-system-x86_64 -x",
		"/nonexistent/qemu-system-x86_64", notExec, "/usr/bin/qemu-img",
	} {
		if got, err := f.System(path, ""); !errors.Is(err, ErrNotQEMU) {
			t.Errorf("System(%q) = %q, %v; want ErrNotQEMU", path, got, err)
		}
	}
	for _, path := range []string{"/bin/sh", renamedImg, renamed, "qemu-img2", "/usr/bin/qemu-system-x86_64"} {
		if got, err := f.Img(path); !errors.Is(err, ErrNotQEMU) {
			t.Errorf("Img(%q) = %q, %v; want ErrNotQEMU", path, got, err)
		}
	}
	// A directory linking to a search directory holds the same files.
	link := filepath.Join(dir, "bin")
	if err := os.Symlink("/usr/bin", link); err != nil {
		t.Fatal(err)
	}
	if _, err := f.System(filepath.Join(link, "qemu-system-x86_64"), ""); err != nil {
		t.Errorf("System through a link to /usr/bin: %v", err)
	}
}

func TestPlatformOf(t *testing.T) {
	for path, want := range map[string]string{
		"/usr/bin/qemu-system-x86_64":         "x86_64",
		"qemu-system-aarch64":                 "aarch64",
		"/usr/bin/qemu-system-x86_64-microvm": "",
		"/usr/bin/qemu-img":                   "",
		"":                                    "",
	} {
		if got := PlatformOf(path); got != want {
			t.Errorf("PlatformOf(%q) = %q, want %q", path, got, want)
		}
	}
}

func TestKVMArchs(t *testing.T) {
	got := KVMArchs()
	if got == nil {
		t.Fatal("KVMArchs is nil; the API needs [] for none")
	}
	if Accel() == "kvm:tcg" {
		if !slices.Contains(got, "x86_64") && !slices.Contains(got, "i386") {
			t.Errorf("KVM works but KVMArchs = %v", got)
		}
	} else if len(got) != 0 {
		t.Errorf("Accel is %s but KVMArchs = %v", Accel(), got)
	}
}
