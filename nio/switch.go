package nio

import (
	"bytes"
	"cmp"
	"fmt"
	"log/slog"
	"slices"
	"time"
)

// DefaultAging is how long a Switch remembers a MAC address no frame came
// from, as on most switches.
const DefaultAging = 300 * time.Second

// A Switch is an in-process Ethernet switch with access, 802.1Q trunk and
// QinQ tunnel ports (the VLAN rules are in vlan.go): the data plane of
// GNS3's ethernet_switch node, which GNS3 2.2 runs in Dynamips.
//
// It learns the source of every frame per (MAC, VLAN), with aging and
// moves; a frame to a known unicast address goes to the port it was
// learned on, any other frame (unknown unicast, broadcast, multicast) to
// every other port carrying its VLAN, and never back out of the port it
// came in on. Each port is a Bridge (OpenPort): its link is attached,
// filtered, suspended and captured like any bridge's, and a capture sees
// the frames as they are on that link's wire (tagged on a trunk).
//
// Its methods are safe for concurrent use, also while frames flow.
type Switch struct {
	fab  fabric
	macs *macTable
}

// SwitchConfig configures a Switch.
type SwitchConfig struct {
	// Name is used in logs and errors, and names the ports' bridges
	// "<name>/<port number>".
	Name string
	// Logger receives the ports' rare warnings; nil discards them.
	Logger *slog.Logger
	// Aging is how long a MAC address is remembered after the last frame
	// from it; 0 (or less) is DefaultAging.
	Aging time.Duration
	// Plane, if not nil, splices a port's link with a bridge of the same
	// Plane (a node's port, not another fabric's) whose link is its
	// mirror image on loopback.
	Plane *Plane
}

// NewSwitch returns a switch without ports.
func NewSwitch(cfg SwitchConfig) *Switch {
	if cfg.Aging <= 0 {
		cfg.Aging = DefaultAging
	}
	sw := &Switch{macs: newMACTable(cfg.Aging)}
	sw.fab.init("switch", cfg.Name, cfg.Logger, cfg.Plane, sw)
	return sw
}

// OpenPort adds port number (0 or more) with the VLAN configuration cfg
// and returns its bridge, without a link. Closing the bridge removes the
// port. It fails if cfg is invalid (ErrBadPortConfig), the number is
// taken (ErrPortExists), or the switch is closed (net.ErrClosed).
func (sw *Switch) OpenPort(number int, cfg PortConfig) (*Bridge, error) {
	pc, err := cfg.compile()
	if err != nil {
		return nil, fmt.Errorf("switch %s: port %d: %w", sw.fab.name, number, err)
	}
	return sw.fab.open(number, &pc)
}

// Reconfigure changes the VLAN configuration of port number. It applies
// from the next batch of frames on, and forgets the addresses learned on
// the port; the same configuration again changes nothing. It fails if cfg
// is invalid (ErrBadPortConfig) or the port is not open (ErrNoPort).
func (sw *Switch) Reconfigure(number int, cfg PortConfig) error {
	pc, err := cfg.compile()
	if err != nil {
		return fmt.Errorf("switch %s: port %d: %w", sw.fab.name, number, err)
	}
	p := sw.fab.port(number)
	if p == nil {
		return fmt.Errorf("switch %s: port %d: %w", sw.fab.name, number, ErrNoPort)
	}
	if old := p.cfg.Swap(&pc); *old != pc {
		sw.macs.forget(p)
	}
	return nil
}

// MACTable lists the addresses the switch knows, by VLAN and MAC.
func (sw *Switch) MACTable() []MACEntry {
	out := sw.macs.entries()
	slices.SortFunc(out, func(a, b MACEntry) int {
		return cmp.Or(cmp.Compare(a.VLAN, b.VLAN), bytes.Compare(a.MAC, b.MAC))
	})
	return out
}

// ClearMACTable forgets every address; frames are flooded until the
// switch learns them again.
func (sw *Switch) ClearMACTable() { sw.macs.clear() }

// PortStats returns the counters of every open port, by number.
func (sw *Switch) PortStats() []PortStats { return sw.fab.stats() }

// Close closes every port's bridge and refuses new ports. It returns once
// every goroutine of every port has returned.
func (sw *Switch) Close() error { return sw.fab.close() }

func (sw *Switch) forget(p *fabricPort) { sw.macs.forget(p) }

// verdict is what the switch does with one frame: send it to one port
// (to), to every other port of its VLAN (flood), or nowhere (neither).
type verdict struct {
	cls   frameClass
	to    *fabricPort
	flood bool
}

// decide classifies a frame that came in on port in, configured as cfg,
// learns its source and looks up its destination in macs at time now. ok
// is false for a frame the switch refuses as malformed.
func decide(frame []byte, in *fabricPort, cfg portConfig, macs *macTable, now time.Duration) (v verdict, ok bool) {
	c, ok := classify(frame, cfg)
	if !ok {
		return verdict{}, false
	}
	v.cls = c
	// A group address is no station's source, and a port being closed
	// teaches nothing.
	if !isMulticast(frame[macLen:]) && !in.gone.Load() {
		macs.learn(macKeyAt(frame, macLen, c.vlan), in, now)
	}
	if isMulticast(frame) {
		v.flood = true
		return v, true
	}
	switch to := macs.lookup(macKeyAt(frame, 0, c.vlan), now); {
	case to == nil || to.gone.Load():
		v.flood = true
	case to == in:
		// The destination is on the port the frame came from: nothing to do.
	default:
		v.to = to
	}
	return v, true
}

// forward decides for each frame, then sends each egress port its frames
// in one batch: the frames that go out as they are by reference, those
// that gain or lose a tag rewritten into the egress batch's slots.
func (sw *Switch) forward(in *fabricPort, bt *batch, n int, t *tally) {
	cfg := *in.cfg.Load()
	now := sw.macs.now()
	var verdicts [batchSize]verdict
	// uniform says every frame is valid and has the verdict of the first
	// but for its addresses, so one egress decision holds for all.
	uniform := true
	for i := range n {
		frame := bt.frame(i)
		v, ok := decide(frame, in, cfg, sw.macs, now)
		if !ok {
			t.invalid++
			uniform = false
			continue
		}
		t.packets++
		t.bytes += uint64(len(frame))
		verdicts[i] = v
		if i > 0 && v != verdicts[0] {
			uniform = false
		}
	}
	if q := verdicts[0].to; uniform && q != nil && q.linked() {
		// The steady state of a unicast flow: the whole batch goes to one
		// port, and as it is (access to access, trunk to trunk), so that
		// port can send the very batch read from the link.
		if qc := *q.cfg.Load(); qc.carries(verdicts[0].cls.vlan) {
			if _, rw := egress(qc, verdicts[0].cls); !rw {
				q.send(bt, n)
				return
			}
		}
	}
	ports := *sw.fab.ports.Load()
	ebt := batchPool.get()
	defer batchPool.put(ebt)
	shared := len(ports) > 2 // a flooded frame may go to several ports
	for _, q := range ports {
		if q == in || !q.linked() {
			continue
		}
		qc := *q.cfg.Load()
		m := 0
		for i := range n {
			v := &verdicts[i]
			if (v.to != q && !v.flood) || !qc.carries(v.cls.vlan) {
				continue
			}
			tag, rw := egress(qc, v.cls)
			if !rw {
				ebt.siov[m] = bt.siov[i]
				if v.flood && shared {
					ebt.shared |= 1 << m
				}
				m++
				continue
			}
			slot := ebt.slots[m*slotSize:][:slotSize]
			size := rewrite(slot, bt.frame(i), int(v.cls.strip), tag)
			if size < 0 {
				// A tag pushed onto a frame of 65532 bytes or more: it
				// cannot be sent on this link, like one over its MTU.
				q.b.toLink.ctr.sendErrors.Add(1)
				continue
			}
			ebt.siov[m].Base = &slot[0]
			ebt.siov[m].SetLen(size)
			m++
		}
		if m > 0 {
			q.send(ebt, m)
		}
	}
}
