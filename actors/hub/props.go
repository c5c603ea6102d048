package hub

import (
	"encoding/json"
	"fmt"
	"slices"

	"labd/actors/kind"
)

// PortMapping is one port of a hub, as GNS3's ports_mapping has it.
type PortMapping struct {
	Name       string `json:"name"`
	PortNumber int    `json:"port_number"`
}

// Properties are a hub's own settings, as recorded.
type Properties struct {
	Ports []PortMapping `json:"ports_mapping"`
}

// Patch is a create's or an update's change to a hub: Ports, then
// Ensure, applied inside the node's actor.
type Patch struct {
	// Ports replaces the port mapping; nil keeps it (in a create: 8
	// ports, as GNS3).
	Ports *[]PortMapping
	// Ensure adds the port numbers not there yet, named Ethernet<number>.
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
	return kind.EnsurePorts(slices.Clone(ports), p.Ensure, func(n int) PortMapping {
		return PortMapping{Name: fmt.Sprintf("Ethernet%d", n), PortNumber: n}
	})
}

// defaultPorts are GNS3's: 8 ports.
func defaultPorts() []PortMapping {
	ports := make([]PortMapping, 8)
	for i := range ports {
		ports[i] = PortMapping{Name: fmt.Sprintf("Ethernet%d", i), PortNumber: i}
	}
	return ports
}

// Number and Label make a PortMapping a kind.MappedPort.
func (p PortMapping) Number() int   { return p.PortNumber }
func (p PortMapping) Label() string { return p.Name }

// decode reads recorded properties.
func decode(raw json.RawMessage) Properties {
	var p Properties
	if len(raw) == 0 || json.Unmarshal(raw, &p) != nil {
		return Properties{Ports: defaultPorts()}
	}
	return p
}
