package nio

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"labd/nio/pcap"
)

// testEthertype is the ethertype of the test frames' payload (IEEE's
// "local experimental" one), which carries a sequence number.
const testEthertype = 0x88B5

// mac is a test station's address: 02:00:00:00:00:n (locally
// administered, unicast).
func mac(n byte) net.HardwareAddr { return net.HardwareAddr{2, 0, 0, 0, 0, n} }

var broadcast = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// tag is one VLAN tag of a test frame.
type tag struct {
	tpid uint16
	vid  uint16
}

// ether builds a 64-byte test frame from src to dst with tags (outermost
// first) carrying seq.
func ether(dst, src net.HardwareAddr, seq uint32, tags ...tag) []byte {
	f := append(slices.Clone(dst), src...)
	for _, tg := range tags {
		f = binary.BigEndian.AppendUint16(f, tg.tpid)
		f = binary.BigEndian.AppendUint16(f, tg.vid)
	}
	f = binary.BigEndian.AppendUint16(f, testEthertype)
	f = binary.BigEndian.AppendUint32(f, seq)
	for len(f) < 64 {
		f = append(f, byte(len(f)))
	}
	return f
}

// parsed is a received test frame.
type parsed struct {
	dst, src net.HardwareAddr
	tags     []tag
	seq      uint32
}

func parseEther(t testing.TB, f []byte) parsed {
	t.Helper()
	p := parsed{dst: net.HardwareAddr(slices.Clone(f[:6])), src: net.HardwareAddr(slices.Clone(f[6:12]))}
	off := 12
	for binary.BigEndian.Uint16(f[off:]) != testEthertype {
		p.tags = append(p.tags, tag{binary.BigEndian.Uint16(f[off:]), binary.BigEndian.Uint16(f[off+2:])})
		off += 4
		if off+2 > len(f) {
			t.Fatalf("not a test frame: % x", f)
		}
	}
	p.seq = binary.BigEndian.Uint32(f[off+2:])
	return p
}

// station is the UDP socket at the other end of a fabric port's link,
// playing the hosts behind that port.
type station struct {
	t testing.TB
	n int // the port number
	b *Bridge
	e *endpoint
}

// plug attaches b's link to a new station.
func plug(t testing.TB, n int, b *Bridge) *station {
	t.Helper()
	s := &station{t: t, n: n, b: b, e: newEndpoint(t)}
	if err := b.Attach(netip.AddrPortFrom(loopback, 0), s.e.addr()); err != nil {
		t.Fatal(err)
	}
	return s
}

// openSwitchPort opens port n of sw with cfg and plugs a station in.
func openSwitchPort(t testing.TB, sw *Switch, n int, cfg PortConfig) *station {
	t.Helper()
	b, err := sw.OpenPort(n, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return plug(t, n, b)
}

func newTestSwitch(t testing.TB) *Switch {
	sw := NewSwitch(SwitchConfig{Name: t.Name()})
	t.Cleanup(func() { sw.Close() })
	return sw
}

func access(vlan int) PortConfig  { return PortConfig{Mode: ModeAccess, VLAN: vlan} }
func trunk(native int) PortConfig { return PortConfig{Mode: ModeDot1Q, VLAN: native} }

// send sends frames into the port, one datagram each.
func (s *station) send(frames ...[]byte) {
	s.t.Helper()
	for _, f := range frames {
		s.e.send(s.b.linkAddr(), f)
	}
}

// sendAll sends frames and waits until the fabric has dealt with all of
// them: once the port's link->node direction counts a frame, its egress
// sends are done, so what did not arrive anywhere by then never will.
func (s *station) sendAll(frames ...[]byte) {
	s.t.Helper()
	st := s.b.Stats().LinkToNode
	before := st.Packets + st.Dropped
	s.send(frames...)
	waitFor(s.t, 5*time.Second, fmt.Sprintf("port %d to take %d frames", s.n, len(frames)), func() bool {
		st := s.b.Stats().LinkToNode
		return st.Packets+st.Dropped >= before+uint64(len(frames))
	})
}

// recv returns the next frame the station got, parsed.
func (s *station) recv() parsed {
	s.t.Helper()
	f, ok := s.e.recv(5 * time.Second)
	if !ok {
		s.t.Fatalf("port %d: no frame within 5s", s.n)
	}
	return parseEther(s.t, f)
}

// expectSeqs fails unless the station's next frames carry seqs.
func (s *station) expectSeqs(seqs ...uint32) {
	s.t.Helper()
	for _, want := range seqs {
		if got := s.recv(); got.seq != want {
			s.t.Fatalf("port %d: got seq %d, want %d", s.n, got.seq, want)
		}
	}
}

// none fails if the station has a frame. Used after sendAll: a frame
// sent to it would already be in its socket.
func (s *station) none() {
	s.t.Helper()
	if f, ok := s.e.recv(20 * time.Millisecond); ok {
		p := parseEther(s.t, f)
		s.t.Fatalf("port %d got frame seq %d (%v -> %v, tags %v), want none", s.n, p.seq, p.src, p.dst, p.tags)
	}
}

func TestSwitchAccessVLANs(t *testing.T) {
	sw := newTestSwitch(t)
	p0 := openSwitchPort(t, sw, 0, access(10))
	p1 := openSwitchPort(t, sw, 1, access(10))
	p2 := openSwitchPort(t, sw, 2, access(20))
	p3 := openSwitchPort(t, sw, 3, access(20))

	// Broadcast and unknown unicast stay in their VLAN and never go back.
	p0.sendAll(ether(broadcast, mac(1), 1), ether(mac(9), mac(1), 2))
	p1.expectSeqs(1, 2)
	p0.none()
	p2.none()
	p3.none()
	p2.sendAll(ether(broadcast, mac(3), 3))
	p3.expectSeqs(3)
	p0.none()
	p1.none()
	p2.none()

	// A station of VLAN 20 is not reachable from VLAN 10, even by its
	// (learned) address.
	p0.sendAll(ether(mac(3), mac(1), 4))
	p1.expectSeqs(4) // unknown in VLAN 10: flooded there
	p2.none()
	p3.none()
}

func TestSwitchLearning(t *testing.T) {
	sw := newTestSwitch(t)
	p0 := openSwitchPort(t, sw, 0, access(1))
	p1 := openSwitchPort(t, sw, 1, access(1))
	p2 := openSwitchPort(t, sw, 2, access(1))

	// A (on 0) to B: unknown, flooded.
	p0.sendAll(ether(mac(2), mac(1), 1))
	p1.expectSeqs(1)
	p2.expectSeqs(1)
	// B (on 1) answers A, which is known: port 0 only.
	p1.sendAll(ether(mac(1), mac(2), 2))
	p0.expectSeqs(2)
	p2.none()
	// Now B is known too.
	p0.sendAll(ether(mac(2), mac(1), 3))
	p1.expectSeqs(3)
	p2.none()

	entries := sw.MACTable()
	want := []MACEntry{{MAC: mac(1), VLAN: 1, Port: 0}, {MAC: mac(2), VLAN: 1, Port: 1}}
	if len(entries) != len(want) {
		t.Fatalf("MAC table %v, want %v", entries, want)
	}
	for i, e := range entries {
		if !bytes.Equal(e.MAC, want[i].MAC) || e.VLAN != want[i].VLAN || e.Port != want[i].Port || e.Age < 0 || e.Age > time.Minute {
			t.Fatalf("MAC table entry %d is %+v, want %+v", i, e, want[i])
		}
	}

	// B moves to port 2.
	p2.sendAll(ether(broadcast, mac(2), 4))
	p0.expectSeqs(4)
	p1.expectSeqs(4)
	p0.sendAll(ether(mac(2), mac(1), 5))
	p2.expectSeqs(5)
	p1.none()

	// A destination on the port the frame came from: dropped, not sent
	// back or anywhere else.
	p0.sendAll(ether(broadcast, mac(7), 6)) // mac(7) is behind port 0 too
	p1.expectSeqs(6)
	p2.expectSeqs(6)
	p0.sendAll(ether(mac(7), mac(1), 7))
	p0.none()
	p1.none()
	p2.none()

	// Multicast is flooded, and a multicast source is not learned.
	mcast := net.HardwareAddr{0x01, 0x00, 0x5e, 0, 0, 1}
	p1.sendAll(ether(mcast, mac(3), 8))
	p0.expectSeqs(8)
	p2.expectSeqs(8)
	p1.sendAll(ether(broadcast, mcast, 9))
	p0.expectSeqs(9)
	p2.expectSeqs(9)
	for _, e := range sw.MACTable() {
		if isMulticast(e.MAC) {
			t.Fatalf("learned the multicast source %v", e.MAC)
		}
	}

	// Cleared, B is unknown again: flooded.
	sw.ClearMACTable()
	if n := len(sw.MACTable()); n != 0 {
		t.Fatalf("%d entries after ClearMACTable", n)
	}
	p0.sendAll(ether(mac(2), mac(1), 10))
	p1.expectSeqs(10)
	p2.expectSeqs(10)
}

// fakeClock is a macTable clock the test moves.
type fakeClock struct{ t atomic.Int64 }

func (c *fakeClock) now() time.Duration      { return time.Duration(c.t.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.t.Add(int64(d)) }

func TestSwitchAging(t *testing.T) {
	const aging = 10 * time.Second
	sw := NewSwitch(SwitchConfig{Name: t.Name(), Aging: aging})
	t.Cleanup(func() { sw.Close() })
	var clock fakeClock
	sw.macs.now = clock.now // before any frame flows
	p0 := openSwitchPort(t, sw, 0, access(1))
	p1 := openSwitchPort(t, sw, 1, access(1))
	p2 := openSwitchPort(t, sw, 2, access(1))

	p1.sendAll(ether(broadcast, mac(2), 1)) // learn B on port 1
	p0.expectSeqs(1)
	p2.expectSeqs(1)

	clock.advance(aging - time.Second)
	p0.sendAll(ether(mac(2), mac(1), 2))
	p1.expectSeqs(2) // still known
	p2.none()
	if e := sw.MACTable(); len(e) != 2 || e[1].Age != aging-time.Second {
		t.Fatalf("MAC table %+v, want B aged %v", e, aging-time.Second)
	}

	// A frame from B refreshes it.
	p1.sendAll(ether(mac(1), mac(2), 3))
	p0.expectSeqs(3)
	clock.advance(aging - time.Second)
	p0.sendAll(ether(mac(2), mac(1), 4))
	p1.expectSeqs(4)
	p2.none()

	// Silent for longer than the aging time: forgotten, flooded.
	clock.advance(2 * time.Second)
	p0.sendAll(ether(mac(2), mac(1), 5))
	p1.expectSeqs(5)
	p2.expectSeqs(5)
	for _, e := range sw.MACTable() {
		if bytes.Equal(e.MAC, mac(2)) {
			t.Fatalf("aged-out B is still listed: %+v", e)
		}
	}
}

// linkPorts attaches the links of bridges a and b to each other.
func linkPorts(t *testing.T, a, b *Bridge) {
	t.Helper()
	if err := linkBridges(a, b); err != nil {
		t.Fatal(err)
	}
}

// TestSwitchTrunk links two switches by a dot1q trunk (native VLAN 1)
// and checks, on the trunk's capture decoded by gopacket, that VLANs 10
// and 20 cross it tagged and the native VLAN untagged, and that each
// VLAN reaches its own ports only.
func TestSwitchTrunk(t *testing.T) {
	sw1, sw2 := newTestSwitch(t), newTestSwitch(t)
	vlans := []int{10, 20, 1}
	var left, right []*station
	for i, v := range vlans {
		left = append(left, openSwitchPort(t, sw1, i, access(v)))
		right = append(right, openSwitchPort(t, sw2, i, access(v)))
	}
	t1, err := sw1.OpenPort(9, trunk(1))
	if err != nil {
		t.Fatal(err)
	}
	t2, err := sw2.OpenPort(9, trunk(1))
	if err != nil {
		t.Fatal(err)
	}
	linkPorts(t, t1, t2)
	c, err := pcap.Create(filepath.Join(t.TempDir(), "trunk.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	t1.SetCapture(c)

	for i := range vlans {
		left[i].send(ether(broadcast, mac(byte(10+i)), uint32(100+i)))
		right[i].expectSeqs(uint32(100 + i))
		// And back, by the address just learned.
		right[i].send(ether(mac(byte(10+i)), mac(byte(20+i)), uint32(200+i)))
		left[i].expectSeqs(uint32(200 + i))
	}
	// Each VLAN reached its own ports only.
	settle(t, t1, uint64(len(vlans)))
	settle(t, t2, uint64(len(vlans)))
	for i := range vlans {
		left[i].none()
		right[i].none()
	}
	t1.SetCapture(nil)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	// On the wire: out then back for each VLAN.
	wantVLAN := map[uint32]int{100: 10, 200: 10, 101: 20, 201: 20, 102: 0, 202: 0} // 0: untagged
	var seen []uint32
	for _, data := range capturedFrames(t, c.Path()) {
		pkt := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
		eth, _ := pkt.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
		if eth == nil {
			t.Fatalf("capture holds a frame that is not Ethernet: %v", pkt)
		}
		p := parseEther(t, data)
		seen = append(seen, p.seq)
		want, ok := wantVLAN[p.seq]
		if !ok {
			t.Fatalf("unexpected frame seq %d on the trunk", p.seq)
		}
		dot1q, _ := pkt.Layer(layers.LayerTypeDot1Q).(*layers.Dot1Q)
		switch {
		case want == 0 && (dot1q != nil || eth.EthernetType != testEthertype):
			t.Fatalf("native VLAN frame %d crossed the trunk tagged: %v", p.seq, pkt)
		case want != 0 && (dot1q == nil || eth.EthernetType != layers.EthernetTypeDot1Q):
			t.Fatalf("frame %d of VLAN %d crossed the trunk untagged: %v", p.seq, want, pkt)
		case want != 0 && int(dot1q.VLANIdentifier) != want:
			t.Fatalf("frame %d of VLAN %d crossed the trunk tagged %d", p.seq, want, dot1q.VLANIdentifier)
		case want != 0 && countLayers(pkt, layers.LayerTypeDot1Q) != 1:
			t.Fatalf("frame %d has %d tags", p.seq, countLayers(pkt, layers.LayerTypeDot1Q))
		}
	}
	if len(seen) != len(wantVLAN) {
		t.Fatalf("the trunk carried %v, want the %d frames of %v", seen, len(wantVLAN), wantVLAN)
	}
}

func countLayers(pkt gopacket.Packet, lt gopacket.LayerType) int {
	n := 0
	for _, l := range pkt.Layers() {
		if l.LayerType() == lt {
			n++
		}
	}
	return n
}

// capturedFrames reads every frame of a pcap file.
func capturedFrames(t *testing.T, path string) [][]byte {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	rd, err := pcapgo.NewReader(fh)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for {
		data, _, err := rd.ReadPacketData()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, data)
	}
}

// settle waits until b's link has brought n frames into the fabric, so
// that the fabric is done with them.
func settle(t *testing.T, b *Bridge, n uint64) {
	t.Helper()
	waitFor(t, 5*time.Second, fmt.Sprintf("%d frames in from the link", n), func() bool {
		st := b.Stats().LinkToNode
		return st.Packets+st.Dropped >= n
	})
}

// TestSwitchTrunkTags covers what a trunk does with tags a station sends:
// a tagged frame keeps its tag (TPID and priority) to another trunk, loses
// it to an access port; the native VLAN tagged is untagged on the way out;
// priority-tagged frames belong to the native VLAN; VLAN 4095 is dropped.
func TestSwitchTrunkTags(t *testing.T) {
	sw := newTestSwitch(t)
	tr0 := openSwitchPort(t, sw, 0, trunk(1))
	tr1 := openSwitchPort(t, sw, 1, trunk(5)) // another native VLAN
	a10 := openSwitchPort(t, sw, 2, access(10))
	a1 := openSwitchPort(t, sw, 3, access(1))
	a5 := openSwitchPort(t, sw, 4, access(5))

	check := func(s *station, seq uint32, tags ...tag) {
		t.Helper()
		got := s.recv()
		if got.seq != seq || !slices.Equal(got.tags, tags) {
			t.Fatalf("port %d got seq %d tags %v, want seq %d tags %v", s.n, got.seq, got.tags, seq, tags)
		}
	}

	// VLAN 10, with priority 5 and TPID 0x88A8.
	tr0.sendAll(ether(broadcast, mac(1), 1, tag{0x88A8, 5<<13 | 10}))
	check(tr1, 1, tag{0x88A8, 5<<13 | 10})
	check(a10, 1)
	a1.none()
	a5.none()

	// The native VLAN of port 0, tagged: VLAN 1, so untagged to a1 and
	// tagged 1 on the trunk of native VLAN 5.
	tr0.sendAll(ether(broadcast, mac(1), 2, tag{0x8100, 1}))
	check(tr1, 2, tag{0x8100, 1})
	check(a1, 2)
	a10.none()
	a5.none()

	// Untagged on port 1 is its native VLAN 5: tagged 5 on port 0.
	tr1.sendAll(ether(broadcast, mac(2), 3))
	check(tr0, 3, tag{0x8100, 5})
	check(a5, 3)

	// Priority-tagged (VLAN id 0) on port 0: VLAN 1, untagged on a1 and
	// re-tagged with its priority on the other trunk.
	tr0.sendAll(ether(broadcast, mac(1), 4, tag{0x8100, 3 << 13}))
	check(tr1, 4, tag{0x8100, 3<<13 | 1})
	check(a1, 4)

	// Access port frames towards trunks: tagged unless native.
	a10.sendAll(ether(broadcast, mac(3), 5))
	check(tr0, 5, tag{0x8100, 10})
	check(tr1, 5, tag{0x8100, 10})
	a5.sendAll(ether(broadcast, mac(4), 6))
	check(tr0, 6, tag{0x8100, 5})
	check(tr1, 6)

	// Reserved VLAN 4095, a truncated tag and a runt are refused.
	tr0.sendAll(ether(broadcast, mac(1), 7, tag{0x8100, 4095}), ether(broadcast, mac(1), 8, tag{0x8100, 10})[:16], []byte{1, 2, 3})
	for _, s := range []*station{tr1, a10, a1, a5} {
		s.none()
	}
	if st := tr0.b.Stats().LinkToNode; st.DroppedInvalid != 3 {
		t.Fatalf("port 0 stats %+v, want 3 frames refused", st)
	}
}

// TestSwitchQinQ checks, for every ethertype, that a qinq port's frames
// (customer tags and all) cross a trunk with the outer tag pushed, and
// that frames coming back on the trunk with that outer tag leave the qinq
// port with it popped.
func TestSwitchQinQ(t *testing.T) {
	for _, et := range []uint16{0, 0x8100, 0x88A8, 0x9100, 0x9200} {
		t.Run(fmt.Sprintf("ethertype=0x%04X", et), func(t *testing.T) {
			wantTPID := cmpOr(et, 0x8100)
			sw := newTestSwitch(t)
			q := openSwitchPort(t, sw, 0, PortConfig{Mode: ModeQinQ, VLAN: 100, Ethertype: et})
			tr := openSwitchPort(t, sw, 1, trunk(1))
			other := openSwitchPort(t, sw, 2, PortConfig{Mode: ModeQinQ, VLAN: 200, Ethertype: et})
			same := openSwitchPort(t, sw, 3, access(100))

			// A customer frame tagged 5, and an untagged one.
			q.sendAll(ether(broadcast, mac(1), 1, tag{0x8100, 5}), ether(broadcast, mac(1), 2))
			for _, want := range []parsed{{seq: 1, tags: []tag{{wantTPID, 100}, {0x8100, 5}}}, {seq: 2, tags: []tag{{wantTPID, 100}}}} {
				if got := tr.recv(); got.seq != want.seq || !slices.Equal(got.tags, want.tags) {
					t.Fatalf("trunk got seq %d tags %v, want seq %d tags %v", got.seq, got.tags, want.seq, want.tags)
				}
			}
			// The access port of VLAN 100 gets the customer frames as they are.
			if got := same.recv(); got.seq != 1 || !slices.Equal(got.tags, []tag{{0x8100, 5}}) {
				t.Fatalf("access port of the outer VLAN got seq %d tags %v", got.seq, got.tags)
			}
			same.expectSeqs(2)
			other.none()

			// Back from the trunk: the outer tag is popped, the customer's kept.
			tr.sendAll(ether(mac(1), mac(2), 3, tag{wantTPID, 100}, tag{0x8100, 5}))
			if got := q.recv(); got.seq != 3 || !slices.Equal(got.tags, []tag{{0x8100, 5}}) {
				t.Fatalf("qinq port got seq %d tags %v, want the customer tag only", got.seq, got.tags)
			}
			// Another outer VLAN goes to its own tunnel port only.
			tr.sendAll(ether(broadcast, mac(2), 4, tag{wantTPID, 200}, tag{0x8100, 5}))
			if got := other.recv(); got.seq != 4 || !slices.Equal(got.tags, []tag{{0x8100, 5}}) {
				t.Fatalf("qinq port of VLAN 200 got seq %d tags %v", got.seq, got.tags)
			}
			q.none()
			same.none()
		})
	}
}

func cmpOr(v, def uint16) uint16 {
	if v == 0 {
		return def
	}
	return v
}

func TestSwitchReconfigure(t *testing.T) {
	sw := newTestSwitch(t)
	p0 := openSwitchPort(t, sw, 0, access(10))
	p1 := openSwitchPort(t, sw, 1, access(10))
	p2 := openSwitchPort(t, sw, 2, access(20))

	// A flow of broadcasts from port 0 while port 1 changes.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for seq := uint32(0); ; seq++ {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			p0.e.c.WriteToUDPAddrPort(ether(broadcast, mac(1), seq), p0.b.linkAddr())
		}
	}()
	defer func() { close(stop); <-done }()
	if !receives(p1.e) {
		t.Fatal("port 1 gets nothing in VLAN 10")
	}
	if err := sw.Reconfigure(1, access(20)); err != nil {
		t.Fatal(err)
	}
	drain(p1.e, 50*time.Millisecond)
	if receives(p1.e) {
		t.Fatal("port 1 still gets VLAN 10 after moving to VLAN 20")
	}
	// It is in VLAN 20 now, with port 2.
	p2.sendAll(ether(broadcast, mac(3), 1<<20))
	p1.expectSeqs(1 << 20)

	// As a trunk it carries VLAN 10 tagged.
	if err := sw.Reconfigure(1, trunk(1)); err != nil {
		t.Fatal(err)
	}
	if got := p1.recv(); !slices.Equal(got.tags, []tag{{0x8100, 10}}) {
		t.Fatalf("trunk port got tags %v, want VLAN 10's", got.tags)
	}
	if got := sw.PortStats()[1].Config; got != trunk(1) {
		t.Fatalf("port 1 config %+v", got)
	}

	if err := sw.Reconfigure(7, access(1)); !errors.Is(err, ErrNoPort) {
		t.Fatalf("Reconfigure of a port not open: %v", err)
	}
	if err := sw.Reconfigure(1, PortConfig{Mode: "trunk", VLAN: 1}); !errors.Is(err, ErrBadPortConfig) {
		t.Fatalf("Reconfigure with a bad mode: %v", err)
	}
}

// TestSwitchReconfigureForgets checks that a port's addresses are
// forgotten when its configuration or its link changes.
func TestSwitchReconfigureForgets(t *testing.T) {
	sw := newTestSwitch(t)
	p0 := openSwitchPort(t, sw, 0, access(1))
	p1 := openSwitchPort(t, sw, 1, access(1))
	p1.sendAll(ether(broadcast, mac(2), 1))
	p0.expectSeqs(1)
	if n := len(sw.MACTable()); n != 1 {
		t.Fatalf("%d entries, want 1", n)
	}
	if err := sw.Reconfigure(1, access(1)); err != nil { // no change
		t.Fatal(err)
	}
	if n := len(sw.MACTable()); n != 1 {
		t.Fatalf("%d entries after a Reconfigure that changed nothing, want 1", n)
	}
	if err := sw.Reconfigure(1, access(2)); err != nil {
		t.Fatal(err)
	}
	if n := len(sw.MACTable()); n != 0 {
		t.Fatalf("%d entries after Reconfigure, want 0", n)
	}
	if err := sw.Reconfigure(1, access(1)); err != nil {
		t.Fatal(err)
	}
	p1.sendAll(ether(broadcast, mac(2), 2))
	p0.expectSeqs(2)
	p1.b.Detach()
	if n := len(sw.MACTable()); n != 0 {
		t.Fatalf("%d entries after Detach, want 0", n)
	}
}

func TestSwitchPortErrors(t *testing.T) {
	sw := newTestSwitch(t)
	if _, err := sw.OpenPort(0, access(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := sw.OpenPort(0, access(1)); !errors.Is(err, ErrPortExists) {
		t.Fatalf("second OpenPort(0): %v", err)
	}
	if _, err := sw.OpenPort(-1, access(1)); err == nil {
		t.Fatal("OpenPort(-1) succeeded")
	}
	for _, cfg := range []PortConfig{
		{Mode: ModeAccess, VLAN: 0},
		{Mode: ModeAccess, VLAN: 4095},
		{Mode: ModeDot1Q},
		{Mode: "", VLAN: 1},
		{Mode: ModeQinQ, VLAN: 1, Ethertype: 0x0800},
	} {
		if _, err := sw.OpenPort(1, cfg); !errors.Is(err, ErrBadPortConfig) {
			t.Errorf("OpenPort with %+v: %v, want ErrBadPortConfig", cfg, err)
		}
	}
	if err := sw.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := sw.OpenPort(2, access(1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("OpenPort after Close: %v", err)
	}
	if n := len(sw.PortStats()); n != 0 {
		t.Fatalf("%d ports after Close", n)
	}
}

// TestSwitchCapture checks that a capture on a port records the frames
// as they are on that port's link: untagged on an access port, tagged on
// a trunk, in both directions.
func TestSwitchCapture(t *testing.T) {
	sw := newTestSwitch(t)
	a := openSwitchPort(t, sw, 0, access(30))
	tr := openSwitchPort(t, sw, 1, trunk(1))
	ca, err := pcap.Create(filepath.Join(t.TempDir(), "access.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	ct, err := pcap.Create(filepath.Join(t.TempDir(), "trunk.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	a.b.SetCapture(ca)
	tr.b.SetCapture(ct)
	a.sendAll(ether(mac(2), mac(1), 1))
	tr.recv()
	tr.sendAll(ether(mac(1), mac(2), 2, tag{0x8100, 30}))
	a.recv()
	a.b.SetCapture(nil)
	tr.b.SetCapture(nil)
	ca.Close()
	ct.Close()
	check := func(path string, want ...parsed) {
		t.Helper()
		frames := capturedFrames(t, path)
		if len(frames) != len(want) {
			t.Fatalf("%s holds %d frames, want %d", filepath.Base(path), len(frames), len(want))
		}
		for i, f := range frames {
			if got := parseEther(t, f); got.seq != want[i].seq || !slices.Equal(got.tags, want[i].tags) {
				t.Fatalf("%s frame %d: seq %d tags %v, want seq %d tags %v", filepath.Base(path), i, got.seq, got.tags, want[i].seq, want[i].tags)
			}
		}
	}
	check(ca.Path(), parsed{seq: 1}, parsed{seq: 2})
	check(ct.Path(), parsed{seq: 1, tags: []tag{{0x8100, 30}}}, parsed{seq: 2, tags: []tag{{0x8100, 30}}})
}

// TestSwitchFiltersAndSuspend checks a switch port's link filters and
// suspension, both ways, and that corrupting a flooded frame on one port
// leaves the other ports' copies alone.
func TestSwitchFiltersAndSuspend(t *testing.T) {
	sw := newTestSwitch(t)
	p0 := openSwitchPort(t, sw, 0, access(1))
	p1 := openSwitchPort(t, sw, 1, access(1))
	p2 := openSwitchPort(t, sw, 2, access(1))

	everyOther, err := ParseFilters(FilterSpec{"frequency_drop": {2}})
	if err != nil {
		t.Fatal(err)
	}
	p1.b.SetFilters(everyOther)
	p0.sendAll(ether(broadcast, mac(1), 1), ether(broadcast, mac(1), 2), ether(broadcast, mac(1), 3), ether(broadcast, mac(1), 4))
	p1.expectSeqs(1, 3) // out of port 1: every second dropped
	p2.expectSeqs(1, 2, 3, 4)
	p1.sendAll(ether(broadcast, mac(2), 5), ether(broadcast, mac(2), 6))
	p0.expectSeqs(5) // into port 1: a chain of its own
	p2.expectSeqs(5)
	p0.none()
	p1.b.SetFilters(nil)

	// Corrupt on port 1 only: the frame port 2 gets is intact.
	corrupt, err := ParseFilters(FilterSpec{"corrupt": {100}})
	if err != nil {
		t.Fatal(err)
	}
	p1.b.SetFilters(corrupt)
	sent := ether(broadcast, mac(1), 7)
	p0.sendAll(sent)
	got1, _ := p1.e.recv(5 * time.Second)
	if bytes.Equal(got1, sent) {
		t.Fatal("port 1's copy is not corrupted")
	}
	if got2, _ := p2.e.recv(5 * time.Second); !bytes.Equal(got2, sent) {
		t.Fatalf("port 2's copy was corrupted by port 1's filter:\n% x\n% x", got2, sent)
	}
	p1.b.SetFilters(nil)

	// A delay on the way out of port 1 schedules, in order.
	delay := delayFilters(t, 30*time.Millisecond)
	if delay == nil {
		t.Fatal("delay filter not available")
	}
	p1.b.SetFilters(delay)
	start := time.Now()
	for i := range 20 {
		p0.send(ether(broadcast, mac(1), uint32(100+i)))
	}
	for i := range 20 {
		p2.expectSeqs(uint32(100 + i))
	}
	for i := range 20 {
		p1.expectSeqs(uint32(100 + i))
	}
	if d := time.Since(start); d < 25*time.Millisecond {
		t.Fatalf("delayed frames arrived after %v", d)
	}
	// Delayed on the way in, frames still cross the switch.
	for i := range 5 {
		p1.send(ether(broadcast, mac(2), uint32(200+i)))
	}
	for i := range 5 {
		p0.expectSeqs(uint32(200 + i))
	}
	for i := range 5 {
		p2.expectSeqs(uint32(200 + i))
	}
	p1.b.SetFilters(nil)

	// Suspended: nothing in or out of port 1, and counted.
	p1.b.SetSuspended(true)
	p0.sendAll(ether(broadcast, mac(1), 300))
	p2.expectSeqs(300)
	p1.sendAll(ether(broadcast, mac(2), 301))
	p1.none()
	p0.none()
	p2.none()
	st := p1.b.Stats()
	if st.NodeToLink.DroppedSuspend != 1 || st.LinkToNode.DroppedSuspend != 1 {
		t.Fatalf("port 1 stats %+v, want one frame dropped each way while suspended", st)
	}
	p1.b.SetSuspended(false)
	p0.sendAll(ether(broadcast, mac(1), 302))
	p1.expectSeqs(302)

	// The port counters add up for show interfaces.
	var ps PortStats
	for _, s := range sw.PortStats() {
		if s.Number == 1 {
			ps = s
		}
	}
	if !ps.Linked || ps.TxPackets == 0 || ps.TxBytes != 64*ps.TxPackets || ps.TxDropped != 3 || ps.RxDropped != 2 || ps.RxPackets == 0 {
		t.Fatalf("port 1 %+v", ps)
	}
}

// TestSwitchHotPorts attaches, detaches and closes ports while frames
// flow through the switch from several ports at once.
func TestSwitchHotPorts(t *testing.T) {
	sw := newTestSwitch(t)
	senders := []*station{openSwitchPort(t, sw, 0, access(1)), openSwitchPort(t, sw, 1, access(1))}
	sink := openSwitchPort(t, sw, 2, access(1))
	stop := make(chan struct{})
	var done []chan struct{}
	for i, s := range senders {
		ch := make(chan struct{})
		done = append(done, ch)
		go func() {
			defer close(ch)
			for seq := uint32(0); ; seq++ {
				select {
				case <-stop:
					return
				default:
				}
				s.e.c.WriteToUDPAddrPort(ether(broadcast, mac(byte(i+1)), seq), s.b.linkAddr())
				time.Sleep(100 * time.Microsecond)
			}
		}()
	}
	for i := range 30 {
		b, err := sw.OpenPort(10+i, access(1))
		if err != nil {
			t.Fatal(err)
		}
		s := plug(t, 10+i, b)
		if !receives(s.e) {
			t.Fatalf("new port %d gets nothing", 10+i)
		}
		if i%2 == 0 {
			b.Detach()
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	for _, ch := range done {
		<-ch
	}
	drain(sink.e, 50*time.Millisecond)
	senders[0].sendAll(ether(broadcast, mac(1), 1<<30))
	sink.expectSeqs(1 << 30)
	if n := len(sw.PortStats()); n != 3 {
		t.Fatalf("%d ports open, want 3", n)
	}
}

// TestSwitchNoAllocsPerFrame relays frames between access ports (as
// they are), between an access port and a trunk (rewritten), and flooded
// to several ports, and counts allocations per frame.
func TestSwitchNoAllocsPerFrame(t *testing.T) {
	cases := []struct {
		name string
		out  PortConfig
		dst  net.HardwareAddr
	}{
		{"access-access", access(1), mac(2)},
		{"access-trunk", trunk(99), mac(2)},
		{"flooded", access(1), broadcast},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sw := newTestSwitch(t)
			in := openSwitchPort(t, sw, 0, access(1))
			out := openSwitchPort(t, sw, 1, tc.out)
			if tc.dst.String() == broadcast.String() {
				openSwitchPort(t, sw, 2, access(1))
			}
			c, err := pcap.Create(filepath.Join(t.TempDir(), "x.pcap"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			out.b.SetCapture(c)
			// Teach the switch where mac(2) is.
			out.sendAll(ether(broadcast, mac(2), 0, tag{0x8100, 1}))
			f := ether(tc.dst, mac(1), 1)
			to := in.b.linkAddr()
			buf := make([]byte, 2048)
			roundTrip := func() {
				in.e.c.WriteToUDPAddrPort(f, to)
				out.e.c.ReadFromUDPAddrPort(buf)
			}
			for range 100 { // warm up: batches pooled, stacks grown
				roundTrip()
			}
			if allocs := testing.AllocsPerRun(1000, roundTrip); allocs > 0 {
				t.Fatalf("%.2f allocations per frame, want 0", allocs)
			}
		})
	}
}

// TestSwitchLargestFrame sends the largest UDP datagram (65507 bytes)
// through the switch: as it is to an access port, and to a trunk, where
// the pushed tag makes it too big for a datagram: that one frame is
// counted as a send error and the frames after it still go.
func TestSwitchLargestFrame(t *testing.T) {
	sw := newTestSwitch(t)
	in := openSwitchPort(t, sw, 0, access(10))
	acc := openSwitchPort(t, sw, 1, access(10))
	tr := openSwitchPort(t, sw, 2, trunk(1))
	big := append(ether(broadcast, mac(1), 1), make([]byte, 65507-64)...)
	in.sendAll(big, ether(broadcast, mac(1), 2))
	if got, _ := acc.e.recv(5 * time.Second); !bytes.Equal(got, big) {
		t.Fatalf("access port got %d bytes, want the %d sent", len(got), len(big))
	}
	acc.expectSeqs(2)
	if got := tr.recv(); got.seq != 2 || !slices.Equal(got.tags, []tag{{0x8100, 10}}) {
		t.Fatalf("trunk got seq %d tags %v, want seq 2 tagged 10", got.seq, got.tags)
	}
	if st := tr.b.Stats().NodeToLink; st.DroppedSendError != 1 || st.Packets != 1 {
		t.Fatalf("trunk stats %+v, want 1 sent and 1 too big", st)
	}
}
