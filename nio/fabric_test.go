package nio

import (
	"errors"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"
)

// TestFabricCloseStopsEverything fills a switch and a hub with linked
// ports, traffic and delayed frames, closes them, and checks that every
// goroutine of theirs has returned and that closed ports refuse links.
func TestFabricCloseStopsEverything(t *testing.T) {
	before := runtime.NumGoroutine()
	sw := NewSwitch(SwitchConfig{Name: "sw"})
	h := NewHub(HubConfig{Name: "hub"})
	var all []*station
	for i := range 4 {
		all = append(all, openSwitchPort(t, sw, i, access(1)))
		b, err := h.OpenPort(i)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, plug(t, i, b))
	}
	hour, err := ParseFilters(FilterSpec{"delay": {32000}})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range all {
		s.b.SetFilters(hour) // every frame waits in a delay queue: a scheduler per direction
	}
	for _, s := range all[:2] {
		s.send(ether(broadcast, mac(1), 1))
	}
	// Each port: a link reader; the two senders' ingress schedulers, and
	// the egress schedulers of the three ports each of them reaches
	// (after its ingress delay, which has not passed: none yet).
	waitFor(t, 5*time.Second, "the ports' goroutines", func() bool { return bridgeGoroutines() == len(all)+2 })
	errs := errors.Join(sw.Close(), h.Close())
	if errs != nil {
		t.Fatal(errs)
	}
	waitFor(t, time.Second, "no bridge goroutines", func() bool { return bridgeGoroutines() == 0 })
	waitFor(t, 2*time.Second, "the goroutine count to return to where it was", func() bool {
		return runtime.NumGoroutine() <= before
	})
	for _, s := range all {
		if err := s.b.Attach(netip.AddrPortFrom(loopback, 0), netip.AddrPortFrom(loopback, 9)); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Attach on a closed port: %v, want net.ErrClosed", err)
		}
		if err := s.b.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	}
}

// nodePort is a node's port: a bridge of the Plane whose tunnel talks to
// the node's socket.
type nodePort struct {
	b    *Bridge
	node *endpoint
}

func openNodePort(t *testing.T, plane *Plane) *nodePort {
	t.Helper()
	np := &nodePort{node: newEndpoint(t)}
	b, err := OpenBridge(BridgeConfig{Name: t.Name(), Tunnel: netip.AddrPortFrom(loopback, 0), Node: np.node.addr(), Plane: plane})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	np.b = b
	return np
}

func (np *nodePort) send(f []byte) { np.node.send(np.b.tunnelAddr(), f) }

func (np *nodePort) expect(t *testing.T, seq uint32) {
	t.Helper()
	if got := parseEther(t, np.node.mustRecv()); got.seq != seq {
		t.Fatalf("node got seq %d, want %d", got.seq, seq)
	}
}

// TestSwitchPlane wires node A - switch - node B with every link spliced
// by a Plane: frames cross in process, through the switch ports' filters,
// capture and suspension; and two switches linked on the same Plane stay
// apart (their link goes through its sockets).
func TestSwitchPlane(t *testing.T) {
	plane := NewPlane()
	sw := NewSwitch(SwitchConfig{Name: "sw", Plane: plane})
	t.Cleanup(func() { sw.Close() })
	a, b := openNodePort(t, plane), openNodePort(t, plane)
	q, err := sw.OpenPort(0, access(1))
	if err != nil {
		t.Fatal(err)
	}
	r, err := sw.OpenPort(1, trunk(1))
	if err != nil {
		t.Fatal(err)
	}
	linkPorts(t, a.b, q)
	linkPorts(t, r, b.b)
	if a.b.splice.Load() != q || b.b.splice.Load() != r {
		t.Fatal("the node ports are not spliced with the switch ports")
	}

	a.send(ether(broadcast, mac(1), 1))
	b.expect(t, 1)
	b.send(ether(mac(1), mac(2), 2, tag{0x8100, 1}))
	a.expect(t, 2)
	a.send(ether(mac(2), mac(1), 3))
	b.expect(t, 3)
	// A port adds a batch to its counters after forwarding it, so the
	// counts can trail the frames the nodes have already received.
	waitFor(t, 5*time.Second, "the spliced counts", func() bool {
		return a.b.Stats().NodeToLink.Spliced == 2 && r.Stats().NodeToLink.Spliced == 2 &&
			b.b.Stats().NodeToLink.Spliced == 1 && q.Stats().NodeToLink.Spliced == 1 &&
			q.Stats().LinkToNode.Packets >= 2
	})
	if st := q.Stats().LinkToNode; st.Packets != 2 {
		t.Fatalf("switch port 0 took %+v from its spliced link, want 2 frames", st)
	}

	// The switch port's filters and suspension still apply.
	everyOther, err := ParseFilters(FilterSpec{"frequency_drop": {2}})
	if err != nil {
		t.Fatal(err)
	}
	q.SetFilters(everyOther)
	for i := range 4 {
		a.send(ether(mac(2), mac(1), uint32(10+i)))
	}
	b.expect(t, 10)
	b.expect(t, 12)
	// Frame 13 may still be on its way to the filter: it must meet it
	// before the filter goes, or it reaches the suspended port below.
	waitFor(t, 5*time.Second, "the filter to drop frames 11 and 13", func() bool {
		return q.Stats().LinkToNode.DroppedFilter == 2
	})
	q.SetFilters(nil)
	r.SetSuspended(true)
	a.send(ether(mac(2), mac(1), 20))
	waitFor(t, 5*time.Second, "the suspended port to drop the frame", func() bool {
		return r.Stats().NodeToLink.DroppedSuspend == 1
	})
	r.SetSuspended(false)
	a.send(ether(mac(2), mac(1), 21))
	b.expect(t, 21)

	// Two switches on one Plane: their link is not spliced, and works.
	sw2 := NewSwitch(SwitchConfig{Name: "sw2", Plane: plane})
	t.Cleanup(func() { sw2.Close() })
	up, err := sw.OpenPort(2, access(1))
	if err != nil {
		t.Fatal(err)
	}
	down, err := sw2.OpenPort(0, access(1))
	if err != nil {
		t.Fatal(err)
	}
	linkPorts(t, up, down)
	if up.splice.Load() != nil || down.splice.Load() != nil {
		t.Fatal("two switches' ports were spliced")
	}
	c := openNodePort(t, plane)
	last, err := sw2.OpenPort(1, access(1))
	if err != nil {
		t.Fatal(err)
	}
	linkPorts(t, c.b, last)
	a.send(ether(broadcast, mac(1), 30))
	b.expect(t, 30)
	c.expect(t, 30)
	c.send(ether(mac(1), mac(3), 31))
	a.expect(t, 31)
}
