// Package cloud is the cloud node kind: each port joins a lab link to the
// host's network, through a TAP device ("tap", created when it does not
// exist), a host interface ("ethernet", a raw AF_PACKET socket) or a UDP
// tunnel to any peer ("udp"). GNS3 2.2 runs ubridge for it; labd's data
// plane does it itself, with the link's filters, suspend and capture. A
// port's host side is opened when a link is attached to it, and closed
// when the link goes, as GNS3 does; a cloud runs from its creation on.
package cloud

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"os"
	"path"
	"slices"
	"strconv"
	"sync"
	"time"

	"labd/actors/kind"
	"labd/host"
	"labd/nio"
)

// Kind is the cloud's node type.
const Kind = "cloud"

// Driver runs clouds.
type Driver struct {
	// Interfaces are the host interfaces (names, or path.Match patterns)
	// a cloud may use: an ethernet port's interface, or an existing TAP
	// device. labd runs as root, so a host interface is a privilege the
	// operator grants (--cloud-interface), as GNS3's allowed_interfaces;
	// none by default. A TAP device labd creates needs no grant.
	Interfaces []string
}

// allowed reports whether the operator lets clouds use host interface
// name.
func (d Driver) allowed(name string) bool {
	for _, pat := range d.Interfaces {
		if ok, _ := path.Match(pat, name); ok {
			return true
		}
	}
	return false
}

// Info describes the kind: a cloud has no console of its own (its remote
// console only names one elsewhere).
func (Driver) Info() kind.Info { return kind.Info{Kind: Kind, Title: "Cloud", AutoStart: true} }

// Available: a cloud needs nothing but labd (its ports need root, which
// their links report).
func (Driver) Available() error { return nil }

// Settle applies a change to the recorded properties; a create without a
// port mapping gets one ethernet port per host interface that is not
// special, as in GNS3. A port that has a link stays.
func (Driver) Settle(n kind.Node, patch any) (json.RawMessage, error) {
	props := Properties{RemoteConsolePort: 23, RemoteConsoleType: "none", RemoteConsoleHTTPPath: "/"}
	if n.Properties != nil {
		if err := json.Unmarshal(n.Properties, &props); err != nil {
			return nil, kind.Conflict("the recorded cloud properties do not decode: %v", err)
		}
	}
	p, _ := patch.(*Patch)
	if p == nil {
		p = &Patch{}
	}
	switch {
	case p.Ports != nil:
		props.Ports = *p.Ports
	case n.Properties == nil:
		props.Ports = hostPorts()
	}
	if props.Ports == nil {
		props.Ports = []PortMapping{}
	}
	set := func(dst *string, src *string) {
		if src != nil {
			*dst = *src
		}
	}
	set(&props.RemoteConsoleHost, p.RemoteConsoleHost)
	set(&props.RemoteConsoleType, p.RemoteConsoleType)
	set(&props.RemoteConsoleHTTPPath, p.RemoteConsoleHTTPPath)
	if p.RemoteConsolePort != nil {
		props.RemoteConsolePort = *p.RemoteConsolePort
	}
	if err := check(props.Ports); err != nil {
		return nil, err
	}
	switch {
	case !slices.Contains(RemoteConsoleTypes, props.RemoteConsoleType):
		return nil, kind.Invalid("remote_console_type %q is not one of telnet, vnc, spice, http, https, none", props.RemoteConsoleType)
	case props.RemoteConsolePort < 1 || props.RemoteConsolePort > 65535:
		return nil, kind.Invalid("remote_console_port %d is not between 1 and 65535", props.RemoteConsolePort)
	}
	if err := kind.KeepLinked(props.Ports, n.Links); err != nil {
		return nil, err
	}
	for _, l := range n.Links {
		// A linked port's host side is open: it stays as it is.
		if now, _ := kind.Mapped(props.Ports, l.Port.Port); now != decodePorts(n.Properties)[l.Port.Port] {
			return nil, kind.Conflict("port %d has a link: remove it before changing the port", l.Port.Port)
		}
	}
	return json.Marshal(props)
}

// hostPorts is GNS3's default port mapping: an ethernet port for each
// host interface that is not special.
func hostPorts() []PortMapping {
	ifs, _ := host.Interfaces() // none known: no ports
	var out []PortMapping
	for _, i := range ifs {
		if !i.Special {
			out = append(out, PortMapping{Name: i.Name, PortNumber: len(out), Type: i.Type, Interface: i.Name})
		}
	}
	return out
}

func decodePorts(raw json.RawMessage) map[int]PortMapping {
	var props Properties
	_ = json.Unmarshal(raw, &props)
	out := map[int]PortMapping{}
	for _, p := range props.Ports {
		out[p.PortNumber] = p
	}
	return out
}

// Ports are adapter 0's ports, numbered as ports_mapping has them.
func (Driver) Ports(props json.RawMessage) []kind.Port {
	var out []kind.Port
	for number := range decodePorts(props) {
		out = append(out, kind.Port{Port: number})
	}
	slices.SortFunc(out, func(a, b kind.Port) int { return a.Port - b.Port })
	return out
}

// Prepare has no files to write.
func (Driver) Prepare(*kind.Node, kind.Node, any) error { return nil }

// Launch makes an end for every port; each opens its host side when its
// link is attached.
func (d Driver) Launch(h kind.Host, n kind.Node) (kind.Run, error) {
	r := &run{d: d, h: h, id: n.ID, dir: n.Dir, ports: map[int]*port{}}
	for _, m := range decodePorts(n.Properties) {
		p := &port{r: r, m: m}
		r.ports[m.PortNumber] = p
		if err := h.Wire(kind.Port{Port: m.PortNumber}, p); err != nil {
			r.Stop(kind.StopKill)
			return nil, err
		}
	}
	return r, nil
}

// Adopt rebuilds the cloud after labd restarted: its links bound again on
// the same UDP ports, its TAP devices (persistent) opened again.
func (d Driver) Adopt(h kind.Host, n kind.Node, _ kind.Record) (kind.Run, error) {
	return d.Launch(h, n)
}

// run is a running cloud.
type run struct {
	kind.InProcess
	d     Driver
	h     kind.Host
	id    string
	dir   string
	ports map[int]*port // fixed at launch: a port with a link does not change
	mu    sync.Mutex    // serialises the TAP record
}

func (r *run) End(p kind.Port) kind.End {
	if q := r.ports[p.Port]; q != nil && p.Adapter == 0 {
		return q
	}
	return nil
}

// Update changes nothing live: ports with a link do not change (Settle),
// and the others are taken at the next start.
func (r *run) Update(kind.Node) error { return nil }

// Stop closes every port's host side; TAP devices labd created go.
func (r *run) Stop(kind.StopMode) int {
	for _, p := range r.ports {
		p.Detach()
	}
	return 0
}

// Release closes the ports' host sides and keeps the TAP devices, for the
// next labd.
func (r *run) Release() {
	for _, p := range r.ports {
		p.close(false)
	}
}

// tapRecord is the file, in the node directory, naming the TAP devices
// labd created for the cloud: they are persistent, so that a labd crash
// leaves them for the next labd, which must know they are its to remove.
const tapRecord = "created-taps"

// recordTAP adds (or removes) a TAP device in the record.
func (r *run) recordTAP(name string, created bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return err
	}
	root, err := os.OpenRoot(r.dir)
	if err != nil {
		return err
	}
	defer root.Close()
	names := readTAPs(root)
	names = slices.DeleteFunc(names, func(n string) bool { return n == name })
	if created {
		names = append(names, name)
	}
	var b bytes.Buffer
	for _, n := range names {
		b.WriteString(n + "\n")
	}
	return root.WriteFile(tapRecord, b.Bytes(), 0o644)
}

// createdTAP reports whether labd created the TAP device name.
func (r *run) createdTAP(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	root, err := os.OpenRoot(r.dir)
	if err != nil {
		return false
	}
	defer root.Close()
	return slices.Contains(readTAPs(root), name)
}

func readTAPs(root *os.Root) []string {
	f, err := root.Open(tapRecord)
	if err != nil {
		return nil
	}
	defer f.Close()
	var names []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if n := sc.Text(); nio.CheckInterfaceName(n) == nil {
			names = append(names, n)
		}
	}
	return names
}

// port is a cloud port's link end. Its host side (a bridge to the TAP,
// the interface or the UDP peer) exists while a link is attached.
type port struct {
	r *run
	m PortMapping

	mu        sync.Mutex // guards the following
	br        *nio.Bridge
	lport     int // a udp port's local port, taken from the pool
	filters   *nio.Filters
	suspended bool
	capture   nio.CaptureSink
}

// Attach opens the port's host side, if need be, and attaches the link.
func (p *port) Attach(local, remote netip.AddrPort) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.br == nil {
		if err := p.openLocked(); err != nil {
			return err
		}
		p.br.SetFilters(p.filters)
		p.br.SetSuspended(p.suspended)
		if p.capture != nil {
			p.br.SetCapture(p.capture)
		}
	}
	return p.br.Attach(local, remote)
}

// openLocked opens the host side.
func (p *port) openLocked() error {
	name := p.r.id + "-" + strconv.Itoa(p.m.PortNumber) // GNS3's bridge name
	cfg := nio.HostConfig{Name: name, Interface: p.m.Interface, Logger: p.r.h.Logger}
	switch p.m.Type {
	case TAP:
		// An existing TAP may be another VM's: only one labd made, or
		// one the operator grants.
		if nio.LinkExists(p.m.Interface) && !p.r.createdTAP(p.m.Interface) && !p.r.d.allowed(p.m.Interface) {
			return forbidden(p.m.Interface)
		}
		br, created, err := nio.OpenTAP(cfg)
		if err != nil {
			return kind.Conflict("could not open TAP device %s: %v", p.m.Interface, err)
		}
		if created {
			if err := p.r.recordTAP(p.m.Interface, true); err != nil {
				_ = br.Close()
				_ = nio.DeleteTAP(p.m.Interface)
				return kind.Conflict("could not record the TAP device %s: %v", p.m.Interface, err)
			}
		}
		p.br = br
	case Ethernet:
		if !p.r.d.allowed(p.m.Interface) {
			return forbidden(p.m.Interface)
		}
		br, err := nio.OpenEthernet(cfg)
		switch {
		case errors.Is(err, nio.ErrNoInterface):
			return kind.Conflict("Interface '%s' could not be found on this system", p.m.Interface)
		case err != nil:
			return kind.Conflict("could not open interface %s: %v", p.m.Interface, err)
		}
		p.br = br
	case UDP:
		return p.openUDPLocked(name)
	}
	return nil
}

// forbidden refuses a host interface the operator did not grant.
func forbidden(name string) error {
	return kind.Forbidden("the host interface %s is not open to clouds on this compute: its operator grants interfaces with labd serve --cloud-interface", name)
}

// openUDPLocked binds the port's lport and connects it to rhost:rport:
// on loopback when the peer is there, on every address otherwise (the
// socket takes datagrams from its peer only).
func (p *port) openUDPLocked(name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip4", p.m.RHost)
	if err != nil || len(ips) == 0 {
		return kind.Conflict("Could not create an UDP connection to %s:%d: cannot resolve %s", p.m.RHost, p.m.RPort, p.m.RHost)
	}
	peer := netip.AddrPortFrom(ips[0].Unmap(), uint16(p.m.RPort))
	bind := netip.IPv4Unspecified()
	if peer.Addr().IsLoopback() {
		bind = netip.MustParseAddr("127.0.0.1")
	}
	pool := p.r.h.UDP
	if pool.Range().Contains(p.m.LPort) {
		// Held, so that the pool never hands it to another link.
		if err := pool.Take(p.m.LPort); err != nil {
			return kind.Conflict("UDP port %d is already in use: %v", p.m.LPort, err)
		}
		p.lport = p.m.LPort
	}
	br, err := nio.OpenBridge(nio.BridgeConfig{Name: name, Tunnel: netip.AddrPortFrom(bind, uint16(p.m.LPort)), Node: peer, Logger: p.r.h.Logger})
	if err != nil {
		p.releaseLocked()
		return kind.Conflict("could not bind UDP port %d: %v", p.m.LPort, err)
	}
	p.br = br
	return nil
}

func (p *port) releaseLocked() {
	if p.lport != 0 {
		p.r.h.UDP.Release(p.lport)
		p.lport = 0
	}
}

// Detach drops the link and closes the host side; a TAP device labd
// created is removed.
func (p *port) Detach() { p.close(true) }

func (p *port) close(removeTAP bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.br == nil {
		return
	}
	_ = p.br.Close()
	p.br = nil
	p.releaseLocked()
	if removeTAP && p.m.Type == TAP && p.r.createdTAP(p.m.Interface) {
		if err := nio.DeleteTAP(p.m.Interface); err != nil {
			p.r.h.Logger.Warn("could not remove a TAP device labd created", "tap", p.m.Interface, "err", err)
			return
		}
		if err := p.r.recordTAP(p.m.Interface, false); err != nil {
			p.r.h.Logger.Warn("could not update the record of created TAP devices", "err", err)
		}
	}
}

func (p *port) SetFilters(f *nio.Filters) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.filters = f
	if p.br != nil {
		p.br.SetFilters(f)
	}
}

func (p *port) SetSuspended(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.suspended = on
	if p.br != nil {
		p.br.SetSuspended(on)
	}
}

func (p *port) SetCapture(c nio.CaptureSink) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.capture = c
	if p.br != nil {
		p.br.SetCapture(c)
	}
}
