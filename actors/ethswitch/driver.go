// Package ethswitch is the ethernet_switch node kind: an Ethernet switch
// with access, 802.1Q trunk and QinQ ports, run inside labd on nio's
// switch fabric (GNS3 2.2 needs Dynamips for it). A switch runs from its
// creation on; every port is a bridge of labd's data plane, so filters,
// suspend and capture work on each, unlike on GNS3's Dynamips switch
// (gns3-gui#3120). Beyond GNS3, it has a telnet console (cli.go).
package ethswitch

import (
	"encoding/json"
	"errors"
	"strconv"
	"sync"

	"labd/actors/kind"
	"labd/nio"
)

// Kind is the switch's node type.
const Kind = "ethernet_switch"

// Driver runs switches.
type Driver struct{}

// Info describes the kind: no console by default, as GNS3.
func (Driver) Info() kind.Info {
	return kind.Info{Kind: Kind, Title: "Ethernet switch", ConsoleTypes: []string{"none", "telnet"}, AutoStart: true, AlwaysOn: true}
}

// Available: a switch needs nothing but labd.
func (Driver) Available() error { return nil }

// Settle applies a new port mapping to the recorded one: a port that has
// a link stays (remove the link first).
func (Driver) Settle(n kind.Node, patch any) (json.RawMessage, error) {
	props := decode(n.Properties)
	p, _ := patch.(*Patch)
	props.Ports = p.apply(props.Ports)
	if props.Ports == nil {
		props.Ports = []PortMapping{}
	}
	if err := errors.Join(check(props.Ports), kind.KeepLinked(props.Ports, n.Links)); err != nil {
		return nil, err
	}
	return json.Marshal(props)
}

// Ports are adapter 0's ports, numbered as ports_mapping has them.
func (Driver) Ports(props json.RawMessage) []kind.Port { return kind.MappingPorts(decode(props).Ports) }

// Prepare has no files to write.
func (Driver) Prepare(*kind.Node, kind.Node, any) error { return nil }

// portConfig is a port's VLAN configuration for the fabric.
func portConfig(p PortMapping) nio.PortConfig {
	c := nio.PortConfig{Mode: nio.PortMode(p.Type), VLAN: p.VLAN}
	if p.EtherType != "" {
		t, _ := strconv.ParseUint(p.EtherType[2:], 16, 16) // checked by Settle
		c.Ethertype = uint16(t)
	}
	return c
}

// Launch builds the switch: one fabric port per mapped port, each wired
// to its link, and the console.
func (Driver) Launch(h kind.Host, n kind.Node) (_ kind.Run, err error) {
	r := &run{h: h, sw: nio.NewSwitch(nio.SwitchConfig{Name: "ethsw-" + n.ID, Logger: h.Logger, Plane: h.Plane})}
	defer func() {
		if err != nil {
			r.Stop(kind.StopKill)
		}
	}()
	if err := r.Update(n); err != nil {
		return nil, err
	}
	if r.cli, err = serveCLI(r); err != nil {
		return nil, kind.Conflict("could not start the switch's console: %v", err)
	}
	return r, nil
}

// Adopt rebuilds the switch after labd restarted: a switch lives inside
// labd, so its history is all there is of it; its links are bound again
// on the same UDP ports.
func (d Driver) Adopt(h kind.Host, n kind.Node, _ kind.Record) (kind.Run, error) {
	return d.Launch(h, n)
}

// run is a running switch.
type run struct {
	kind.InProcess
	h    kind.Host
	sw   *nio.Switch
	cli  *cli
	ends kind.FabricPorts

	mu       sync.Mutex // guards the following, which the console reads
	hostname string
	mapping  []PortMapping
}

func (r *run) End(p kind.Port) kind.End { return r.ends.End(p) }

// Console is the switch's own command line, which the node's console
// proxy serves when its console type is telnet.
func (r *run) Console() string { return r.cli.Addr() }

// Update applies the node's name and port mapping at once: new ports
// opened and wired, removed ones closed, the others reconfigured while
// frames flow.
func (r *run) Update(n kind.Node) error {
	mapping := decode(n.Properties).Ports
	var want []int
	for _, p := range mapping {
		want = append(want, p.PortNumber)
	}
	config := func(number int) nio.PortConfig {
		p, _ := kind.Mapped(mapping, number)
		return portConfig(p)
	}
	err := r.ends.Sync(r.h, want,
		func(number int) (*nio.Bridge, error) { return r.sw.OpenPort(number, config(number)) },
		func(number int) error { return r.sw.Reconfigure(number, config(number)) })
	r.mu.Lock()
	r.hostname, r.mapping = n.Name, mapping
	r.mu.Unlock()
	return err
}

// Stop closes the console and the fabric.
func (r *run) Stop(kind.StopMode) int {
	var errs []error
	if r.cli != nil {
		errs = append(errs, r.cli.Close())
	}
	errs = append(errs, r.sw.Close())
	if err := errors.Join(errs...); err != nil {
		r.h.Logger.Warn("closing the switch", "err", err)
	}
	return 0
}

// Release is a stop: nothing of a switch outlives labd.
func (r *run) Release() { r.Stop(kind.StopClosing) }

// The console's view of the switch (fabricView).

func (r *run) name() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.hostname
}

func (r *run) clearMACs() { r.sw.ClearMACTable() }

// portNameLocked is a port's name in the mapping; the caller holds r.mu.
func (r *run) portNameLocked(number int) string {
	if p, ok := kind.Mapped(r.mapping, number); ok {
		return p.Name
	}
	return "port " + strconv.Itoa(number)
}

func (r *run) macs() []macRow {
	entries := r.sw.MACTable()
	r.mu.Lock()
	defer r.mu.Unlock()
	rows := make([]macRow, len(entries))
	for i, e := range entries {
		rows[i] = macRow{VLAN: e.VLAN, MAC: e.MAC, Port: r.portNameLocked(e.Port), Age: e.Age}
	}
	return rows
}

func (r *run) ports() []portRow {
	stats := map[int]nio.PortStats{}
	for _, st := range r.sw.PortStats() {
		stats[st.Number] = st
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	rows := make([]portRow, len(r.mapping))
	for i, p := range r.mapping {
		st := stats[p.PortNumber]
		rows[i] = portRow{Name: p.Name, Number: p.PortNumber, Type: p.Type, VLAN: p.VLAN, EtherType: p.EtherType,
			Linked: st.Linked, RxPackets: st.RxPackets, RxBytes: st.RxBytes, TxPackets: st.TxPackets, TxBytes: st.TxBytes,
			Drops: st.RxDropped + st.TxDropped}
	}
	return rows
}
