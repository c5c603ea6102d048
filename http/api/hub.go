package api

import (
	"encoding/json"

	"labd/actors"
	"labd/actors/hub"
	"labd/replay"
)

// hubPortJSON is a port of a hub's ports_mapping as GNS3 2.2 shows it.
type hubPortJSON struct {
	Name       string `json:"name"`
	PortNumber int    `json:"port_number"`
}

// hubV2 is an Ethernet hub as the GNS3 2.2 compute shows it: the members
// of ETHERNET_HUB_OBJECT_SCHEMA. A hub has no console.
type hubV2 struct {
	Name         string        `json:"name"`
	NodeID       string        `json:"node_id"`
	PortsMapping []hubPortJSON `json:"ports_mapping"`
	ProjectID    string        `json:"project_id"`
	Status       string        `json:"status"`
}

// hubPortBody is a ports_mapping item as clients send it
// (ETHERNET_HUB_PORT_SCHEMA): only what every kind's item has.
type hubPortBody struct{ mappedPortBody }

// hubCreateV2 is the body of POST .../ethernet_hub/nodes.
type hubCreateV2 struct {
	Name         field[string]            `json:"name"`
	NodeID       field[string]            `json:"node_id"`
	PortsMapping field[[]json.RawMessage] `json:"ports_mapping"`
}

// hubUpdateV2 is the body of PUT .../ethernet_hub/nodes/{node_id}: the
// object's members, every one optional.
type hubUpdateV2 struct {
	PortsMapping field[[]json.RawMessage] `json:"ports_mapping"`
	objectUpdate
}

// port checks the item against GNS3's schema. Duplicates are the
// driver's to refuse.
func (it hubPortBody) port(item string) (hub.PortMapping, error) {
	if err := it.check(item); err != nil {
		return hub.PortMapping{}, err
	}
	return hub.PortMapping{Name: it.Name.Value, PortNumber: it.PortNumber.Value}, nil
}

// hubPorts is the change a hub's ports_mapping makes, nil when the body
// has none.
func hubPorts(f field[[]json.RawMessage]) (any, error) {
	return portsPatch[hubPortBody](f, func(ports *[]hub.PortMapping) any { return &hub.Patch{Ports: ports} })
}

// hubWire is the Ethernet hub's wire: GNS3 2.2's node, and GNS3 1.5's
// dynamips device (devices.go).
type hubWire struct{}

func (hubWire) create(v apiVersion, pid string, b []byte) (actors.CreateNode, error) {
	if v == v1 {
		return createDeviceV1(pid, b, hub.Kind, &hub.Patch{Ports: &[]hub.PortMapping{}})
	}
	var body hubCreateV2
	if err := decodeObject(b, &body); err != nil {
		return actors.CreateNode{}, err
	}
	cmd, err := newNode(pid, body.NodeID, "Node", body.Name, hub.Kind)
	if err != nil {
		return cmd, err
	}
	cmd.Props, err = hubPorts(body.PortsMapping)
	return cmd, err
}

func (hubWire) update(v apiVersion, ref actors.NodeRef, _ *replay.Node, b []byte) (actors.UpdateNode, error) {
	if v == v1 {
		return updateHubV1(ref, b)
	}
	var body hubUpdateV2
	if err := decodeObject(b, &body); err != nil {
		return actors.UpdateNode{}, err
	}
	cmd, err := body.command(ref)
	if err != nil {
		return cmd, err
	}
	cmd.Props, err = hubPorts(body.PortsMapping)
	return cmd, err
}

func (hubWire) render(s *Server, v apiVersion, n *replay.Node) any {
	props := recorded[hub.Properties](n)
	if v == v1 {
		return deviceV1{DeviceID: n.ID, Name: n.Name, ProjectID: n.ProjectID}
	}
	ports := make([]hubPortJSON, len(props.Ports))
	for i, p := range props.Ports {
		ports[i] = hubPortJSON{Name: p.Name, PortNumber: p.PortNumber}
	}
	return hubV2{Name: n.Name, NodeID: n.ID, PortsMapping: ports, ProjectID: n.ProjectID, Status: status(n)}
}
