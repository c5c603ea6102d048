package qemu

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	ok := func(mut func(*Config)) Config { c := Default(); mut(&c); return c }
	for name, c := range map[string]Config{
		"defaults":    Default(),
		"vnc, 8 cpus": ok(func(c *Config) { c.ConsoleType, c.CPUs = "vnc", 8 }),
		"sata disk":   ok(func(c *Config) { c.HDA = Disk{Image: "a.qcow2", Interface: "sata"} }),
		"custom adapter": ok(func(c *Config) {
			c.Adapters = 2
			c.CustomAdapters = []CustomAdapter{{AdapterNumber: 1, MACAddress: "02:00:00:00:00:01"}}
		}),
		"harmless option": ok(func(c *Config) { c.Options = `-cpu host -smbios "type=1,product=lab box"` }),
	} {
		if err := c.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	for name, tc := range map[string]struct {
		mut  func(*Config)
		want string
	}{
		"console type":     {func(c *Config) { c.ConsoleType = "rdp" }, "console_type"},
		"boot priority":    {func(c *Config) { c.BootPriority = "x" }, "boot_priority"},
		"on close":         {func(c *Config) { c.OnClose = "halt" }, "on_close"},
		"priority":         {func(c *Config) { c.ProcessPriority = "urgent" }, "process_priority"},
		"platform":         {func(c *Config) { c.Platform = "z80" }, "platform"},
		"cpus 0":           {func(c *Config) { c.CPUs = 0 }, "cpus 0"},
		"cpus 256":         {func(c *Config) { c.CPUs = 256 }, "cpus 256"},
		"adapters 276":     {func(c *Config) { c.Adapters = 276 }, "adapters"},
		"throttling":       {func(c *Config) { c.CPUThrottling = 801 }, "cpu_throttling"},
		"ram":              {func(c *Config) { c.RAM = 0 }, "ram"},
		"mac":              {func(c *Config) { c.MACAddress = "0c:00:00:00:00" }, "mac_address"},
		"disk interface":   {func(c *Config) { c.HDB.Interface = "usb-stick" }, "hdb_disk_interface"},
		"adapter type":     {func(c *Config) { c.AdapterType = "" }, "adapter_type"},
		"cdrom and hdc":    {func(c *Config) { c.CDROM, c.HDC.Image = "a.iso", "c.qcow2" }, "cdrom_image"},
		"custom adapter":   {func(c *Config) { c.CustomAdapters = []CustomAdapter{{AdapterNumber: 3}} }, "adapter 3"},
		"not an option":    {func(c *Config) { c.Options = "-m 64 /etc/shadow" }, `"/etc/shadow" is not an option`},
		"-hda=":            {func(c *Config) { c.Options = "-hda=/x" }, "-hda=/x is not a QEMU option"},
		"unbalanced quote": {func(c *Config) { c.Options = `-name "x` }, "unterminated quote"},
	} {
		c := Default()
		tc.mut(&c)
		err := c.Validate()
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrInvalid mentioning %q", name, err, tc.want)
		}
	}
}

func TestSplitOptions(t *testing.T) {
	for in, want := range map[string][]string{
		"":                                   nil,
		"  -a  b ":                           {"-a", "b"},
		`-smbios "type=1,product=a b"`:       {"-smbios", "type=1,product=a b"},
		`-x 'a "b" c'`:                       {"-x", `a "b" c`},
		`a\ b "c\"d" "e\f"`:                  {"a b", `c"d`, `e\f`},
		`-device virtio-rng-pci -nodefaults`: {"-device", "virtio-rng-pci", "-nodefaults"},
	} {
		got, err := SplitOptions(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("SplitOptions(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{`"open`, `'open`, `trailing\`} {
		if _, err := SplitOptions(bad); err == nil {
			t.Errorf("SplitOptions(%q): no error", bad)
		}
	}
}

const nodeID = "4493cf57-1234-4abc-8def-0123456789ab"

// TestArgsLikeGNS3 checks the command line of GNS3 2.2's observed start of
// a node with two adapters and no disk, with labd's differences.
func TestArgsLikeGNS3(t *testing.T) {
	c := Default()
	c.RAM, c.Adapters = 128, 2
	r := Run{Binary: "qemu-system-x86_64", Name: "Q1", NodeID: nodeID, Console: 5003, QMP: "/run/q,1/qmp.sock", Accel: "kvm:tcg",
		Tunnels: []Tunnel{{Node: 20002, Bridge: 20003}, {Node: 20004, Bridge: 20005}}}
	got, err := Args(c, r)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Fields("-name Q1 -m 128M -smp cpus=1,sockets=1 -machine accel=kvm:tcg -boot order=c -uuid " + nodeID +
		" -serial telnet:127.0.0.1:5003,server=on,wait=off -qmp unix:/run/q,,1/qmp.sock,server=on,wait=off -net none" +
		" -device e1000,mac=0c:93:cf:57:00:00,netdev=gns3-0 -netdev socket,id=gns3-0,udp=127.0.0.1:20003,localaddr=127.0.0.1:20002" +
		" -device e1000,mac=0c:93:cf:57:00:01,netdev=gns3-1 -netdev socket,id=gns3-1,udp=127.0.0.1:20005,localaddr=127.0.0.1:20004" +
		" -display none -sandbox " + Sandbox)
	if !slices.Equal(got, want) {
		t.Fatalf("args\n got %q\nwant %q", got, want)
	}

	// Disks per interface, kernel boot, custom adapters, saved state, options.
	c = Default()
	c.Adapters, c.ConsoleType, c.KernelCommandLine = 2, "vnc", "console=ttyS0"
	c.HDA.Interface, c.HDB.Interface = "virtio", "sata"
	c.MACAddress = "02:00:00:00:00:ff"
	c.CustomAdapters = []CustomAdapter{{AdapterNumber: 0, AdapterType: "virtio-net-pci"}}
	c.Options = "-cpu max"
	r = Run{Name: "Q2", NodeID: nodeID, Console: 5901, Tunnels: []Tunnel{{Node: 1, Bridge: 2}, {Node: 3, Bridge: 4}}, LoadVM: true,
		Images: map[string]string{"hda_disk_image": "/d/a.qcow2", "hdb_disk_image": "/d/b.qcow2", "kernel_image": "/k", "initrd": "/i"}}
	got, err = Args(c, r)
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Join(got, " ")
	for _, part := range []string{
		"-drive file=/d/a.qcow2,if=virtio,index=0,media=disk,id=drive0",
		"-device ahci,id=ahci1 -drive file=/d/b.qcow2,if=none,id=drive1,index=1,media=disk -device ide-hd,drive=drive1,bus=ahci1.0,id=drive1",
		"-initrd /i -kernel /k -append console=ttyS0",
		"-vnc 127.0.0.1:1",
		"-device virtio-net-pci,mac=02:00:00:00:00:ff,netdev=gns3-0",
		"-device e1000,mac=02:00:00:00:01:00,netdev=gns3-1",
		"-loadvm GNS3_SAVED_STATE",
	} {
		if !strings.Contains(line, part) {
			t.Errorf("args lack %q:\n%s", part, line)
		}
	}
	if !strings.HasSuffix(line, "-cpu max -sandbox "+Sandbox) || strings.Contains(line, "-display none") {
		t.Errorf("options or display wrong:\n%s", line)
	}
	if _, err := Args(Default(), Run{}); err == nil {
		t.Error("one adapter, no tunnel: no error")
	}
}

// TestArgsStartRealQEMU runs Debian's qemu-system-x86_64 on a built
// command line (paused, no disks): QEMU must accept every argument and open
// its QMP socket.
func TestArgsStartRealQEMU(t *testing.T) {
	bin, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Fatalf("qemu-system-x86_64 is not installed (make deps installs it): %v", err)
	}
	dir := t.TempDir()
	c := Default()
	c.RAM, c.Adapters, c.Options = 32, 2, "-S -nodefaults"
	r := Run{Name: "probe", NodeID: nodeID, Console: freePort(t), QMP: filepath.Join(dir, "qmp.sock"),
		Tunnels: []Tunnel{{Node: freePort(t), Bridge: freePort(t)}, {Node: freePort(t), Bridge: freePort(t)}}}
	args, err := Args(c, r)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	var log strings.Builder
	cmd.Stdout, cmd.Stderr = &log, &log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(r.QMP); err == nil {
			return
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("QEMU refused the command line (%v):\n%s\nargs: %q", err, log.String(), args)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no QMP socket after 20 s; log:\n%s", log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
