package host

import (
	"testing"
	"time"
)

func TestReadMemory(t *testing.T) {
	m, err := ReadMemory()
	if err != nil {
		t.Fatal(err)
	}
	if m.Total == 0 || m.Available == 0 || m.Available > m.Total {
		t.Fatalf("implausible memory: %+v", m)
	}
	if p := m.UsedPercent(); p <= 0 || p >= 100 {
		t.Fatalf("memory used %v%%", p)
	}
}

func TestCPUPercentMeasuresLoad(t *testing.T) {
	var c CPU
	if p := c.Percent(); p != 0 {
		t.Fatalf("first call %v, want 0 (no window yet)", p)
	}
	// Keep one core busy for the window: with 2 cores, usage must show.
	deadline := time.Now().Add(600 * time.Millisecond)
	x := 0
	for time.Now().Before(deadline) {
		x++
	}
	p := c.Percent()
	if p <= 0 || p > 100 {
		t.Fatalf("CPU usage %v%% while a core spun (%d)", p, x)
	}
	// Within the minimum interval the last value is returned.
	if again := c.Percent(); again != p {
		t.Fatalf("second call in the same window: %v then %v", p, again)
	}
}

func TestLoadAndDisk(t *testing.T) {
	if _, err := LoadAverage(); err != nil {
		t.Fatal(err)
	}
	d, err := DiskUsage(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if d.Total == 0 || d.Free > d.Total {
		t.Fatalf("implausible disk: %+v", d)
	}
}

func TestInterfacesIncludeLoopback(t *testing.T) {
	ifs, err := Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range ifs {
		if i.Name == "lo" {
			if i.IPAddress != "127.0.0.1" || i.Netmask != "255.0.0.0" || i.Type != "ethernet" {
				t.Fatalf("loopback: %+v", i)
			}
			return
		}
	}
	t.Fatalf("no loopback in %+v", ifs)
}

func TestClassifyInterface(t *testing.T) {
	for _, tt := range []struct {
		name    string
		typ     string
		special bool
	}{
		{"eth0", "ethernet", false},
		{"enp3s0", "ethernet", false},
		{"tap0", "tap", false},
		{"TAP0", "ethernet", false}, // GNS3 compares the type's prefix as is
		{"lo", "ethernet", true},
		{"virbr0", "ethernet", true},
		{"docker0", "ethernet", true},
		{"veth1234", "ethernet", true},
		{"VMnet8", "ethernet", true}, // the special prefixes ignore case
		{"gns3tap0-1", "ethernet", true},
		{"ovs-system", "ethernet", true},
		{"vboxnet0", "ethernet", true},
		{"lxcbr0", "ethernet", true},
		{"bridge0", "ethernet", true},
		{"virtualbox", "ethernet", true},
		{"vmware1", "ethernet", true},
		{"p2p1", "ethernet", true},
		{"fw0", "ethernet", true},
		{"vboxnet0-nic", "ethernet", true},
		{"br0-NIC", "ethernet", true},
		{"wlan0", "ethernet", false},
	} {
		got := classify(tt.name)
		if got.Name != tt.name || got.Type != tt.typ || got.Special != tt.special {
			t.Errorf("classify(%q) = %+v, want type %s special %v", tt.name, got, tt.typ, tt.special)
		}
	}
}

func TestInterfacesClassified(t *testing.T) {
	ifs, err := Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	var lo *Interface
	for i := range ifs {
		if i > 0 && ifs[i-1].Name >= ifs[i].Name {
			t.Fatalf("not sorted by name: %q before %q", ifs[i-1].Name, ifs[i].Name)
		}
		if ifs[i].Name == "lo" {
			lo = &ifs[i]
		}
	}
	if lo == nil || !lo.Special || lo.Type != "ethernet" || lo.IPAddress != "127.0.0.1" || lo.Netmask != "255.0.0.0" {
		t.Fatalf("lo is %+v", lo)
	}
}
