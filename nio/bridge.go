package nio

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A Bridge relays one port's node side to that port's link, as ubridge
// does for GNS3 2.2:
//
//	node socket <-> tunnel socket | bridge | link socket (local) <-> link peer (remote)
//
// The node side is what OpenBridge, OpenTAP, OpenEthernet or a fabric's
// OpenPort made it: the UDP tunnel to a node's process, a TAP device, a
// host interface, or a port of an in-process Switch or Hub (see nodeSide).
// The link side is always a UDP socket, and everything a link does
// (filters, capture, suspension, counters, Attach and Detach) works the
// same whatever the node side is.
//
// One datagram is one Ethernet frame of up to 65535 bytes. Each direction
// has one owner goroutine, parked in the netpoller while idle, that drains
// its socket with recvmmsg into a batch borrowed from a shared pool and
// forwards with sendmmsg, grouping runs of equal-sized frames into UDP GSO
// messages: nothing is allocated per packet, and an idle link holds no
// buffer. Filters run inline; a delay queues the frame for a scheduler
// goroutine instead of stalling the reader. Filters, capture, suspension
// and the link itself can be changed while frames flow.
type Bridge struct {
	name  string
	log   *slog.Logger
	epoch time.Time // origin of the delay queues' clock
	node  nodeSide  // where link->node frames go

	toLink direction // node -> link, read from the node side (or fed by a fabric)
	toNode direction // link -> node, read from the link socket

	link      atomic.Pointer[link]   // the link toLink sends on; nil when detached
	splice    atomic.Pointer[Bridge] // the bridge at the other end of the link, when a Plane splices it
	suspended atomic.Bool
	closing   atomic.Bool
	capture   atomic.Pointer[captureRef]

	readers   sync.WaitGroup // the node reader, if the node side has one
	schedules sync.WaitGroup // the delay schedulers
	closeOnce sync.Once
	closeErr  error

	plane *Plane
	pl    planeEntry // guarded by plane.mu

	mu     sync.Mutex // guards the following
	cur    *link
	closed bool
}

// BridgeConfig says where a bridge binds its tunnel and whom it talks to.
type BridgeConfig struct {
	// Name is used in logs and errors, e.g. "VPCS-<node_id>-0/0".
	Name string
	// Tunnel is where the bridge binds its node-side socket (127.0.0.1:port).
	Tunnel netip.AddrPort
	// Node is the node's own socket; the tunnel socket is connected to it.
	Node netip.AddrPort
	// Logger receives the bridge's rare warnings; nil discards them.
	Logger *slog.Logger
	// Plane, if not nil, splices this bridge's link with another bridge
	// of the same Plane whose link is its mirror image on loopback.
	Plane *Plane
}

// CaptureSink receives every frame a bridge forwards, in both directions,
// after the filters. WritePacket must not retain frame.
type CaptureSink interface {
	WritePacket(ts time.Time, frame []byte)
}

// BridgeStats counts what a bridge did, per direction.
type BridgeStats struct {
	NodeToLink DirectionStats
	LinkToNode DirectionStats
}

// DirectionStats counts one direction of a bridge. Dropped is the sum of
// the Dropped* reasons.
type DirectionStats struct {
	Packets uint64 // frames forwarded
	Bytes   uint64 // bytes forwarded
	Dropped uint64 // frames dropped, for any reason below

	DroppedFilter    uint64 // a filter dropped it
	DroppedSuspend   uint64 // the bridge was suspended
	DroppedNoLink    uint64 // no link was attached
	DroppedQueueFull uint64 // the delay queue was full
	DroppedSendError uint64 // the output socket was full, gone or failed
	DroppedInvalid   uint64 // the node side refused it (a switch: not a valid Ethernet frame)

	// PeerErrors counts ICMP-reported errors (the peer's port is not open
	// yet, no route) seen on this direction's sockets. They are not logged.
	PeerErrors uint64

	// Spliced counts the forwarded frames a Plane handed straight to the
	// bridge at the other end of the link (included in Packets).
	Spliced uint64
}

// captureRef lets an interface value live in an atomic.Pointer.
type captureRef struct{ sink CaptureSink }

// sock is a socket (or device) frames are sent on.
type sock struct {
	raw   syscall.RawConn
	noGSO atomic.Bool // a segmented send failed on this socket, or it cannot segment: send one by one
	write mmsgFunc    // how to send messages; nil is sendmmsg
}

// sendmsgs sends msgs on fd the way this socket is written.
func (o *sock) sendmsgs(fd uintptr, msgs []unix.Mmsghdr) (int, unix.Errno) {
	if o.write != nil {
		return o.write(fd, msgs)
	}
	return sendmmsg(fd, msgs)
}

// link is one attached link side: its socket and the goroutine that reads it.
type link struct {
	sock
	conn *net.UDPConn
	rd   *reader
	done chan struct{} // closed when the reader has returned
}

// OpenBridge binds the tunnel socket, connects it to the node and starts
// relaying. Until a link is attached, frames from the node are dropped and
// counted.
func OpenBridge(cfg BridgeConfig) (*Bridge, error) {
	if !cfg.Tunnel.IsValid() || !cfg.Node.IsValid() || cfg.Node.Port() == 0 {
		return nil, fmt.Errorf("bridge %s: tunnel %v, node %v: %w", cfg.Name, cfg.Tunnel, cfg.Node, errInvalidAddr)
	}
	conn, err := dialUDP(cfg.Tunnel, cfg.Node)
	if err != nil {
		return nil, fmt.Errorf("bridge %s: tunnel: %w", cfg.Name, err)
	}
	raw, err := conn.SyscallConn()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("bridge %s: tunnel: %w", cfg.Name, err)
	}
	n := &fdNode{file: conn, tunnel: conn}
	n.raw = raw
	b := newBridge(cfg.Name, cfg.Logger, cfg.Plane, n)
	b.startNodeReader(raw, recvmmsg)
	return b, nil
}

var errInvalidAddr = errors.New("invalid address")

// newBridge returns a bridge with node as its node side and no link. A
// node side that has frames to read is then started with startNodeReader.
func newBridge(name string, log *slog.Logger, plane *Plane, node nodeSide) *Bridge {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &Bridge{
		name:  name,
		log:   log.With("bridge", name),
		epoch: time.Now(),
		node:  node,
		plane: plane,
	}
	b.toLink.init(b, "node->link", false)
	b.toNode.init(b, "link->node", true)
	return b
}

// startNodeReader starts the owner goroutine of the node->link direction,
// which drains rc with recv until the bridge closes.
func (b *Bridge) startNodeReader(rc syscall.RawConn, recv mmsgFunc) {
	rd := newReader(&b.toLink, &b.closing)
	rd.recv = recv
	b.readers.Go(func() { rd.run(rc) })
}

// tunnelAddr is the address the tunnel socket of a bridge made by
// OpenBridge is bound to.
func (b *Bridge) tunnelAddr() netip.AddrPort {
	return b.node.(*fdNode).tunnel.LocalAddr().(*net.UDPAddr).AddrPort()
}

// linkAddr is the address the current link socket is bound to, if any.
func (b *Bridge) linkAddr() netip.AddrPort {
	if l := b.link.Load(); l != nil {
		return l.conn.LocalAddr().(*net.UDPAddr).AddrPort()
	}
	return netip.AddrPort{}
}

// Attach adds or replaces the link side: it binds local (with
// SO_REUSEADDR, like ubridge) and connects to remote. If local cannot be
// bound, Attach fails and the previous link, if any, stays in place. On a
// closed bridge it fails with an error matching net.ErrClosed.
func (b *Bridge) Attach(local, remote netip.AddrPort) error {
	if !local.IsValid() || !remote.IsValid() || remote.Port() == 0 {
		return fmt.Errorf("bridge %s: attach %v -> %v: %w", b.name, local, remote, errInvalidAddr)
	}
	conn, err := dialUDP(local, remote)
	if err != nil {
		return fmt.Errorf("bridge %s: attach %v -> %v: %w", b.name, local, remote, err)
	}
	raw, err := conn.SyscallConn()
	if err != nil {
		conn.Close()
		return fmt.Errorf("bridge %s: attach %v -> %v: %w", b.name, local, remote, err)
	}
	l := &link{conn: conn, done: make(chan struct{})}
	l.raw = raw

	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		conn.Close()
		return fmt.Errorf("bridge %s: attach: %w", b.name, net.ErrClosed)
	}
	// The node->link direction switches at once; the old link's reader
	// is gone before the new one starts.
	b.plane.leave(b)
	b.link.Store(l)
	if old := b.cur; old != nil {
		old.shutdown()
	}
	b.cur = l
	b.plane.join(b, conn.LocalAddr().(*net.UDPAddr).AddrPort(), remote)
	b.node.linkChanged()
	l.rd = newReader(&b.toNode, nil)
	go func() {
		defer close(l.done)
		l.rd.run(raw)
	}()
	return nil
}

// Detach removes the link side. Frames from the node are dropped (and
// counted) until the next Attach.
func (b *Bridge) Detach() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.plane.leave(b)
	b.link.Store(nil)
	if b.cur != nil {
		b.cur.shutdown()
		b.cur = nil
		b.node.linkChanged()
	}
}

// shutdown stops the link's reader and closes its socket. Closing the
// socket wakes the reader if it is parked in the netpoller.
func (l *link) shutdown() {
	l.rd.stop.Store(true)
	l.conn.Close()
	<-l.done
}

// SetFilters installs f on both directions, each with its own Chain. It
// takes effect for the next batch of frames; nil removes all filters.
func (b *Bridge) SetFilters(f *Filters) {
	if f == nil {
		b.toLink.chain.Store(nil)
		b.toNode.chain.Store(nil)
		return
	}
	b.toLink.chain.Store(f.NewChain())
	b.toNode.chain.Store(f.NewChain())
}

// SetSuspended drops every frame in both directions while on (GNS3's
// "suspend link").
func (b *Bridge) SetSuspended(on bool) { b.suspended.Store(on) }

// SetCapture feeds every forwarded frame of both directions to c; nil
// stops feeding. A frame being forwarded while SetCapture runs may still
// reach the previous sink, so a sink must tolerate writes after its Close.
func (b *Bridge) SetCapture(c CaptureSink) {
	if c == nil {
		b.capture.Store(nil)
		return
	}
	b.capture.Store(&captureRef{sink: c})
}

// Stats returns the bridge's counters.
func (b *Bridge) Stats() BridgeStats {
	return BridgeStats{NodeToLink: b.toLink.ctr.snapshot(), LinkToNode: b.toNode.ctr.snapshot()}
}

// Close stops relaying, closes the sockets and returns once every
// goroutine of the bridge has returned. It is idempotent.
func (b *Bridge) Close() error {
	b.closeOnce.Do(func() {
		b.mu.Lock()
		b.closed = true
		l := b.cur
		b.cur = nil
		b.plane.leave(b)
		b.mu.Unlock()

		b.link.Store(nil)
		b.closing.Store(true)
		err := b.node.close()
		if l != nil {
			l.shutdown()
		}
		b.readers.Wait()
		// Our readers are gone and the Plane no longer hands us frames, so
		// once the queues are closed no scheduler can start any more. (A
		// spliced peer that loaded us just before may still finish a batch
		// into our closed sockets; that is its goroutine, and it only
		// counts drops.)
		b.toLink.delay.close()
		b.toNode.delay.close()
		b.schedules.Wait()
		if err != nil {
			b.closeErr = fmt.Errorf("bridge %s: close: %w", b.name, err)
		}
	})
	return b.closeErr
}

// now is the bridge's monotonic clock for delays.
func (b *Bridge) now() time.Duration { return time.Since(b.epoch) }

// dialUDP creates a UDP socket with the bridge's options, binds it to
// local and connects it to remote.
func dialUDP(local, remote netip.AddrPort) (*net.UDPConn, error) {
	local = netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
	remote = netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())
	network := "udp4"
	if remote.Addr().Is6() {
		network = "udp6"
	}
	d := net.Dialer{
		LocalAddr: net.UDPAddrFromAddrPort(local),
		Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) { serr = setSockopts(fd) }); err != nil {
				return err
			}
			return serr
		},
	}
	c, err := d.Dial(network, remote.String())
	if err != nil {
		return nil, err
	}
	return c.(*net.UDPConn), nil
}

// counters are a direction's statistics, updated once per batch.
type counters struct {
	packets, bytes                                 atomic.Uint64
	filter, suspend, noLink, queueFull, sendErrors atomic.Uint64
	invalid, peerErrors, spliced                   atomic.Uint64
}

// tally accumulates one batch's counts before they are published.
type tally struct {
	packets, bytes                                 uint64
	filter, suspend, noLink, queueFull, sendErrors uint64
	invalid, peerErrors, spliced                   uint64
}

func (c *counters) add(t *tally) {
	addNonZero(&c.packets, t.packets)
	addNonZero(&c.bytes, t.bytes)
	addNonZero(&c.filter, t.filter)
	addNonZero(&c.suspend, t.suspend)
	addNonZero(&c.noLink, t.noLink)
	addNonZero(&c.queueFull, t.queueFull)
	addNonZero(&c.sendErrors, t.sendErrors)
	addNonZero(&c.invalid, t.invalid)
	addNonZero(&c.peerErrors, t.peerErrors)
	addNonZero(&c.spliced, t.spliced)
	*t = tally{}
}

func addNonZero(c *atomic.Uint64, v uint64) {
	if v != 0 {
		c.Add(v)
	}
}

func (c *counters) snapshot() DirectionStats {
	s := DirectionStats{
		Packets:          c.packets.Load(),
		Bytes:            c.bytes.Load(),
		DroppedFilter:    c.filter.Load(),
		DroppedSuspend:   c.suspend.Load(),
		DroppedNoLink:    c.noLink.Load(),
		DroppedQueueFull: c.queueFull.Load(),
		DroppedSendError: c.sendErrors.Load(),
		DroppedInvalid:   c.invalid.Load(),
		PeerErrors:       c.peerErrors.Load(),
		Spliced:          c.spliced.Load(),
	}
	s.Dropped = s.DroppedFilter + s.DroppedSuspend + s.DroppedNoLink + s.DroppedQueueFull + s.DroppedSendError + s.DroppedInvalid
	return s
}

// Kinds of unexpected errors, each logged once per direction.
const (
	warnRecv uint32 = 1 << iota
	warnSend
	warnReader
	warnGSO
)

// direction is one way through a bridge. Frames enter it from the reader
// of its input socket (one at a time: a replaced link's reader is gone
// before the next starts), with a Plane from the spliced peer, and on a
// fabric port's node->link direction from the fabric, on the goroutines
// of the ports the frames came in on; they leave through its output
// (socket or node side) or, when delayed, from its delay queue's
// scheduler goroutine.
type direction struct {
	b      *Bridge
	name   string
	toNode bool // output is the node side; otherwise the current link
	chain  atomic.Pointer[Chain]
	ctr    counters
	warned atomic.Uint32
	delay  delayQueue
	bt     *batch // owned by the reader goroutine while it drains

	// mu serialises the processing of this direction's frames, because
	// its Chain has one user at a time. Only the reader of its input
	// socket takes it, except with a Plane, where the spliced peer's
	// goroutines deliver into this direction too, and on a fabric port,
	// where every other port's goroutines do (so ports sending to one
	// port take turns at that port only).
	mu  sync.Mutex
	t   tally  // guarded by mu
	snd sender // guarded by mu
}

func (d *direction) init(b *Bridge, name string, toNode bool) {
	d.b, d.name, d.toNode = b, name, toNode
	d.snd.init(d, &d.t)
	d.delay.init(d)
}

// warn logs an unexpected error the first time a kind of it happens.
func (d *direction) warn(kind uint32, msg string, err error) {
	if d.warned.Or(kind)&kind == 0 {
		d.b.log.Warn(msg, "direction", d.name, "err", err)
	}
}

// reader drains one input socket into its direction.
type reader struct {
	d    *direction
	stop atomic.Bool
	ext  *atomic.Bool // the bridge's closing flag, for the node reader
	recv mmsgFunc     // recvmmsg, or readDevice for a TAP
	fn   func(fd uintptr) bool
}

func newReader(d *direction, ext *atomic.Bool) *reader {
	r := &reader{d: d, ext: ext, recv: recvmmsg}
	r.fn = r.readable // bound once: a method value per call would allocate
	return r
}

// run parks in the netpoller until the socket is readable, drains it, and
// returns when the socket is closed or the reader is stopped. (A closed
// *os.File reports an error of its own, not net.ErrClosed.)
func (r *reader) run(rc syscall.RawConn) {
	if err := rc.Read(r.fn); err != nil && !errors.Is(err, net.ErrClosed) && !r.stopped() {
		r.d.warn(warnReader, "reader stopped", err)
	}
}

func (r *reader) stopped() bool {
	return r.stop.Load() || (r.ext != nil && r.ext.Load())
}

// readable is the netpoll callback: it drains the socket batch by batch
// and returns false (park until readable) only once recvmmsg says EAGAIN
// (the netpoller is edge-triggered), or true to stop for good.
func (r *reader) readable(fd uintptr) bool {
	d := r.d
	d.bt = batchPool.get()
	defer func() {
		batchPool.put(d.bt)
		d.bt = nil
	}()
	for {
		if r.stopped() {
			return true
		}
		n, errno := r.recv(fd, d.bt.recv)
		switch {
		case errno == 0:
		case errno == unix.EAGAIN:
			return false
		case errno == unix.EINTR:
			continue
		case isPeerError(errno):
			d.ctr.peerErrors.Add(1)
			continue
		default:
			d.warn(warnRecv, "recvmmsg failed", errno)
			return false
		}
		// Even after a short batch, read again until EAGAIN: the batch may
		// be short because of an error the kernel keeps for the next call,
		// with datagrams still queued behind it, and parking then would
		// strand them until the next arrival. (Parking on a short batch
		// measured no cheaper either.)
		d.forward(n)
		d.bt.resetRecv(n)
	}
}

// forward processes the first n received frames of the reader's batch.
func (d *direction) forward(n int) {
	bt := d.bt
	for i := range n {
		bt.siov[i].Base = bt.riov[i].Base
		bt.siov[i].SetLen(int(bt.recv[i].Len))
	}
	d.process(bt, n)
}

// route returns where this direction's frames go. Link->node frames go
// to the bridge's node side. Node->link frames go to the link's socket
// (nil when no link is attached) or, when the link is spliced by a Plane,
// to the peer bridge's inbound direction, which then replaces the socket.
func (d *direction) route() (out *sock, peer *direction, node nodeSide) {
	if d.toNode {
		return nil, nil, d.b.node
	}
	l := d.b.link.Load()
	if l == nil {
		return nil, nil, nil
	}
	if p := d.b.splice.Load(); p != nil {
		return &l.sock, &p.toNode, nil
	}
	return &l.sock, nil, nil
}

// process runs frames bt.siov[:n] through suspend, filters and capture,
// and sends what passes with sendmmsg, delivers it to the node side, or
// hands it to the spliced peer.
func (d *direction) process(bt *batch, n int) {
	d.mu.Lock()
	t := &d.t
	out, peer, node := d.route()
	k := 0
	switch {
	case out == nil && node == nil:
		t.noLink += uint64(n)
	case d.b.suspended.Load():
		t.suspend += uint64(n)
	default:
		k = d.filter(bt, n)
	}
	if k > 0 {
		switch {
		case peer != nil:
			t.handOver(bt, k)
		case node != nil:
			node.deliver(&d.snd, bt, k)
		default:
			d.snd.send(out, bt, k)
		}
	}
	d.ctr.add(t)
	d.mu.Unlock()
	if k > 0 && peer != nil {
		peer.process(bt, k)
	}
}

// filter applies the chain to frames bt.siov[:n], queues the delayed ones,
// captures the ones that go now and keeps those in bt.siov[:k].
func (d *direction) filter(bt *batch, n int) (k int) {
	t := &d.t
	chain := d.chain.Load()
	var sink CaptureSink
	var now time.Time
	if c := d.b.capture.Load(); c != nil {
		sink, now = c.sink, time.Now()
	}
	var shared uint64 // bt.shared of the frames kept, at their new places
	for i := range n {
		frame := unsafe.Slice(bt.siov[i].Base, bt.siov[i].Len)
		if chain != nil {
			if bt.shared&(1<<i) != 0 && chain.mutates() {
				frame = bt.own(i) // other ports send this frame too
			}
			v := chain.Apply(frame)
			if v.Drop {
				t.filter++
				continue
			}
			if v.Delay > 0 {
				d.delay.push(frame, v.Delay, t)
				continue
			}
		}
		if sink != nil {
			sink.WritePacket(now, frame)
		}
		bt.siov[k] = bt.siov[i]
		shared |= (bt.shared >> i & 1) << k
		k++
	}
	bt.shared = shared
	return k
}

// handOver counts frames bt.siov[:k] as forwarded to a spliced peer.
func (t *tally) handOver(bt *batch, k int) {
	t.forwarded(bt, k)
	t.spliced += uint64(k)
}

// forwarded counts frames bt.siov[:k] as forwarded other than by a send.
func (t *tally) forwarded(bt *batch, k int) {
	for i := range k {
		t.bytes += bt.siov[i].Len
	}
	t.packets += uint64(k)
}

// sender sends batches with sendmmsg: one per direction (guarded by the
// direction's mu) and one per delay scheduler.
type sender struct {
	d *direction
	t *tally
	// The send in progress, for fn: frames bt.siov[:k] packed into
	// messages bt.send[next:end].
	out       *sock
	bt        *batch
	k         int
	next, end int
	fn        func(fd uintptr) bool
}

func (s *sender) init(d *direction, t *tally) {
	s.d, s.t = d, t
	s.fn = s.writable
}

// send sends frames bt.siov[:k] on out and counts the outcome. A full
// socket drops the rest (UDP semantics) rather than blocking the reader.
func (s *sender) send(out *sock, bt *batch, k int) {
	s.out, s.bt, s.k = out, bt, k
	s.next, s.end = 0, bt.pack(0, k, 0, useGSO && !out.noGSO.Load())
	if err := out.raw.Write(s.fn); err != nil {
		// The socket was closed under us (Detach, Close, replace).
		s.dropRest()
	}
	s.out, s.bt = nil, nil
}

// dropRest counts the unsent messages' frames as dropped.
func (s *sender) dropRest() {
	for i := s.next; i < s.end; i++ {
		s.t.sendErrors += uint64(s.bt.segs[i])
	}
	s.next = s.end
}

// writable is the RawConn.Write callback. It always returns true: the
// bridge never waits for a socket to become writable.
func (s *sender) writable(fd uintptr) bool {
	bt := s.bt
	for s.next < s.end {
		n, errno := s.out.sendmsgs(fd, bt.send[s.next:s.end])
		switch {
		case errno == 0:
			for i := s.next; i < s.next+n; i++ {
				s.t.bytes += uint64(bt.send[i].Len)
				s.t.packets += uint64(bt.segs[i])
			}
			s.next += n
		case errno == unix.EINTR:
		case bt.segs[s.next] > 1 && isGSOError(errno):
			// This route cannot segment: from now on, send frames one by
			// one on this socket. Repack the rest that way.
			s.out.noGSO.Store(true)
			s.d.warn(warnGSO, "UDP GSO unavailable, sending datagrams one by one", errno)
			s.end = bt.pack(bt.first[s.next], s.k, s.next, false)
		case isPeerError(errno):
			// An ICMP error left by an earlier datagram: the peer is not
			// there (yet). This message is lost; carry on with the rest.
			s.t.peerErrors++
			s.t.sendErrors += uint64(bt.segs[s.next])
			s.next++
		case errno == unix.EMSGSIZE:
			// One frame too big for this output (a tag pushed onto the
			// largest datagram, a frame over a host interface's MTU): it
			// alone is lost.
			s.t.sendErrors += uint64(bt.segs[s.next])
			s.next++
		case isFullError(errno):
			s.dropRest()
		default:
			s.d.warn(warnSend, "sendmmsg failed", errno)
			s.dropRest()
		}
	}
	return true
}

// useGSO enables UDP segmentation offload on sends (a variable so that
// benchmarks can compare).
var useGSO = true

// Delay queue bounds. A queue holds at most maxDelayed frames; buffers
// come in two sizes so the common small frame does not pin 64 KiB.
const (
	maxDelayed     = 4096
	smallFrameSize = 2048
)

// delayQueue holds the frames a filter delayed, ordered by due time (and
// arrival for equal due times), and sends each at its due time from a
// scheduler goroutine, so a delay never stalls the reader. The scheduler
// starts with the first delayed frame.
type delayQueue struct {
	d *direction

	mu      sync.Mutex // guards the following
	items   []delayed  // a min-heap on (due, seq)
	seq     uint64
	small   [][]byte // free buffers of smallFrameSize
	large   [][]byte // free buffers of slotSize
	running bool
	closed  bool

	wake chan struct{} // the head changed
	quit chan struct{}
}

type delayed struct {
	due   time.Duration
	seq   uint64
	frame []byte
}

func (q *delayQueue) init(d *direction) {
	q.d = d
	q.wake = make(chan struct{}, 1)
	q.quit = make(chan struct{})
}

// push copies frame into the queue, due after delay. Counts go to t.
func (q *delayQueue) push(frame []byte, delay time.Duration, t *tally) {
	due := q.d.b.now() + delay
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	if q.items == nil {
		q.items = make([]delayed, 0, maxDelayed)
	}
	if len(q.items) == maxDelayed {
		q.mu.Unlock()
		t.queueFull++
		return
	}
	buf := q.bufferLocked(len(frame))
	copy(buf, frame)
	q.seq++
	q.pushLocked(delayed{due: due, seq: q.seq, frame: buf})
	head := q.items[0].seq == q.seq
	if !q.running {
		q.running = true
		q.d.b.schedules.Go(q.run)
	}
	q.mu.Unlock()
	if head {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
}

// bufferLocked returns a buffer of length n from the free lists.
func (q *delayQueue) bufferLocked(n int) []byte {
	free := &q.large
	if n <= smallFrameSize {
		free = &q.small
	}
	if k := len(*free); k > 0 {
		buf := (*free)[k-1]
		(*free)[k-1] = nil
		*free = (*free)[:k-1]
		return buf[:n]
	}
	if n <= smallFrameSize {
		return make([]byte, n, smallFrameSize)
	}
	return make([]byte, n, slotSize)
}

func (q *delayQueue) releaseLocked(buf []byte) {
	if cap(buf) == smallFrameSize {
		q.small = append(q.small, buf[:0])
	} else {
		q.large = append(q.large, buf[:0])
	}
}

func (q *delayQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	close(q.quit)
}

// run is the scheduler: it sends due frames in batches and sleeps until
// the head of the queue is due or changes.
func (q *delayQueue) run() {
	d := q.d
	var t tally
	var snd sender
	snd.init(d, &t)
	bt := newSendBatch()
	ready := make([][]byte, 0, batchSize)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		q.mu.Lock()
		now := d.b.now()
		for len(q.items) > 0 && q.items[0].due <= now && len(ready) < batchSize {
			ready = append(ready, q.popLocked().frame)
		}
		wait := time.Duration(-1)
		if len(ready) == 0 && len(q.items) > 0 {
			wait = q.items[0].due - now
		}
		q.mu.Unlock()

		if len(ready) > 0 {
			q.sendReady(ready, bt, &snd, &t)
			q.mu.Lock()
			for i, buf := range ready {
				q.releaseLocked(buf)
				ready[i] = nil
			}
			q.mu.Unlock()
			ready = ready[:0]
			continue
		}
		if wait >= 0 {
			timer.Reset(wait)
		}
		select {
		case <-q.quit:
			timer.Stop()
			return
		case <-q.wake:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// sendReady captures and sends frames that are due, or hands them to the
// spliced peer.
func (q *delayQueue) sendReady(ready [][]byte, bt *batch, snd *sender, t *tally) {
	d := q.d
	n := len(ready)
	out, peer, node := d.route()
	switch {
	case out == nil && node == nil:
		t.noLink += uint64(n)
	case d.b.suspended.Load():
		t.suspend += uint64(n)
	default:
		var sink CaptureSink
		var now time.Time
		if c := d.b.capture.Load(); c != nil {
			sink, now = c.sink, time.Now()
		}
		for i, frame := range ready {
			if sink != nil {
				sink.WritePacket(now, frame)
			}
			bt.siov[i].Base = firstByte(frame)
			bt.siov[i].SetLen(len(frame))
		}
		switch {
		case peer != nil:
			t.handOver(bt, n)
			d.ctr.add(t)
			peer.process(bt, n)
			return
		case node != nil:
			node.deliver(snd, bt, n)
		default:
			snd.send(out, bt, n)
		}
	}
	d.ctr.add(t)
}

// firstByte is the address of a buffer's first byte, valid even for an
// empty frame (delay buffers always have capacity).
func firstByte(buf []byte) *byte { return &buf[:1][0] }

func (q *delayQueue) lessLocked(i, j int) bool {
	a, b := &q.items[i], &q.items[j]
	return a.due < b.due || (a.due == b.due && a.seq < b.seq)
}

func (q *delayQueue) pushLocked(it delayed) {
	q.items = append(q.items, it)
	for i := len(q.items) - 1; i > 0; {
		p := (i - 1) / 2
		if !q.lessLocked(i, p) {
			break
		}
		q.items[i], q.items[p] = q.items[p], q.items[i]
		i = p
	}
}

func (q *delayQueue) popLocked() delayed {
	top := q.items[0]
	last := len(q.items) - 1
	q.items[0] = q.items[last]
	q.items[last] = delayed{}
	q.items = q.items[:last]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < last && q.lessLocked(l, m) {
			m = l
		}
		if r < last && q.lessLocked(r, m) {
			m = r
		}
		if m == i {
			break
		}
		q.items[i], q.items[m] = q.items[m], q.items[i]
		i = m
	}
	return top
}

// A Plane lets the bridges of one process short-circuit the links between
// them. When bridge A's link is the mirror image of bridge B's (A binds
// what B sends to and sends to what B binds, on loopback), frames leaving
// A's node go through A's filters and capture, then B's inbound filters
// and capture, and straight to B's node, without crossing loopback twice
// through the two link sockets. The sockets stay bound, so unsplicing
// (Detach, Attach elsewhere, Close on either side) falls back to them.
//
// A port of a Switch or a Hub splices with any other bridge, but never
// with another fabric's port: each spliced hop runs on the goroutine of
// the frame's first reader, and a loop of fabrics (two switches linked
// twice) would forward a broadcast around the loop forever on one stack.
// Between fabrics, frames keep going through the link sockets, where a
// storm is bounded like on a wire.
type Plane struct {
	mu     sync.Mutex           // guards the following and every member's pl
	byPort map[uint16][]*Bridge // members by their link's local port
}

// planeEntry is a bridge's membership of its Plane.
type planeEntry struct {
	joined        bool
	local, remote netip.AddrPort
	partner       *Bridge
}

// NewPlane returns an empty Plane.
func NewPlane() *Plane {
	return &Plane{byPort: make(map[uint16][]*Bridge)}
}

// join records b's new link and splices it with a mirror-image member.
// The caller holds b.mu.
func (p *Plane) join(b *Bridge, local, remote netip.AddrPort) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	b.pl = planeEntry{joined: true, local: local, remote: remote}
	p.byPort[local.Port()] = append(p.byPort[local.Port()], b)
	for _, o := range p.byPort[remote.Port()] {
		if o == b || o.pl.partner != nil || (b.onFabric() && o.onFabric()) {
			continue
		}
		if reaches(remote, o.pl.local) && reaches(o.pl.remote, local) {
			b.pl.partner, o.pl.partner = o, b
			b.splice.Store(o)
			o.splice.Store(b)
			return
		}
	}
}

// leave unsplices b and forgets its link. The caller holds b.mu.
func (p *Plane) leave(b *Bridge) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !b.pl.joined {
		return
	}
	if o := b.pl.partner; o != nil {
		o.splice.Store(nil)
		o.pl.partner = nil
		b.splice.Store(nil)
	}
	port := b.pl.local.Port()
	p.byPort[port] = slices.DeleteFunc(p.byPort[port], func(x *Bridge) bool { return x == b })
	if len(p.byPort[port]) == 0 {
		delete(p.byPort, port)
	}
	b.pl = planeEntry{}
}

// reaches reports whether datagrams sent to dst on loopback arrive at a
// socket bound to bound.
func reaches(dst, bound netip.AddrPort) bool {
	return dst.Addr().IsLoopback() && dst.Port() == bound.Port() &&
		(bound.Addr() == dst.Addr() || bound.Addr().IsUnspecified())
}
