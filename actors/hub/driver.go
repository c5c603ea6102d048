// Package hub is the ethernet_hub node kind: every frame to every other
// port, run inside labd on nio's hub fabric (GNS3 2.2 needs Dynamips for
// it). A hub runs from its creation on, and every port takes filters,
// suspend and capture like any other link end.
package hub

import (
	"encoding/json"
	"errors"

	"labd/actors/kind"
	"labd/nio"
)

// Kind is the hub's node type.
const Kind = "ethernet_hub"

// Driver runs hubs.
type Driver struct{}

// Info describes the kind: a hub has no console, as in GNS3.
func (Driver) Info() kind.Info {
	return kind.Info{Kind: Kind, Title: "Ethernet hub", AutoStart: true, AlwaysOn: true}
}

// Available: a hub needs nothing but labd.
func (Driver) Available() error { return nil }

// Settle applies a new port mapping: a port that has a link stays.
func (Driver) Settle(n kind.Node, patch any) (json.RawMessage, error) {
	props := decode(n.Properties)
	p, _ := patch.(*Patch)
	props.Ports = p.apply(props.Ports)
	if props.Ports == nil {
		props.Ports = []PortMapping{}
	}
	if err := errors.Join(kind.CheckMapping(props.Ports), kind.KeepLinked(props.Ports, n.Links)); err != nil {
		return nil, err
	}
	return json.Marshal(props)
}

// Ports are adapter 0's ports, numbered as ports_mapping has them.
func (Driver) Ports(props json.RawMessage) []kind.Port { return kind.MappingPorts(decode(props).Ports) }

// Prepare has no files to write.
func (Driver) Prepare(*kind.Node, kind.Node, any) error { return nil }

// Launch builds the hub: one fabric port per mapped port, each wired to
// its link.
func (Driver) Launch(h kind.Host, n kind.Node) (kind.Run, error) {
	r := &run{h: h, hub: nio.NewHub(nio.HubConfig{Name: "hub-" + n.ID, Logger: h.Logger, Plane: h.Plane})}
	if err := r.Update(n); err != nil {
		r.Stop(kind.StopKill)
		return nil, err
	}
	return r, nil
}

// Adopt rebuilds the hub after labd restarted, on the same UDP ports.
func (d Driver) Adopt(h kind.Host, n kind.Node, _ kind.Record) (kind.Run, error) {
	return d.Launch(h, n)
}

// run is a running hub.
type run struct {
	kind.InProcess
	h     kind.Host
	hub   *nio.Hub
	ports kind.FabricPorts
}

func (r *run) End(p kind.Port) kind.End { return r.ports.End(p) }

// Update makes the fabric's ports those of the node's mapping, at once.
func (r *run) Update(n kind.Node) error {
	var want []int
	for _, p := range decode(n.Properties).Ports {
		want = append(want, p.PortNumber)
	}
	return r.ports.Sync(r.h, want, r.hub.OpenPort, nil)
}

// Stop closes the fabric.
func (r *run) Stop(kind.StopMode) int {
	if err := r.hub.Close(); err != nil {
		r.h.Logger.Warn("closing the hub", "err", err)
	}
	return 0
}

// Release is a stop: nothing of a hub outlives labd.
func (r *run) Release() { r.Stop(kind.StopClosing) }
