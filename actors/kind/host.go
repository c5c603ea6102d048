package kind

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"

	"labd/nio"
)

// End is a port's link end in labd's data plane: a nio.Bridge, or a port
// of an in-process fabric.
type End interface {
	// Attach binds the link's local UDP port and sends to its remote end.
	Attach(local, remote netip.AddrPort) error
	// Detach drops the link; frames then go nowhere.
	Detach()
	SetFilters(f *nio.Filters)
	SetSuspended(on bool)
	SetCapture(c nio.CaptureSink)
}

// Host is what the node actor lends a driver for one launch or adoption.
type Host struct {
	// Addr is the address consoles and link ports are bound to.
	Addr string
	// User is the account node processes run as; nil: labd's own.
	User *User
	// UDP is the pool of UDP tunnel ports.
	UDP *nio.Pool
	// Plane joins the bridges of links between nodes of this daemon.
	Plane *nio.Plane
	// Logger is the node's logger.
	Logger *slog.Logger
	// Wire attaches the recorded link of a port, and its capture, to the
	// port's end. A driver calls it for every end it opens, before any
	// frame can flow through it (before the node's process starts).
	Wire func(p Port, e End) error
}

// AllocateTunnels takes two UDP ports of the pool for each port.
func (h Host) AllocateTunnels(ports []Port) ([]Tunnel, error) {
	var ts []Tunnel
	for _, p := range ports {
		t := Tunnel{Port: p}
		var err error
		if t.NodePort, err = h.UDP.Allocate(); err != nil {
			h.ReleaseTunnels(ts)
			return nil, &Error{Class: ErrConflict, Msg: err.Error(), Err: err}
		}
		if t.BridgePort, err = h.UDP.Allocate(); err != nil {
			h.UDP.Release(t.NodePort)
			h.ReleaseTunnels(ts)
			return nil, &Error{Class: ErrConflict, Msg: err.Error(), Err: err}
		}
		ts = append(ts, t)
	}
	return ts, nil
}

// ReleaseTunnels returns the UDP ports of tunnels to the pool.
func (h Host) ReleaseTunnels(ts []Tunnel) {
	for _, t := range ts {
		for _, p := range t.Ports() {
			h.UDP.Release(p)
		}
	}
}

// Bridges are the bridges of a run's tunnels, by port.
type Bridges map[Port]*nio.Bridge

// OpenBridges opens the bridge of every tunnel, named after the kind and
// the node, and wires each. On failure none is left open.
func (h Host) OpenBridges(title, nodeID string, ts []Tunnel) (Bridges, error) {
	loopback := netip.MustParseAddr("127.0.0.1")
	bs := Bridges{}
	for _, t := range ts {
		br, err := nio.OpenBridge(nio.BridgeConfig{
			Name:   fmt.Sprintf("%s-%s-%d/%d", strings.ToUpper(strings.ReplaceAll(title, " ", "_")), nodeID, t.Adapter, t.Port.Port),
			Tunnel: netip.AddrPortFrom(loopback, uint16(t.BridgePort)),
			Node:   netip.AddrPortFrom(loopback, uint16(t.NodePort)),
			Plane:  h.Plane,
			Logger: h.Logger,
		})
		if err != nil {
			bs.Close()
			return nil, fmt.Errorf("kind: open bridge: %w", err)
		}
		bs[t.Port] = br
		if err := h.Wire(t.Port, br); err != nil {
			bs.Close()
			return nil, err
		}
	}
	return bs, nil
}

// End returns the bridge of port p as an End, nil when it has none.
func (bs Bridges) End(p Port) End {
	if br := bs[p]; br != nil {
		return br
	}
	return nil
}

// Close closes every bridge.
func (bs Bridges) Close() {
	for p, br := range bs {
		_ = br.Close()
		delete(bs, p)
	}
}

// FreeTCPPort returns a TCP port of 127.0.0.1 free right now, for a
// process's internal console.
func FreeTCPPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
