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
