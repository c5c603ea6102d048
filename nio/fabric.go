package nio

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
)

// A fabric is what a Switch and a Hub have in common: numbered ports, each
// a Bridge whose node side is the fabric (a fabricPort), and the way a
// frame crosses from the link of one port to the links of others.
//
// A frame is forwarded on the goroutine that read it (the ingress port's
// link reader, or its delay scheduler): after the ingress port's filters
// and capture, that goroutine decides where the frame goes and runs each
// egress port's node->link direction itself (its filters, its capture,
// sendmmsg on its link), so a frame crosses the fabric without a channel
// or a goroutine switch, in the batch it was read in. Ingress ports
// sending to one egress port take turns on that direction's mutex, which
// serialises that port only; the rest of the path takes no lock.
//
// With a Plane, a fabric port's link is spliced with a bridge at its
// other end in the same process (a node's port), so a frame from a node
// through a switch to another node crosses no link socket at all; two
// fabrics' ports never splice with each other (see Plane).
type fabric struct {
	kind  string // "switch" or "hub", for names and errors
	name  string
	log   *slog.Logger
	fwd   forwarder
	plane *Plane // the Plane the ports' links join, or nil

	// ports are the open ports by number, copied on write and read
	// without a lock by the forwarding path.
	ports atomic.Pointer[[]*fabricPort]

	mu     sync.Mutex // guards the following
	byNum  map[int]*fabricPort
	closed bool
}

// forwarder is what one kind of fabric does with frames.
type forwarder interface {
	// forward sends frames bt.siov[:n], which came in on port in, through
	// the node->link directions of the ports they go to, and counts them
	// in t: forwarded, or refused as invalid. It must not retain bt.
	forward(in *fabricPort, bt *batch, n int, t *tally)
	// forget drops what the fabric learned about port p: p closed, or its
	// link or its configuration changed.
	forget(p *fabricPort)
}

// ErrPortExists is matched by the error of opening a fabric port whose
// number is taken.
var ErrPortExists = errors.New("nio: port already open")

// ErrNoPort is matched by the error of configuring a port that is not open.
var ErrNoPort = errors.New("nio: no such port")

func (f *fabric) init(kind, name string, log *slog.Logger, plane *Plane, fwd forwarder) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f.kind, f.name, f.log, f.plane, f.fwd = kind, name, log, plane, fwd
	f.byNum = make(map[int]*fabricPort)
	f.ports.Store(&[]*fabricPort{})
}

// open adds port number, with cfg as its VLANs on a switch, and returns
// its bridge.
func (f *fabric) open(number int, cfg *portConfig) (*Bridge, error) {
	if number < 0 {
		return nil, fmt.Errorf("%s %s: port %d: port numbers start at 0", f.kind, f.name, number)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, fmt.Errorf("%s %s: port %d: %w", f.kind, f.name, number, net.ErrClosed)
	}
	if _, ok := f.byNum[number]; ok {
		return nil, fmt.Errorf("%s %s: port %d: %w", f.kind, f.name, number, ErrPortExists)
	}
	p := &fabricPort{fab: f, number: number}
	if cfg != nil {
		p.cfg.Store(cfg)
	}
	p.b = newBridge(fmt.Sprintf("%s/%d", f.name, number), f.log, f.plane, p)
	f.byNum[number] = p
	f.publishLocked()
	return p.b, nil
}

// port returns the open port number, or nil.
func (f *fabric) port(number int) *fabricPort {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.byNum[number]
}

// publishLocked gives the forwarding path a new list of the ports.
func (f *fabric) publishLocked() {
	ports := make([]*fabricPort, 0, len(f.byNum))
	for _, p := range f.byNum {
		ports = append(ports, p)
	}
	slices.SortFunc(ports, func(a, b *fabricPort) int { return a.number - b.number })
	f.ports.Store(&ports)
}

// remove takes p out of the fabric; its bridge is closing.
func (f *fabric) remove(p *fabricPort) {
	// Its link reader and delay schedulers stop after this: frames they
	// still forward must not teach the switch addresses on a port that
	// is gone.
	p.gone.Store(true)
	f.mu.Lock()
	if f.byNum[p.number] == p {
		delete(f.byNum, p.number)
		f.publishLocked()
	}
	f.mu.Unlock()
	f.fwd.forget(p)
}

// close closes every port's bridge and refuses new ports.
func (f *fabric) close() error {
	f.mu.Lock()
	f.closed = true
	ports := *f.ports.Load()
	f.mu.Unlock()
	// Without the lock: each Close removes its port.
	var errs []error
	for _, p := range ports {
		errs = append(errs, p.b.Close())
	}
	return errors.Join(errs...)
}

// PortStats counts one switch or hub port's traffic, for `show
// interfaces`: Rx is what came from the port's link into the fabric, Tx
// what the fabric sent out on it.
type PortStats struct {
	Number int  // the port number
	Linked bool // the port has a link attached
	// Config is a switch port's VLAN configuration (zero on a hub).
	Config PortConfig

	RxPackets, RxBytes uint64 // frames from the link that entered the fabric
	// RxDropped counts frames from the link dropped by the link's
	// filters, while suspended, or refused by the switch as malformed.
	RxDropped uint64

	TxPackets, TxBytes uint64 // frames the fabric sent on the link
	// TxDropped counts frames for the link dropped by the link's filters,
	// while suspended, or because the link's socket was full or failed.
	TxDropped uint64
}

// stats returns the counters of every open port, by number.
func (f *fabric) stats() []PortStats {
	ports := *f.ports.Load()
	out := make([]PortStats, 0, len(ports))
	for _, p := range ports {
		st := p.b.Stats()
		ps := PortStats{
			Number:    p.number,
			Linked:    p.linked(),
			RxPackets: st.LinkToNode.Packets,
			RxBytes:   st.LinkToNode.Bytes,
			RxDropped: st.LinkToNode.Dropped,
			TxPackets: st.NodeToLink.Packets,
			TxBytes:   st.NodeToLink.Bytes,
			TxDropped: st.NodeToLink.Dropped,
		}
		if c := p.cfg.Load(); c != nil {
			ps.Config = c.config()
		}
		out = append(out, ps)
	}
	return out
}

// fabricPort is one port of a fabric, and the node side of its bridge.
type fabricPort struct {
	fab    *fabric
	number int
	b      *Bridge
	cfg    atomic.Pointer[portConfig] // a switch port's VLANs; nil on a hub
	gone   atomic.Bool                // removed from the fabric: learn nothing on it, send nothing to it
}

func (p *fabricPort) deliver(snd *sender, bt *batch, k int) { p.fab.fwd.forward(p, bt, k, snd.t) }
func (p *fabricPort) linkChanged()                          { p.fab.fwd.forget(p) }

func (p *fabricPort) close() error {
	p.fab.remove(p)
	return nil
}

// onFabric reports whether b is a port of a Switch or a Hub.
func (b *Bridge) onFabric() bool {
	_, ok := b.node.(*fabricPort)
	return ok
}

// linked reports whether the port has a link to send on.
func (p *fabricPort) linked() bool { return p.b.link.Load() != nil }

// send runs frames ebt.siov[:m] through p's node->link direction, onto
// its link, and makes ebt ready for the next port.
func (p *fabricPort) send(ebt *batch, m int) {
	p.b.toLink.process(ebt, m)
	ebt.shared = 0
}
