package nio

import (
	"bytes"
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"

	"labd/nio/pcap"
)

func newTestHub(t testing.TB) *Hub {
	h := NewHub(HubConfig{Name: t.Name()})
	t.Cleanup(func() { h.Close() })
	return h
}

func openHubPort(t testing.TB, h *Hub, n int) *station {
	t.Helper()
	b, err := h.OpenPort(n)
	if err != nil {
		t.Fatal(err)
	}
	return plug(t, n, b)
}

func TestHubFloodsToAllOthers(t *testing.T) {
	h := newTestHub(t)
	ports := []*station{openHubPort(t, h, 0), openHubPort(t, h, 1), openHubPort(t, h, 2)}
	unlinked, err := h.OpenPort(3)
	if err != nil {
		t.Fatal(err)
	}

	// Unicast, tagged, even runts: a hub repeats whatever comes in, as it is.
	frames := [][]byte{ether(mac(2), mac(1), 1), ether(mac(1), mac(2), 2, tag{0x8100, 10}), {1, 2, 3}}
	for i, in := range ports {
		in.sendAll(frames...)
		for j, out := range ports {
			if j == i {
				out.none()
				continue
			}
			for _, f := range frames {
				got, ok := out.e.recv(5 * time.Second)
				if !ok || !bytes.Equal(got, f) {
					t.Fatalf("port %d -> %d: got % x, want % x", i, j, got, f)
				}
			}
		}
	}
	// The unlinked port is skipped, not a drop.
	if st := unlinked.Stats().NodeToLink; st.Packets != 0 || st.Dropped != 0 {
		t.Fatalf("unlinked port stats %+v", st)
	}

	// Two ports left: the frames go to the other one only.
	ports[2].b.Detach()
	ports[0].sendAll(ether(broadcast, mac(1), 4))
	ports[1].expectSeqs(4)
	ports[2].none()

	stats := h.PortStats()
	if len(stats) != 4 || stats[0].RxPackets != 4 || stats[0].TxPackets != 6 || stats[0].Config != (PortConfig{}) || stats[2].Linked {
		t.Fatalf("port stats %+v", stats)
	}
	if _, err := h.OpenPort(0); !errors.Is(err, ErrPortExists) {
		t.Fatalf("second OpenPort(0): %v", err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := h.OpenPort(5); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("OpenPort after Close: %v", err)
	}
}

// TestHubCaptureAndFilters checks capture, filters and suspension on a
// hub port, and that a corrupting port corrupts its own copy only.
func TestHubCaptureAndFilters(t *testing.T) {
	h := newTestHub(t)
	p0, p1, p2 := openHubPort(t, h, 0), openHubPort(t, h, 1), openHubPort(t, h, 2)
	c, err := pcap.Create(filepath.Join(t.TempDir(), "hub.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	p1.b.SetCapture(c)
	corrupt, err := ParseFilters(FilterSpec{"corrupt": {100}})
	if err != nil {
		t.Fatal(err)
	}
	p1.b.SetFilters(corrupt)
	sent := ether(broadcast, mac(1), 1)
	p0.sendAll(sent)
	got1, _ := p1.e.recv(5 * time.Second)
	got2, _ := p2.e.recv(5 * time.Second)
	if bytes.Equal(got1, sent) || !bytes.Equal(got2, sent) {
		t.Fatalf("port 1 got % x\nport 2 got % x\nsent % x\nwant port 1's copy only corrupted", got1, got2, sent)
	}
	p1.b.SetFilters(nil)
	p1.b.SetSuspended(true)
	p0.sendAll(ether(broadcast, mac(1), 2))
	p2.expectSeqs(2)
	p1.none()
	p1.b.SetSuspended(false)
	p1.b.SetCapture(nil)
	c.Close()
	frames := capturedFrames(t, c.Path())
	if len(frames) != 1 || !bytes.Equal(frames[0], got1) {
		t.Fatalf("capture holds %d frames, want port 1's corrupted copy", len(frames))
	}
}

func TestHubNoAllocsPerFrame(t *testing.T) {
	for _, n := range []int{2, 3} {
		h := newTestHub(t)
		var ports []*station
		for i := range n {
			ports = append(ports, openHubPort(t, h, i))
		}
		f := ether(broadcast, mac(1), 1)
		in, out := ports[0], ports[1]
		to := in.b.linkAddr()
		buf := make([]byte, 2048)
		roundTrip := func() {
			in.e.c.WriteToUDPAddrPort(f, to)
			out.e.c.ReadFromUDPAddrPort(buf)
		}
		for range 100 {
			roundTrip()
		}
		if allocs := testing.AllocsPerRun(1000, roundTrip); allocs > 0 {
			t.Fatalf("%d ports: %.2f allocations per frame, want 0", n, allocs)
		}
	}
}
