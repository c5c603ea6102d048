package qemu

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// registryOptions returns the options strings of GNS3's appliance
// registry (testdata/qemu-options-registry.txt).
func registryOptions(t testing.TB) []string {
	t.Helper()
	_, self, _, _ := runtime.Caller(0)
	f, err := os.Open(filepath.Join(filepath.Dir(self), "..", "..", "testdata", "qemu-options-registry.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if line := sc.Text(); line != "" && !strings.HasPrefix(line, "#") {
			out = append(out, line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRegistryOptionsAreAccepted: every options string of GNS3's official
// appliances passes the default policy, but the one with -drive, which
// GNS3 refuses too.
func TestRegistryOptionsAreAccepted(t *testing.T) {
	var p OptionPolicy
	all := registryOptions(t)
	if len(all) != 37 {
		t.Fatalf("%d registry strings, want 37", len(all))
	}
	refused := 0
	for _, s := range all {
		err := p.Check(s)
		if strings.Contains(s, "-drive") {
			refused++
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "-drive") {
				t.Errorf("%q: %v, want a refusal naming -drive", s, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", s, err)
		}
	}
	if refused != 1 {
		t.Errorf("%d registry strings hold -drive, want 1", refused)
	}
}

// attacks are options strings that make QEMU run a program, touch a host
// file or socket, or leave labd's control, each with the option its
// refusal must name.
var attacks = map[string]string{
	`-incoming "exec:touch F"`:                    "-incoming",
	`-net nic -net tap,script=S`:                  "-net",
	`-chardev file,id=c,path=G -serial chardev:c`: "-chardev",
	`-serial chardev:c`:                           "-serial",
	`-serial file:/tmp/x`:                         "-serial",
	`-serial pipe:/tmp/x`:                         "-serial",
	`-serial unix:/tmp/x,server=on`:               "-serial",
	`-serial tcp:127.0.0.1:4444,server=on`:        "-serial",
	`-serial exec:id`:                             "-serial",
	`-serial /dev/ttyS0`:                          "-serial",
	`-serial mon:file:/tmp/x`:                     "-serial",
	`-parallel file:/tmp/x`:                       "-parallel",
	`-pidfile /tmp/p`:                             "-pidfile",
	`-D /tmp/log`:                                 "-D",
	`-d in_asm`:                                   "-d",
	`-trace events=/etc/shadow`:                   "-trace",
	`-object memory-backend-file,id=m,size=64M,mem-path=/tmp/m`: "-object",
	`-monitor unix:/tmp/mon,server=on,wait=off`:                 "-monitor",
	`-mon chardev=c`: "-mon",
	`-qmp tcp:0.0.0.0:4444,server=on,wait=off`:         "-qmp",
	`-fw_cfg name=opt/x,file=/etc/shadow`:              "-fw_cfg",
	`-fw_cfg name=opt/x,,file=/etc/shadow,file=/etc/x`: "-fw_cfg",
	`-plugin /tmp/evil.so`:                             "-plugin",
	`-sandbox off`:                                     "-sandbox",
	`-readconfig /tmp/qemu.cfg`:                        "-readconfig",
	`-daemonize`:                                       "-daemonize",
	`-add-fd fd=3,set=1`:                               "-add-fd",
	`-runas nobody`:                                    "-runas",
	`-chroot /tmp`:                                     "-chroot",
	`-L /tmp`:                                          "-L",
	`-bios /etc/shadow`:                                "-bios",
	`-kernel /boot/vmlinuz`:                            "-kernel",
	`-initrd /etc/shadow`:                              "-initrd",
	`-drive file=/etc/shadow`:                          "-drive",
	`--drive file=/etc/shadow`:                         "--drive",
	`-hda /etc/shadow`:                                 "-hda",
	`-cdrom /etc/shadow`:                               "-cdrom",
	`-blockdev driver=file,filename=/etc/shadow,node-name=x`: "-blockdev",
	`-netdev user,id=x`: "-netdev",
	`-nic user`:         "-nic",
	`-fsdev local,id=f,path=/,security_model=none`:            "-fsdev",
	`-virtfs local,path=/,mount_tag=host,security_model=none`: "-virtfs",
	`-device loader,file=/etc/shadow,addr=0x1000`:             "-device",
	`-device e1000,romfile=/etc/shadow`:                       "-device",
	`-device vfio-pci,host=01:00.0`:                           "-device",
	`-device usb-host,hostbus=1,hostaddr=2`:                   "-device",
	`-device {"driver":"loader","file":"/etc/shadow"}`:        "-device",
	`-device virtio-serial,chardev=c`:                         "-device",
	`-global e1000.romfile=/etc/shadow`:                       "-global",
	`-set drive.x.file=/etc/shadow`:                           "-set",
	`-smbios file=/etc/shadow`:                                "-smbios",
	`-smbios type=11,path=/etc/shadow`:                        "-smbios",
	`-icount shift=auto,rr=record,rrfile=/tmp/r`:              "-icount",
	`-machine q35,dumpdtb=/tmp/x`:                             "-machine",
	`-machine q35,firmware=/etc/shadow`:                       "-machine",
	`-machine q35,kernel=/boot/vmlinuz`:                       "-machine",
	`-boot splash=/etc/shadow`:                                "-boot",
	`-usbdevice disk:/etc/shadow`:                             "-usbdevice",
	`-usbdevice host:1.2`:                                     "-usbdevice",
	`-display vnc=0.0.0.0:1`:                                  "-display",
	`-vnc 0.0.0.0:1`:                                          "-vnc",
	`-gdb tcp::1234`:                                          "-gdb",
	`-s`:                                                      "-s",
	`-option-rom /etc/shadow`:                                 "-option-rom",
	`-mem-path /tmp`:                                          "-mem-path",
	`-loadvm x`:                                               "-loadvm",
	`-debugcon file:/tmp/x`:                                   "-debugcon",
	`-semihosting`:                                            "-semihosting",
	`-acpitable file=/etc/shadow`:                             "-acpitable",
	`-audiodev wav,id=a,path=/tmp/x.wav`:                      "-audiodev",
	`-dump-vmstate /tmp/x`:                                    "-dump-vmstate",
	`-tpmdev passthrough,id=t,path=/dev/tpm0`:                 "-tpmdev",
	`-name x,process=y`:                                       "-name",
	`-smp 2 /etc/shadow`:                                      `"/etc/shadow" is not an option`,
	`/etc/shadow`:                                             `"/etc/shadow" is not an option`,
	`-nosuchoption`:                                           "-nosuchoption is not a QEMU option",
	`-machine=q35`:                                            "-machine=q35 is not a QEMU option",
	`-smp`:                                                    "-smp needs an argument",
	`-cpu host,file=/etc/shadow`:                              "-cpu",
	`-cpu "host /etc/shadow"`:                                 "-cpu",
}

func TestAttacksAreRefused(t *testing.T) {
	var p OptionPolicy
	for s, want := range attacks {
		err := p.Check(s)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want a refusal naming %s", s, err, want)
		}
	}
}

func TestPolicyWidened(t *testing.T) {
	p, err := NewOptionPolicy("incoming", "-global")
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Widened(); !slices.Equal(got, []string{"global", "incoming"}) {
		t.Fatalf("Widened() = %q", got)
	}
	for _, s := range []string{`-incoming "exec:touch F"`, `-global e1000.romfile=x -smp 2`} {
		if err := p.Check(s); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
	// What is not widened stays refused.
	if err := p.Check("-daemonize"); err == nil {
		t.Error("-daemonize accepted")
	}
	if _, err := NewOptionPolicy("nosuchoption"); err == nil {
		t.Error("NewOptionPolicy(nosuchoption): no error")
	}
}

func TestParseOptions(t *testing.T) {
	opts, err := ParseOptions(`-nographic --machine pc-i440fx-4.2 -smbios "type=1,product=a b" -append -nographic`)
	if err != nil {
		t.Fatal(err)
	}
	want := []Option{
		{Name: "nographic", Word: "-nographic"},
		{Name: "machine", Word: "--machine", Arg: "pc-i440fx-4.2", HasArg: true},
		{Name: "smbios", Word: "-smbios", Arg: "type=1,product=a b", HasArg: true},
		// As QEMU does: an option's argument is the next word, whatever it is.
		{Name: "append", Word: "-append", Arg: "-nographic", HasArg: true},
	}
	if !slices.Equal(opts, want) {
		t.Fatalf("ParseOptions = %+v\nwant %+v", opts, want)
	}
	if got := Words(opts); !slices.Equal(got, []string{"-nographic", "--machine", "pc-i440fx-4.2", "-smbios", "type=1,product=a b", "-append", "-nographic"}) {
		t.Fatalf("Words = %q", got)
	}
}

func TestSubOptions(t *testing.T) {
	got, err := subOptions("q35,accel=kvm,,tcg,usb,nohpet", "type")
	if err != nil {
		t.Fatal(err)
	}
	want := []subOption{{key: "type", value: "q35"}, {key: "accel", value: "kvm,tcg"}, {key: "usb", value: "on", bare: true}, {key: "nohpet", value: "on", bare: true}}
	if !slices.Equal(got, want) {
		t.Fatalf("subOptions = %+v, want %+v", got, want)
	}
	// "nohpet" is hpet=off, which -machine takes.
	if err := allowedOptions["machine"]("q35,nohpet"); err != nil {
		t.Fatal(err)
	}
}

// TestExpandCannotAddSubOptions: a variable's value (a node's name) is
// substituted with its commas escaped, so it stays inside its sub-option.
func TestExpandCannotAddSubOptions(t *testing.T) {
	opts, err := ParseOptions("-fw_cfg name=opt/vm_hostname,string=%vm-name%")
	if err != nil {
		t.Fatal(err)
	}
	got := Expand(opts, map[string]string{"%vm-name%": "x,file=/etc/shadow"})
	if got[0].Arg != "name=opt/vm_hostname,string=x,,file=/etc/shadow" {
		t.Fatalf("expanded to %q", got[0].Arg)
	}
	var p OptionPolicy
	if err := p.CheckParsed(got); err != nil {
		t.Fatalf("the escaped value is refused: %v", err)
	}
	subs, _ := subOptions(got[0].Arg, "name")
	if len(subs) != 2 || subs[1].value != "x,file=/etc/shadow" {
		t.Fatalf("sub-options %+v", subs)
	}
}

// FuzzParseOptions checks the parser on any input: it never panics, the
// options it returns are the words a shell would split, and an accepted
// list holds nothing refused or off the allowlist.
func FuzzParseOptions(f *testing.F) {
	for _, s := range registryOptions(f) {
		f.Add(s)
	}
	for s := range attacks {
		f.Add(s)
	}
	var p OptionPolicy
	f.Fuzz(func(t *testing.T, s string) {
		opts, err := ParseOptions(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("%q: error %v does not wrap ErrInvalid", s, err)
			}
			return
		}
		words, _ := SplitOptions(s)
		if got := Words(opts); !slices.Equal(got, words) {
			t.Fatalf("%q: Words = %q, split %q", s, got, words)
		}
		if p.CheckParsed(opts) != nil {
			return
		}
		for _, o := range opts {
			if _, refused := refusedOptions[o.Name]; refused {
				t.Fatalf("%q: refused option %s accepted", s, o.Word)
			}
			if _, ok := allowedOptions[o.Name]; !ok {
				t.Fatalf("%q: option %s off the allowlist accepted", s, o.Word)
			}
			if implied, ok := map[string]string{"device": "driver", "fw_cfg": "name", "smbios": ""}[o.Name]; ok {
				subs, err := subOptions(o.Arg, implied)
				if err != nil {
					t.Fatalf("%q: accepted %s does not split: %v", s, o.Word, err)
				}
				for _, sub := range subs {
					if slices.Contains([]string{"file", "path", "romfile", "chardev", "drive", "netdev"}, sub.key) {
						t.Fatalf("%q: accepted %s with %s=", s, o.Word, sub.key)
					}
				}
			}
		}
	})
}

// BenchmarkCheckOptions measures the allowlist on the longest registry
// string that passes it, as a create pays it.
func BenchmarkCheckOptions(b *testing.B) {
	const s = `-serial mon:stdio -nographic -smbios type=1,product=VM-VMX,family=lab -cpu host`
	var p OptionPolicy
	b.ReportAllocs()
	for b.Loop() {
		if err := p.Check(s); err != nil {
			b.Fatal(err)
		}
	}
}
