package ethswitch

import (
	"encoding/json"
	"fmt"
	"slices"

	"labd/actors/kind"
)

// PortMapping is one port of a switch, as GNS3's ports_mapping has it.
type PortMapping struct {
	Name       string `json:"name"`
	PortNumber int    `json:"port_number"`
	// Type is access, dot1q or qinq.
	Type string `json:"type"`
	// VLAN is an access port's VLAN, a dot1q port's native VLAN, a qinq
	// port's outer VLAN.
	VLAN int `json:"vlan"`
	// EtherType is a qinq port's outer tag type: "" (0x8100), 0x8100,
	// 0x88A8, 0x9100 or 0x9200.
	EtherType string `json:"ethertype,omitempty"`
}

// Properties are a switch's own settings, as recorded.
type Properties struct {
	Ports []PortMapping `json:"ports_mapping"`
}

// Patch is a create's or an update's change to a switch, applied in
// order: Ports, then Merge, then Ensure. The merges are made inside the
// node's actor, so that concurrent changes of different ports (GNS3 1.5
// sets ports one by one) do not undo each other.
type Patch struct {
	// Ports replaces the port mapping; nil keeps it (in a create: 8
	// access ports in VLAN 1, as GNS3).
	Ports *[]PortMapping
	// Merge replaces the ports of their numbers, keeping a port's name
	// when the merged one has none, and adds those not there yet (named
	// Ethernet<number> when they have no name).
	Merge []PortMapping
	// Ensure adds the port numbers not there yet as access ports in
	// VLAN 1.
	Ensure []int
}

// apply returns ports changed by the patch.
func (p *Patch) apply(ports []PortMapping) []PortMapping {
	if p == nil {
		return ports
	}
	if p.Ports != nil {
		ports = *p.Ports
	}
	out := slices.Clone(ports)
	for _, m := range p.Merge {
		i := slices.IndexFunc(out, func(q PortMapping) bool { return q.PortNumber == m.PortNumber })
		switch {
		case i >= 0 && m.Name == "":
			m.Name = out[i].Name
		case m.Name == "":
			m.Name = fmt.Sprintf("Ethernet%d", m.PortNumber)
		}
		if i >= 0 {
			out[i] = m
		} else {
			out = append(out, m)
		}
	}
	return kind.EnsurePorts(out, p.Ensure, func(n int) PortMapping {
		return PortMapping{Name: fmt.Sprintf("Ethernet%d", n), PortNumber: n, Type: Access, VLAN: 1}
	})
}

// Port types.
const (
	Access = "access"
	Dot1Q  = "dot1q"
	QinQ   = "qinq"
)

// EtherTypes are the outer tag types a qinq port may have ("" is 0x8100).
var EtherTypes = []string{"", "0x8100", "0x88A8", "0x9100", "0x9200"}

// defaultPorts are GNS3's: 8 access ports in VLAN 1.
func defaultPorts() []PortMapping {
	ports := make([]PortMapping, 8)
	for i := range ports {
		ports[i] = PortMapping{Name: fmt.Sprintf("Ethernet%d", i), PortNumber: i, Type: Access, VLAN: 1}
	}
	return ports
}

// Number and Label make a PortMapping a kind.MappedPort.
func (p PortMapping) Number() int   { return p.PortNumber }
func (p PortMapping) Label() string { return p.Name }

// check validates a port mapping: unique port numbers and names, a known
// type, a VLAN a tag can carry, a known ethertype.
func check(ports []PortMapping) error {
	if err := kind.CheckMapping(ports); err != nil {
		return err
	}
	for _, p := range ports {
		switch {
		case p.Type != Access && p.Type != Dot1Q && p.Type != QinQ:
			return kind.Invalid("ports_mapping: port %d has type %q, not one of access, dot1q, qinq", p.PortNumber, p.Type)
		case p.VLAN < 1 || p.VLAN > 4094:
			return kind.Invalid("ports_mapping: port %d has VLAN %d, not between 1 and 4094", p.PortNumber, p.VLAN)
		case !slices.Contains(EtherTypes, p.EtherType):
			return kind.Invalid("ports_mapping: port %d has ethertype %q, not one of 0x8100, 0x88A8, 0x9100, 0x9200", p.PortNumber, p.EtherType)
		case p.EtherType != "" && p.Type != QinQ:
			return kind.Invalid("ports_mapping: port %d has an ethertype, which only a qinq port has", p.PortNumber)
		}
	}
	return nil
}

// decode reads recorded properties.
func decode(raw json.RawMessage) Properties {
	var p Properties
	if len(raw) == 0 || json.Unmarshal(raw, &p) != nil {
		return Properties{Ports: defaultPorts()}
	}
	return p
}
