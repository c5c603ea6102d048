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
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"golang.org/x/sys/unix"

	"labd/nio/pcap"
)

var loopback = netip.MustParseAddr("127.0.0.1")

// endpoint is a plain UDP socket on 127.0.0.1 playing a node or a link peer.
type endpoint struct {
	t   testing.TB
	c   *net.UDPConn
	buf []byte
}

func newEndpoint(t testing.TB) *endpoint {
	t.Helper()
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(loopback, 0)))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetReadBuffer(4 << 20); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &endpoint{t: t, c: c, buf: make([]byte, 65536)}
}

func (e *endpoint) addr() netip.AddrPort { return e.c.LocalAddr().(*net.UDPAddr).AddrPort() }

func (e *endpoint) send(to netip.AddrPort, frame []byte) {
	e.t.Helper()
	if _, err := e.c.WriteToUDPAddrPort(frame, to); err != nil {
		e.t.Fatalf("send to %v: %v", to, err)
	}
}

// recv returns the next datagram (a view of e's buffer) or false after
// timeout.
func (e *endpoint) recv(timeout time.Duration) ([]byte, bool) {
	e.t.Helper()
	if err := e.c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		e.t.Fatal(err)
	}
	n, _, err := e.c.ReadFromUDPAddrPort(e.buf)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, false
		}
		e.t.Fatalf("recv: %v", err)
	}
	return e.buf[:n], true
}

// mustRecv returns the next datagram or fails the test.
func (e *endpoint) mustRecv() []byte {
	e.t.Helper()
	got, ok := e.recv(5 * time.Second)
	if !ok {
		e.t.Fatal("no datagram within 5s")
	}
	return got
}

// frame builds a test frame: a 4-byte sequence number, then a pattern
// that depends on it.
func frame(seq uint32, size int) []byte {
	f := make([]byte, size)
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], seq)
	copy(f, hdr[:])
	for i := 4; i < size; i++ {
		f[i] = byte(uint32(i)*7 + seq)
	}
	return f
}

func seqOf(f []byte) uint32 {
	if len(f) < 4 {
		return ^uint32(0)
	}
	return binary.BigEndian.Uint32(f)
}

// waitFor polls cond until it holds or fails the test after timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// rig is a bridge between a node endpoint and (once attached) a peer.
type rig struct {
	b    *Bridge
	node *endpoint
	peer *endpoint
}

func newRig(t testing.TB, attach bool) *rig {
	t.Helper()
	r := &rig{node: newEndpoint(t), peer: newEndpoint(t)}
	b, err := OpenBridge(BridgeConfig{
		Name:   t.Name(),
		Tunnel: netip.AddrPortFrom(loopback, 0),
		Node:   r.node.addr(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	r.b = b
	if attach {
		r.attach(t, r.peer)
	}
	return r
}

func (r *rig) attach(t testing.TB, peer *endpoint) {
	t.Helper()
	if err := r.b.Attach(netip.AddrPortFrom(loopback, 0), peer.addr()); err != nil {
		t.Fatal(err)
	}
}

// toPeer sends from the node into the tunnel; toNode sends from the peer
// to the link socket.
func (r *rig) toPeer(f []byte) { r.node.send(r.b.tunnelAddr(), f) }
func (r *rig) toNode(f []byte) { r.peer.send(r.b.linkAddr(), f) }

func TestBridgeRelaysBothWays(t *testing.T) {
	r := newRig(t, true)
	sizes := []int{1, 2, 14, 60, 64, 512, 1400, 1514, 9000, 32768, 65000, 65507}
	var total uint64
	for i, size := range sizes {
		f := frame(uint32(i), size)
		r.toPeer(f)
		if got := r.peer.mustRecv(); !bytes.Equal(got, f) {
			t.Fatalf("node->link, %d bytes: got %d bytes, content differs", size, len(got))
		}
		g := frame(uint32(1000+i), size)
		r.toNode(g)
		if got := r.node.mustRecv(); !bytes.Equal(got, g) {
			t.Fatalf("link->node, %d bytes: got %d bytes, content differs", size, len(got))
		}
		total += uint64(size)
	}
	// Counters are published after the send: wait for the last one.
	waitFor(t, 5*time.Second, "the counters", func() bool {
		return r.b.Stats().LinkToNode.Packets == uint64(len(sizes))
	})
	st := r.b.Stats()
	for _, d := range []DirectionStats{st.NodeToLink, st.LinkToNode} {
		if d.Packets != uint64(len(sizes)) || d.Bytes != total || d.Dropped != 0 {
			t.Errorf("stats %+v, want %d packets, %d bytes, none dropped", d, len(sizes), total)
		}
	}
}

// TestBridgeRelaysBursts sends bursts that the bridge reads in batches and
// sends in segmented (GSO) messages: runs of equal sizes, runs ended by a
// shorter frame, frames too big to share a message. Every datagram must
// arrive whole, alone and in order.
func TestBridgeRelaysBursts(t *testing.T) {
	r := newRig(t, true)
	sizes := []int{600, 600, 600, 600, 200, 600, 600, 1400, 1400, 1, 1, 1, 64, 64, 9000, 9000, 60000, 60000, 30000, 30000, 30000}
	const bursts, window = 10, 100 // a window stays well inside the socket buffers
	seq := uint32(0)
	for range bursts {
		first := seq
		for range window {
			r.toPeer(frame(seq, sizes[int(seq)%len(sizes)]))
			seq++
		}
		for want := first; want < seq; want++ {
			got := r.peer.mustRecv()
			if !bytes.Equal(got, frame(want, sizes[int(want)%len(sizes)])) {
				t.Fatalf("frame %d: got seq %d, %d bytes; stats %+v", want, seqOf(got), len(got), r.b.Stats())
			}
		}
	}
}

func TestBridgeDropsUntilAttached(t *testing.T) {
	r := newRig(t, false)
	for i := range 5 {
		r.toPeer(frame(uint32(i), 64))
	}
	waitFor(t, 5*time.Second, "5 frames counted as dropped (no link)", func() bool {
		return r.b.Stats().NodeToLink.DroppedNoLink == 5
	})
	r.attach(t, r.peer)
	r.toPeer(frame(99, 64))
	if got := seqOf(r.peer.mustRecv()); got != 99 {
		t.Fatalf("first frame after Attach has seq %d, want 99 (frames sent before Attach must be dropped)", got)
	}
	waitFor(t, 5*time.Second, "the counters", func() bool { return r.b.Stats().NodeToLink.Packets == 1 })
	if st := r.b.Stats().NodeToLink; st.Dropped != 5 || st.Packets != 1 {
		t.Fatalf("stats %+v, want 5 dropped, 1 forwarded", st)
	}
}

// flow sends numbered frames from the node every ms until stopped.
type flow struct {
	stop chan struct{}
	wg   sync.WaitGroup
}

func startFlow(r *rig) *flow {
	fl := &flow{stop: make(chan struct{})}
	to := r.b.tunnelAddr()
	c := r.node.c
	fl.wg.Go(func() {
		f := frame(0, 200)
		for seq := uint32(0); ; seq++ {
			select {
			case <-fl.stop:
				return
			case <-time.After(time.Millisecond):
			}
			binary.BigEndian.PutUint32(f, seq)
			c.WriteToUDPAddrPort(f, to) // errors show up as missing frames
		}
	})
	return fl
}

func (fl *flow) close() {
	close(fl.stop)
	fl.wg.Wait()
}

// receives reports whether e gets a datagram within 300 ms (the flow
// sends one every millisecond).
func receives(e *endpoint) bool {
	_, ok := e.recv(300 * time.Millisecond)
	return ok
}

// drain reads e until it has been quiet for quiet.
func drain(e *endpoint, quiet time.Duration) {
	for {
		if _, ok := e.recv(quiet); !ok {
			return
		}
	}
}

func TestBridgeHotAttachDetach(t *testing.T) {
	r := newRig(t, true)
	peer2 := newEndpoint(t)
	fl := startFlow(r)
	defer fl.close()

	if !receives(r.peer) {
		t.Fatal("peer 1 gets nothing while attached")
	}

	// Replace the link while frames flow.
	r.attach(t, peer2)
	drain(r.peer, 100*time.Millisecond)
	if !receives(peer2) {
		t.Fatal("peer 2 gets nothing after the link was replaced")
	}
	if receives(r.peer) {
		t.Fatal("peer 1 still gets frames after the link was replaced")
	}
	// The new link works backwards too.
	peer2.send(r.b.linkAddr(), frame(7, 64))
	waitFor(t, 5*time.Second, "link->node frame from peer 2", func() bool {
		return r.b.Stats().LinkToNode.Packets == 1
	})

	// Detach: the node's frames are dropped and counted.
	r.b.Detach()
	drain(peer2, 100*time.Millisecond)
	before := r.b.Stats().NodeToLink.DroppedNoLink
	if receives(peer2) {
		t.Fatal("peer 2 gets frames after Detach")
	}
	if after := r.b.Stats().NodeToLink.DroppedNoLink; after <= before {
		t.Fatalf("DroppedNoLink stayed at %d after Detach while the node sends", after)
	}

	// Re-attach the first peer.
	r.attach(t, r.peer)
	if !receives(r.peer) {
		t.Fatal("peer 1 gets nothing after re-Attach")
	}
}

func TestBridgeAttachTakenPortKeepsOldLink(t *testing.T) {
	r := newRig(t, true)
	taken := newEndpoint(t) // bound without SO_REUSEADDR: nobody may share it
	peer2 := newEndpoint(t)
	fl := startFlow(r)
	defer fl.close()
	if !receives(r.peer) {
		t.Fatal("peer gets nothing")
	}
	if err := r.b.Attach(taken.addr(), peer2.addr()); err == nil {
		t.Fatalf("Attach on taken port %v succeeded", taken.addr())
	}
	drain(r.peer, 0)
	if !receives(r.peer) {
		t.Fatal("the old link stopped working after a failed Attach")
	}
	r.toNode(frame(1, 64))
	for {
		got := r.node.mustRecv()
		if seqOf(got) == 1 {
			break
		}
	}
}

// TestBridgeReattachSamePort replaces the link with one bound to the same
// local port (SO_REUSEADDR lets the new socket bind before the old one
// closes) and a new remote.
func TestBridgeReattachSamePort(t *testing.T) {
	r := newRig(t, true)
	local := r.b.linkAddr()
	peer2 := newEndpoint(t)
	if err := r.b.Attach(local, peer2.addr()); err != nil {
		t.Fatalf("re-Attach on the same port: %v", err)
	}
	if got := r.b.linkAddr(); got != local {
		t.Fatalf("link bound to %v, want %v", got, local)
	}
	r.toPeer(frame(1, 64))
	if got := seqOf(peer2.mustRecv()); got != 1 {
		t.Fatalf("peer 2 got seq %d", got)
	}
	peer2.send(local, frame(2, 64))
	if got := seqOf(r.node.mustRecv()); got != 2 {
		t.Fatalf("node got seq %d", got)
	}
}

func TestBridgeSuspend(t *testing.T) {
	r := newRig(t, true)
	r.b.SetSuspended(true)
	const n = 10
	for i := range n {
		r.toPeer(frame(uint32(i), 64))
		r.toNode(frame(uint32(i), 64))
	}
	waitFor(t, 5*time.Second, "suspended frames counted as dropped", func() bool {
		st := r.b.Stats()
		return st.NodeToLink.DroppedSuspend == n && st.LinkToNode.DroppedSuspend == n
	})
	r.b.SetSuspended(false)
	// Frames go through the same sockets in order: had the suspended ones
	// been forwarded, they would arrive before these markers.
	r.toPeer(frame(100, 64))
	r.toNode(frame(200, 64))
	if got := seqOf(r.peer.mustRecv()); got != 100 {
		t.Fatalf("peer got seq %d first, want the marker 100", got)
	}
	if got := seqOf(r.node.mustRecv()); got != 200 {
		t.Fatalf("node got seq %d first, want the marker 200", got)
	}
}

// delayFilters returns filters that delay every frame by d, if the filter
// package implements delay yet.
func delayFilters(t *testing.T, d time.Duration) *Filters {
	f, err := ParseFilters(FilterSpec{"delay": {float64(d / time.Millisecond), float64(0)}})
	if err != nil {
		t.Logf("ParseFilters(delay): %v", err)
		return nil
	}
	if v := f.NewChain().Apply(frame(0, 64)); v.Delay != d {
		return nil
	}
	return f
}

func TestBridgeDelayDoesNotSerialise(t *testing.T) {
	const (
		n     = 200
		delay = 100 * time.Millisecond
	)
	r := newRig(t, true)
	f := delayFilters(t, delay)
	start := time.Now()
	if f != nil {
		r.b.SetFilters(f)
		for i := range n {
			r.toPeer(frame(uint32(i), 64))
		}
	} else {
		// Until the filters land, feed the scheduler the way forward does.
		t.Log("delay filter not implemented yet: pushing into the delay queue directly")
		var tl tally
		for i := range n {
			r.b.toLink.delay.push(frame(uint32(i), 64), delay, &tl)
		}
	}
	var first time.Duration
	for i := range n {
		got := r.peer.mustRecv()
		if i == 0 {
			first = time.Since(start)
		}
		if seqOf(got) != uint32(i) {
			t.Fatalf("frame %d has seq %d: delayed frames must keep their order", i, seqOf(got))
		}
	}
	total := time.Since(start)
	t.Logf("first frame after %v, all %d after %v", first, n, total)
	if first < delay-5*time.Millisecond {
		t.Errorf("first frame arrived after %v, before the %v delay", first, delay)
	}
	if total > 2*time.Second {
		t.Errorf("%d frames delayed %v took %v: the delay serialises the link", n, delay, total)
	}
	waitFor(t, 5*time.Second, fmt.Sprintf("the counters to show %d packets", n), func() bool {
		return r.b.Stats().NodeToLink.Packets == n
	})
}

func TestDelayQueueOrdersByDueTime(t *testing.T) {
	r := newRig(t, true)
	var tl tally
	// Pushed out of due order; equal delays must keep push order.
	delays := []time.Duration{60, 20, 40, 20, 60, 20}
	for i, d := range delays {
		r.b.toLink.delay.push(frame(uint32(i), 64), d*time.Millisecond, &tl)
	}
	want := []uint32{1, 3, 5, 2, 0, 4}
	for i, w := range want {
		if got := seqOf(r.peer.mustRecv()); got != w {
			t.Fatalf("frame %d: got seq %d, want %d", i, got, w)
		}
	}
}

func TestDelayQueueOverflowDrops(t *testing.T) {
	r := newRig(t, true)
	var tl tally
	for i := range maxDelayed + 10 {
		r.b.toLink.delay.push(frame(uint32(i), 64), time.Hour, &tl)
	}
	if tl.queueFull != 10 {
		t.Fatalf("queueFull = %d, want 10", tl.queueFull)
	}
}

// ethFrame builds a real Ethernet/IPv4/UDP frame carrying seq.
func ethFrame(t *testing.T, seq uint32, fromNode bool) []byte {
	t.Helper()
	src, dst := []byte{0, 0x50, 0x79, 0x66, 0x68, 0}, []byte{0, 0x50, 0x79, 0x66, 0x68, 1}
	if !fromNode {
		src, dst = dst, src
	}
	eth := &layers.Ethernet{SrcMAC: src, DstMAC: dst, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP,
		SrcIP: net.IP{10, 0, 0, 1}, DstIP: net.IP{10, 0, 0, 2}}
	udp := &layers.UDP{SrcPort: 1000, DstPort: 2000}
	if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	var payload [4]byte
	binary.BigEndian.PutUint32(payload[:], seq)
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, eth, ip, udp, gopacket.Payload(payload[:])); err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(buf.Bytes())
}

func TestBridgeCapture(t *testing.T) {
	r := newRig(t, true)
	path := filepath.Join(t.TempDir(), "link.pcap")
	c, err := pcap.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	r.b.SetCapture(c)
	const n = 50
	for i := range n {
		r.toPeer(ethFrame(t, uint32(2*i), true))
		r.peer.mustRecv()
		r.toNode(ethFrame(t, uint32(2*i+1), false))
		r.node.mustRecv()
	}
	r.b.SetCapture(nil)
	r.toPeer(ethFrame(t, 1000, true)) // not captured
	r.peer.mustRecv()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	rd, err := pcapgo.NewReader(fh)
	if err != nil {
		t.Fatal(err)
	}
	if rd.LinkType() != layers.LinkTypeEthernet || rd.Snaplen() != 65535 {
		t.Fatalf("link type %v, snaplen %d", rd.LinkType(), rd.Snaplen())
	}
	var last time.Time
	for i := 0; ; i++ {
		data, ci, err := rd.ReadPacketData()
		if err == io.EOF {
			if i != 2*n {
				t.Fatalf("capture holds %d packets, want %d", i, 2*n)
			}
			break
		}
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if ci.Timestamp.Before(last) {
			t.Fatalf("packet %d: timestamp %v before %v", i, ci.Timestamp, last)
		}
		last = ci.Timestamp
		p := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
		eth, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
		udp, _ := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
		if eth == nil || udp == nil {
			t.Fatalf("packet %d does not decode as Ethernet/IPv4/UDP: %v", i, p)
		}
		if got := binary.BigEndian.Uint32(udp.Payload); got != uint32(i) {
			t.Fatalf("packet %d carries seq %d: out of order", i, got)
		}
		if fromNode := eth.SrcMAC[5] == 0; fromNode != (i%2 == 0) {
			t.Fatalf("packet %d has the wrong direction (src %v)", i, eth.SrcMAC)
		}
	}
}

func TestBridgeFiltersAndCapture(t *testing.T) {
	r := newRig(t, true)
	path := filepath.Join(t.TempDir(), "link.pcap")
	c, err := pcap.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	r.b.SetCapture(c)
	everyOther, err := ParseFilters(FilterSpec{"frequency_drop": {float64(2)}})
	if err != nil {
		t.Fatal(err)
	}
	r.b.SetFilters(everyOther)
	for i := range 10 {
		r.toPeer(frame(uint32(i), 64))
	}
	var want []uint32
	for i := uint32(0); i < 10; i += 2 {
		if got := seqOf(r.peer.mustRecv()); got != i {
			t.Fatalf("got seq %d, want %d (every second frame dropped)", got, i)
		}
		want = append(want, i)
	}
	// Frame 9 is dropped: wait for it before the filters change.
	waitFor(t, 5*time.Second, "5 frames dropped by the filter", func() bool {
		return r.b.Stats().NodeToLink.DroppedFilter == 5
	})
	// The other direction has a chain of its own: its count starts afresh.
	r.toNode(frame(100, 64))
	r.toNode(frame(101, 64))
	r.toNode(frame(102, 64))
	for _, w := range []uint32{100, 102} {
		if got := seqOf(r.node.mustRecv()); got != w {
			t.Fatalf("link->node: got seq %d, want %d", got, w)
		}
		want = append(want, w)
	}

	// Delayed frames are captured when they are sent.
	f := delayFilters(t, 30*time.Millisecond)
	if f == nil {
		t.Fatal("delay filter not available")
	}
	r.b.SetFilters(f)
	for i := uint32(20); i < 23; i++ {
		r.toPeer(frame(i, 64))
	}
	for i := uint32(20); i < 23; i++ {
		if got := seqOf(r.peer.mustRecv()); got != i {
			t.Fatalf("delayed: got seq %d, want %d", got, i)
		}
		want = append(want, i)
	}
	r.b.SetCapture(nil)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the counters", func() bool { return r.b.Stats().NodeToLink.Packets == 8 })
	st := r.b.Stats()
	if st.NodeToLink.DroppedFilter != 5 || st.LinkToNode.DroppedFilter != 1 {
		t.Fatalf("filter drops %d / %d, want 5 / 1", st.NodeToLink.DroppedFilter, st.LinkToNode.DroppedFilter)
	}

	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	rd, err := pcapgo.NewReader(fh)
	if err != nil {
		t.Fatal(err)
	}
	var got []uint32
	for {
		data, _, err := rd.ReadPacketData()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, seqOf(data))
	}
	if !slices.Equal(got, want) {
		t.Fatalf("captured %v, want %v (dropped frames are not captured)", got, want)
	}
}

func TestBridgeControlWhileRelaying(t *testing.T) {
	r := newRig(t, true)
	c, err := pcap.Create(filepath.Join(t.TempDir(), "x.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fl := startFlow(r)
	f, err := ParseFilters(FilterSpec{})
	if err != nil {
		t.Fatal(err)
	}
	peerDone := make(chan struct{})
	go func() {
		defer close(peerDone)
		for range 200 {
			r.peer.c.WriteToUDPAddrPort(frame(1, 300), r.b.linkAddr())
			time.Sleep(200 * time.Microsecond)
		}
	}()
	for i := range 200 {
		r.b.SetFilters(f)
		r.b.SetCapture(c)
		r.b.SetSuspended(i%2 == 0)
		r.b.Stats()
		r.b.SetFilters(nil)
		r.b.SetCapture(nil)
		time.Sleep(100 * time.Microsecond)
	}
	<-peerDone
	fl.close()
	r.b.SetSuspended(false)
	r.toPeer(frame(5000, 64))
	for seqOf(r.peer.mustRecv()) != 5000 {
	}
}

// bridgeGoroutines counts the goroutines running bridge code.
func bridgeGoroutines() int {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for g := range bytes.SplitSeq(buf, []byte("\n\n")) {
		for _, mark := range []string{"labd/nio.(*reader)", "labd/nio.(*delayQueue)", "labd/nio.OpenBridge", "labd/nio.(*Bridge).Attach"} {
			if bytes.Contains(g, []byte(mark)) && !bytes.Contains(g, []byte("labd/nio.Test")) {
				n++
				break
			}
		}
	}
	return n
}

func TestBridgeCloseStopsEverything(t *testing.T) {
	before := runtime.NumGoroutine()
	var bridges []*Bridge
	for range 10 {
		r := newRig(t, true)
		fl := startFlow(r)
		var tl tally
		r.b.toLink.delay.push(frame(1, 64), time.Hour, &tl) // starts a scheduler
		r.b.toNode.delay.push(frame(1, 64), time.Hour, &tl)
		r.toNode(frame(2, 64))
		r.node.mustRecv()
		fl.close()
		bridges = append(bridges, r.b)
	}
	// Two readers and two delay schedulers per bridge.
	waitFor(t, 2*time.Second, "40 bridge goroutines", func() bool { return bridgeGoroutines() == 40 })
	for _, b := range bridges {
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		if err := b.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	}
	// Close has waited for its goroutines; the poll only lets them finish
	// returning after their last wg.Done.
	waitFor(t, time.Second, "no bridge goroutines", func() bool { return bridgeGoroutines() == 0 })
	waitFor(t, 2*time.Second, "the goroutine count to return to where it was", func() bool {
		return runtime.NumGoroutine() <= before
	})
	if err := bridges[0].Attach(netip.AddrPortFrom(loopback, 0), netip.AddrPortFrom(loopback, 9)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Attach after Close: %v, want net.ErrClosed", err)
	}
}

func TestBridgeNoAllocsPerPacket(t *testing.T) {
	for _, delayed := range []bool{false, true} {
		t.Run(fmt.Sprintf("delayed=%v", delayed), func(t *testing.T) {
			r := newRig(t, true)
			c, err := pcap.Create(filepath.Join(t.TempDir(), "x.pcap"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			r.b.SetCapture(c)
			runs := 1000
			if delayed {
				f := delayFilters(t, time.Millisecond)
				if f == nil {
					t.Fatal("delay filter not available")
				}
				r.b.SetFilters(f)
				runs = 200
			}
			f := frame(1, 512)
			to := r.b.tunnelAddr()
			roundTrip := func() {
				r.node.c.WriteToUDPAddrPort(f, to)
				r.peer.c.ReadFromUDPAddrPort(r.peer.buf)
			}
			for range 100 { // warm up: batches pooled, buffers free-listed, stacks grown
				roundTrip()
			}
			if allocs := testing.AllocsPerRun(runs, roundTrip); allocs > 0 {
				t.Fatalf("%.2f allocations per relayed packet, want 0", allocs)
			}
		})
	}
}

func TestOpenBridgeErrors(t *testing.T) {
	taken := newEndpoint(t)
	if _, err := OpenBridge(BridgeConfig{Name: "x", Tunnel: taken.addr(), Node: netip.AddrPortFrom(loopback, 9)}); err == nil {
		t.Fatal("OpenBridge on a taken tunnel port succeeded")
	}
	if _, err := OpenBridge(BridgeConfig{Name: "x", Tunnel: netip.AddrPortFrom(loopback, 0)}); err == nil {
		t.Fatal("OpenBridge without a node address succeeded")
	}
}

// freePort returns a port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) netip.AddrPort {
	t.Helper()
	e := newEndpoint(t)
	a := e.addr()
	e.c.Close()
	return a
}

// linkedPair is two bridges whose links point at each other, each with
// its own node: nodeA - A == link == B - nodeB.
type linkedPair struct {
	a, b         *Bridge
	nodeA, nodeB *endpoint
	portA, portB netip.AddrPort
}

func newLinkedPair(t *testing.T, plane *Plane) *linkedPair {
	t.Helper()
	p := &linkedPair{nodeA: newEndpoint(t), nodeB: newEndpoint(t), portA: freePort(t), portB: freePort(t)}
	open := func(node *endpoint, name string) *Bridge {
		b, err := OpenBridge(BridgeConfig{Name: name, Tunnel: netip.AddrPortFrom(loopback, 0), Node: node.addr(), Plane: plane})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b
	}
	p.a, p.b = open(p.nodeA, "A"), open(p.nodeB, "B")
	p.attachA(t)
	if err := p.b.Attach(p.portB, p.portA); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *linkedPair) attachA(t *testing.T) {
	t.Helper()
	if err := p.a.Attach(p.portA, p.portB); err != nil {
		t.Fatal(err)
	}
}

func (p *linkedPair) aToB(f []byte) { p.nodeA.send(p.a.tunnelAddr(), f) }
func (p *linkedPair) bToA(f []byte) { p.nodeB.send(p.b.tunnelAddr(), f) }

// expect fails unless e's next datagrams carry seqs.
func expect(t *testing.T, e *endpoint, seqs ...uint32) {
	t.Helper()
	for _, want := range seqs {
		if got := seqOf(e.mustRecv()); got != want {
			t.Fatalf("got seq %d, want %d", got, want)
		}
	}
}

// TestPlane runs the same scenario on two linked bridges without and with
// a Plane: what the nodes see must not change, only the path.
func TestPlane(t *testing.T) {
	for _, withPlane := range []bool{false, true} {
		t.Run(fmt.Sprintf("plane=%v", withPlane), func(t *testing.T) {
			var plane *Plane
			if withPlane {
				plane = NewPlane()
			}
			p := newLinkedPair(t, plane)

			p.aToB(frame(1, 64))
			expect(t, p.nodeB, 1)
			p.bToA(frame(2, 65000))
			expect(t, p.nodeA, 2)
			if spliced := p.a.Stats().NodeToLink.Spliced > 0 && p.b.Stats().NodeToLink.Spliced > 0; spliced != withPlane {
				t.Fatalf("spliced = %v, want %v", spliced, withPlane)
			}

			// B's inbound filters and capture apply to frames from A.
			c, err := pcap.Create(filepath.Join(t.TempDir(), "b.pcap"))
			if err != nil {
				t.Fatal(err)
			}
			p.b.SetCapture(c)
			everyOther, err := ParseFilters(FilterSpec{"frequency_drop": {2}})
			if err != nil {
				t.Fatal(err)
			}
			p.b.SetFilters(everyOther)
			for i := range 6 {
				p.aToB(frame(uint32(10+i), 64))
			}
			expect(t, p.nodeB, 10, 12, 14)
			// Frame 15 is dropped: wait for it before removing the filter.
			waitFor(t, 5*time.Second, "B to count 3 inbound frames dropped by its filter", func() bool {
				return p.b.Stats().LinkToNode.DroppedFilter >= 3
			})
			p.b.SetFilters(nil)
			p.b.SetCapture(nil)
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			if got := capturedSeqs(t, c.Path()); !slices.Equal(got, []uint32{10, 12, 14}) {
				t.Fatalf("B captured %v, want [10 12 14]", got)
			}
			if st := p.b.Stats(); st.LinkToNode.DroppedFilter != 3 {
				t.Fatalf("B stats %+v, want 3 inbound frames dropped by filter", st)
			}

			// A's outbound delay holds frames, in order, then they cross.
			delay := delayFilters(t, 30*time.Millisecond)
			if delay == nil {
				t.Fatal("delay filter not available")
			}
			p.a.SetFilters(delay)
			for i := range 20 {
				p.aToB(frame(uint32(100+i), 64))
			}
			for i := range 20 {
				expect(t, p.nodeB, uint32(100+i))
			}
			p.a.SetFilters(nil)

			// Suspending B stops both directions at B.
			p.b.SetSuspended(true)
			p.aToB(frame(200, 64))
			p.bToA(frame(201, 64))
			waitFor(t, 5*time.Second, "B to drop both frames", func() bool {
				st := p.b.Stats()
				return st.LinkToNode.DroppedSuspend == 1 && st.NodeToLink.DroppedSuspend == 1
			})
			p.b.SetSuspended(false)
			p.aToB(frame(202, 64))
			expect(t, p.nodeB, 202)
			p.bToA(frame(203, 64))
			expect(t, p.nodeA, 203)

			// Detach A: A drops its node's frames, and B's go to a closed
			// port, whether spliced or not.
			p.a.Detach()
			p.aToB(frame(300, 64))
			p.bToA(frame(301, 64))
			waitFor(t, 5*time.Second, "A to drop its node's frame", func() bool {
				return p.a.Stats().NodeToLink.DroppedNoLink == 1
			})
			if got, ok := p.nodeA.recv(100 * time.Millisecond); ok {
				t.Fatalf("node A got seq %d while A is detached", seqOf(got))
			}
			if p.b.splice.Load() != nil {
				t.Fatal("B still spliced after A detached")
			}

			// Re-attach: traffic flows again both ways.
			p.attachA(t)
			p.aToB(frame(400, 64))
			expect(t, p.nodeB, 400)
			p.bToA(frame(401, 64))
			expect(t, p.nodeA, 401)
			if spliced := p.b.splice.Load() != nil; spliced != withPlane {
				t.Fatalf("after re-Attach spliced = %v, want %v", spliced, withPlane)
			}
		})
	}
}

func TestPlaneUnderLoad(t *testing.T) {
	p := newLinkedPair(t, NewPlane())
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, src := range []struct {
		c  *net.UDPConn
		to netip.AddrPort
	}{{p.nodeA.c, p.a.tunnelAddr()}, {p.nodeB.c, p.b.tunnelAddr()}} {
		wg.Go(func() {
			f := frame(0, 300)
			for {
				select {
				case <-stop:
					return
				default:
				}
				src.c.WriteToUDPAddrPort(f, src.to)
				time.Sleep(50 * time.Microsecond)
			}
		})
	}
	f, err := ParseFilters(FilterSpec{"delay": {1}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		p.a.SetFilters(f)
		p.b.SetSuspended(i%3 == 0)
		if i%5 == 0 {
			p.a.Detach()
			p.attachA(t)
		}
		p.b.SetFilters(f)
		time.Sleep(time.Millisecond)
		p.a.SetFilters(nil)
		p.b.SetFilters(nil)
	}
	close(stop)
	wg.Wait()
	p.b.SetSuspended(false)
	drain(p.nodeA, 50*time.Millisecond)
	drain(p.nodeB, 50*time.Millisecond)
	p.aToB(frame(7, 64))
	expect(t, p.nodeB, 7)
	p.bToA(frame(8, 64))
	expect(t, p.nodeA, 8)
	if p.a.Stats().NodeToLink.Spliced == 0 {
		t.Fatal("nothing was spliced")
	}
}

// capturedSeqs reads the seqs of the frames in a pcap file.
func capturedSeqs(t *testing.T, path string) []uint32 {
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
	var got []uint32
	for {
		data, _, err := rd.ReadPacketData()
		if err == io.EOF {
			return got
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, seqOf(data))
	}
}

func TestPack(t *testing.T) {
	rep := func(size, n int) []int { return slices.Repeat([]int{size}, n) }
	tests := []struct {
		name  string
		sizes []int
		gso   bool
		segs  []int // frames per message
	}{
		{"no gso", []int{600, 600, 600}, false, []int{1, 1, 1}},
		{"equal run", rep(600, 4), true, []int{4}},
		{"shorter ends a run", []int{600, 600, 600, 600, 200, 600, 600}, true, []int{5, 2}},
		{"shorter ends a run of two", []int{1400, 1400, 1, 1, 1}, true, []int{3, 2}},
		{"bigger starts a new run", []int{100, 200, 200}, true, []int{1, 2}},
		{"empty frames travel alone", []int{0, 0, 64, 0}, true, []int{1, 1, 1, 1}},
		{"too big to share", []int{60000, 60000}, true, []int{1, 1}},
		{"up to the largest datagram", []int{30000, 30000, 30000}, true, []int{2, 1}},
		{"a full batch", rep(100, batchSize), true, []int{batchSize}},
		{"single", []int{9000}, true, []int{1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bt := newSendBatch()
			for i, size := range tt.sizes {
				bt.siov[i].SetLen(size)
			}
			m := bt.pack(0, len(tt.sizes), 0, tt.gso)
			if !slices.Equal(bt.segs[:m], tt.segs) {
				t.Fatalf("segments per message %v, want %v", bt.segs[:m], tt.segs)
			}
			frame := 0
			for i := range m {
				msg := &bt.send[i]
				if msg.Hdr.Iov != &bt.siov[frame] || int(msg.Hdr.Iovlen) != tt.segs[i] {
					t.Fatalf("message %d does not cover frames %d..%d", i, frame, frame+tt.segs[i])
				}
				if (msg.Hdr.Control != nil) != (tt.segs[i] > 1) {
					t.Fatalf("message %d: control message present = %v with %d frames", i, msg.Hdr.Control != nil, tt.segs[i])
				}
				if tt.segs[i] > 1 {
					ctrl := bt.ctrl[i*segCmsgSpace : (i+1)*segCmsgSpace]
					if got := binary.NativeEndian.Uint16(ctrl[unix.CmsgLen(0):]); int(got) != tt.sizes[frame] {
						t.Fatalf("message %d: segment size %d, want %d", i, got, tt.sizes[frame])
					}
				}
				frame += tt.segs[i]
			}
		})
	}
}

// TestBridgeGSOFallback makes segmented sends fail on the link socket
// (SO_NO_CHECK forbids UDP GSO) and checks that frames still go out, one
// by one, from then on.
func TestBridgeGSOFallback(t *testing.T) {
	r := newRig(t, true)
	l := r.b.link.Load()
	var serr error
	if err := l.raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_NO_CHECK, 1)
	}); err != nil || serr != nil {
		t.Fatal(err, serr)
	}
	const n = 10
	bt := newBatch()
	for i := range n {
		f := frame(uint32(i), 500)
		copy(bt.slots[i*slotSize:], f)
		bt.siov[i].Base = bt.riov[i].Base
		bt.siov[i].SetLen(len(f))
	}
	r.b.toLink.process(bt, n) // as a reader or a spliced peer would
	for i := range n {
		if got := r.peer.mustRecv(); !bytes.Equal(got, frame(uint32(i), 500)) {
			t.Fatalf("frame %d: got seq %d, %d bytes", i, seqOf(got), len(got))
		}
	}
	if !l.noGSO.Load() {
		t.Fatal("GSO still enabled on a socket that refused a segmented send")
	}
	if st := r.b.Stats().NodeToLink; st.Packets != n || st.Dropped != 0 {
		t.Fatalf("stats %+v, want %d packets, none dropped", st, n)
	}
}
