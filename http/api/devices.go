package api

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/julienschmidt/httprouter"

	"labd/actors"
	"labd/actors/ethswitch"
	"labd/actors/hub"
	"labd/replay"
)

// GNS3 1.5's dynamips devices: /v1/projects/{project_id}/dynamips/devices,
// one segment for the Ethernet switch and hub (and the Frame Relay and ATM
// switches labd cannot run), told apart by the create's device_type. A
// 1.5 device starts with no ports: a port comes with its link, the NIO
// wrapped with the port's settings ({"nio": {...}, "port_settings":
// {"type", "vlan", "ethertype"}}). labd keeps a port once made (its
// settings stay when the link goes) and shows every port of the node, also
// those a v2 client made.

// deviceV1 is a GNS3 1.5 dynamips device: a hub shows only this.
type deviceV1 struct {
	DeviceID  string `json:"device_id"`
	Name      string `json:"name"`
	ProjectID string `json:"project_id"`
}

// switchDeviceV1 is an Ethernet switch as GNS3 1.5 shows it.
type switchDeviceV1 struct {
	deviceV1
	Ports []devicePortV1 `json:"ports"`
}

// devicePortV1 is a switch port as GNS3 1.5 shows it: ethertype always,
// "" but on a qinq port.
type devicePortV1 struct {
	EtherType string `json:"ethertype"`
	Port      int    `json:"port"`
	Type      string `json:"type"`
	VLAN      int    `json:"vlan"`
}

func switchV1(n *replay.Node, props ethswitch.Properties) switchDeviceV1 {
	out := switchDeviceV1{deviceV1: deviceV1{DeviceID: n.ID, Name: n.Name, ProjectID: n.ProjectID},
		Ports: make([]devicePortV1, len(props.Ports))}
	for i, p := range props.Ports {
		out.Ports[i] = devicePortV1{EtherType: p.EtherType, Port: p.PortNumber, Type: p.Type, VLAN: p.VLAN}
	}
	return out
}

// deviceCreateV1 is the body of POST /v1/projects/{project_id}/dynamips/devices
// (DEVICE_CREATE_SCHEMA).
type deviceCreateV1 struct {
	Name       field[string] `json:"name"`
	DeviceID   field[string] `json:"device_id"`
	DeviceType field[string] `json:"device_type"`
}

// createDeviceV1 decodes a device create into the create of a node of
// kind, with the properties props.
func createDeviceV1(pid string, b []byte, kind string, props any) (actors.CreateNode, error) {
	var body deviceCreateV1
	if err := decodeObject(b, &body); err != nil {
		return actors.CreateNode{}, err
	}
	cmd, err := newNode(pid, body.DeviceID, "Device", body.Name, kind)
	cmd.Props = props
	return cmd, err
}

// deviceUpdateV1 is the body of PUT .../dynamips/devices/{device_id}
// (DEVICE_UPDATE_SCHEMA).
type deviceUpdateV1 struct {
	Name  field[string]            `json:"name"`
	Ports field[[]json.RawMessage] `json:"ports"`
}

// devicePortBodyV1 is an item of a device update's ports: a port number
// and the settings a NIO would bring.
type devicePortBodyV1 struct {
	Port field[int] `json:"port"`
	portSettingsV1
}

// portSettingsV1 are the settings a v1 NIO brings for its switch port.
type portSettingsV1 struct {
	Type      field[string] `json:"type"`
	VLAN      field[int]    `json:"vlan"`
	EtherType field[string] `json:"ethertype"`
}

// check applies the schema to settings given as member name.
func (ps portSettingsV1) check(name string) error {
	switch {
	case !ps.Type.Set:
		return badRequest("field %q is required", name+".type")
	case !ps.VLAN.Set:
		return badRequest("field %q is required", name+".vlan")
	case ps.VLAN.Value < 1:
		return badRequest("field %q must be 1 or more, not %d", name+".vlan", ps.VLAN.Value)
	}
	if err := checkEnum(name+".type", ps.Type, switchPortTypes); err != nil {
		return err
	}
	return checkEnum(name+".ethertype", ps.EtherType, ethswitch.EtherTypes)
}

// port is the port number with the settings; its name is the port's,
// or Ethernet<number> for a new one (ethswitch.Patch.Merge).
func (ps portSettingsV1) port(number int) ethswitch.PortMapping {
	return ethswitch.PortMapping{PortNumber: number, Type: ps.Type.Value, VLAN: ps.VLAN.Value, EtherType: ps.EtherType.Value}
}

// updateSwitchV1 decodes a v1 switch update: a new name, and the settings
// of the ports it lists, merged into the node's (cur) as 1.5 applies them
// port by port.
func updateSwitchV1(ref actors.NodeRef, _ *replay.Node, b []byte) (actors.UpdateNode, error) {
	var body deviceUpdateV1
	if err := decodeObject(b, &body); err != nil {
		return actors.UpdateNode{}, err
	}
	cmd := actors.UpdateNode{NodeRef: ref}
	var err error
	if cmd.Name, err = checkNodeName(body.Name, false); err != nil {
		return cmd, err
	}
	if !body.Ports.Set {
		return cmd, nil
	}
	items, err := decodeItems[devicePortBodyV1]("ports", body.Ports.Value)
	if err != nil {
		return cmd, err
	}
	var merge []ethswitch.PortMapping
	for i, it := range items {
		name := "ports[" + strconv.Itoa(i) + "]"
		switch {
		case !it.Port.Set:
			return cmd, badRequest("field %q is required", name+".port")
		case it.Port.Value < 1:
			return cmd, badRequest("field %q must be 1 or more, not %d", name+".port", it.Port.Value)
		}
		if err := it.check(name); err != nil {
			return cmd, err
		}
		merge = append(merge, it.port(it.Port.Value))
	}
	cmd.Props = &ethswitch.Patch{Merge: merge}
	return cmd, nil
}

// updateHubV1 decodes a v1 hub update: a new name. GNS3 1.5's schema
// allows ports, which a hub has no settings for (1.5 fails with a 500).
func updateHubV1(ref actors.NodeRef, b []byte) (actors.UpdateNode, error) {
	var body deviceUpdateV1
	if err := decodeObject(b, &body); err != nil {
		return actors.UpdateNode{}, err
	}
	if body.Ports.Set {
		return actors.UpdateNode{}, badRequest("an Ethernet hub has no port settings: field \"ports\" is not allowed")
	}
	name, err := checkNodeName(body.Name, false)
	return actors.UpdateNode{NodeRef: ref, Name: name}, err
}

// deviceNIOBodyV1 is the body of POST .../devices/{device_id}/ports/{port_number}/nio
// (DEVICE_NIO_SCHEMA).
type deviceNIOBodyV1 struct {
	NIO          field[nioBody]        `json:"nio"`
	PortSettings field[portSettingsV1] `json:"port_settings"`
	Mappings     field[map[string]any] `json:"mappings"`
}

// A deviceWire is the wire of a kind that is a GNS3 1.5 dynamips device,
// whose ports come with their links.
type deviceWire interface {
	wire
	// linkPort returns the change that gives node n the port a v1 NIO
	// links, with the settings it brings; nil when n has it already.
	linkPort(n *replay.Node, port int, body deviceNIOBodyV1) (any, error)
}

func (switchWire) linkPort(_ *replay.Node, port int, body deviceNIOBodyV1) (any, error) {
	if body.Mappings.Set {
		return nil, badRequest("field \"mappings\" is for Frame Relay and ATM switches")
	}
	if !body.PortSettings.Set {
		// A port linked without settings keeps its own, or is a new
		// access port in VLAN 1.
		return &ethswitch.Patch{Ensure: []int{port}}, nil
	}
	ps := body.PortSettings.Value
	if err := ps.check("port_settings"); err != nil {
		return nil, err
	}
	return &ethswitch.Patch{Merge: []ethswitch.PortMapping{ps.port(port)}}, nil
}

func (hubWire) linkPort(_ *replay.Node, port int, body deviceNIOBodyV1) (any, error) {
	if body.PortSettings.Set || body.Mappings.Set {
		return nil, badRequest("an Ethernet hub's port has no settings: only field \"nio\" is allowed")
	}
	return &hub.Patch{Ensure: []int{port}}, nil
}

// deviceNIO serves POST nio on a GNS3 1.5 device port: the port is made,
// or its settings changed, first (nothing is linked when they are
// refused), then the NIO is added.
func (s *Server) deviceNIO(g *routeGroup) handler {
	return func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
		ref, a, p, err := g.portRef(ps)
		if err != nil {
			return err
		}
		var body deviceNIOBodyV1
		if err := decodeBody(r, &body, s.cfg.MaxBodyBytes, false); err != nil {
			return err
		}
		if !body.NIO.Set {
			return badRequest("field \"nio\" is required")
		}
		nio, err := checkNIO(body.NIO.Value)
		if err != nil {
			return err
		}
		n, err := s.cfg.Client.Node(ref.ProjectID, ref.NodeID)
		if err != nil {
			return err
		}
		dw, ok := g.kindOf(n.Kind).wire.(deviceWire)
		if !ok {
			return actors.Conflict("Node %s has no ports to link", n.Name)
		}
		patch, err := dw.linkPort(n, p, body)
		if err != nil {
			return err
		}
		if patch != nil {
			if _, err := s.cfg.Client.NodeDo(r.Context(), actors.UpdateNode{NodeRef: ref, Props: patch}); err != nil {
				return err
			}
		}
		if _, err := s.cfg.Client.NodeDo(r.Context(), actors.AddNIO{NodeRef: ref, Adapter: a, Port: p, NIO: nio}); err != nil {
			return err
		}
		writeJSON(w, http.StatusCreated, nioJSON{Type: nio.Type, LPort: nio.LPort, RHost: nio.RHost, RPort: nio.RPort})
		return nil
	}
}
