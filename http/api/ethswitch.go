package api

import (
	"encoding/json"

	"labd/actors"
	"labd/actors/ethswitch"
	"labd/replay"
)

// switchPortJSON is a port of a switch's ports_mapping as GNS3 2.2 shows
// it.
type switchPortJSON struct {
	EtherType  string `json:"ethertype,omitempty"`
	Name       string `json:"name"`
	PortNumber int    `json:"port_number"`
	Type       string `json:"type"`
	VLAN       int    `json:"vlan"`
}

// switchV2 is an Ethernet switch as the GNS3 2.2 compute shows it: the
// members of ETHERNET_SWITCH_OBJECT_SCHEMA.
type switchV2 struct {
	Console      *int             `json:"console"`
	ConsoleType  string           `json:"console_type"`
	Name         string           `json:"name"`
	NodeID       string           `json:"node_id"`
	PortsMapping []switchPortJSON `json:"ports_mapping"`
	ProjectID    string           `json:"project_id"`
	Status       string           `json:"status"`
}

// switchPortBody is a ports_mapping item as clients send it
// (ETHERNET_SWITCH_PORT_SCHEMA).
type switchPortBody struct {
	mappedPortBody
	Type      field[string] `json:"type"`
	VLAN      field[int]    `json:"vlan"`
	EtherType field[string] `json:"ethertype"`
}

// switchPortTypes are the port types of GNS3's switch port schema, which
// are the driver's.
var switchPortTypes = []string{ethswitch.Access, ethswitch.Dot1Q, ethswitch.QinQ}

// switchConsoleTypes are the console types of a switch, the driver's:
// GNS3's "none", its default, and labd's telnet console (README).
func switchConsoleTypes() []string { return ethswitch.Driver{}.Info().ConsoleTypes }

// switchCreateV2 is the body of POST .../ethernet_switch/nodes.
type switchCreateV2 struct {
	NodeID       field[string]            `json:"node_id"`
	ConsoleType  field[string]            `json:"console_type"`
	PortsMapping field[[]json.RawMessage] `json:"ports_mapping"`
	nodeCreate
}

// switchUpdateV2 is the body of PUT .../ethernet_switch/nodes/{node_id}:
// GNS3's update schema is the object's, every member optional.
type switchUpdateV2 struct {
	Console      nullable[int]            `json:"console"`
	ConsoleType  field[string]            `json:"console_type"`
	PortsMapping field[[]json.RawMessage] `json:"ports_mapping"`
	objectUpdate
}

// port checks the item against GNS3's schema. Duplicates and VLANs over
// 4094 are the driver's to refuse.
func (it switchPortBody) port(item string) (ethswitch.PortMapping, error) {
	at := func(m string) string { return item + "." + m }
	if err := it.check(item); err != nil {
		return ethswitch.PortMapping{}, err
	}
	switch {
	case !it.Type.Set:
		return ethswitch.PortMapping{}, badRequest("field %q is required", at("type"))
	case it.VLAN.Set && it.VLAN.Value < 1:
		return ethswitch.PortMapping{}, badRequest("field %q must be 1 or more, not %d", at("vlan"), it.VLAN.Value)
	}
	if err := checkEnum(at("type"), it.Type, switchPortTypes); err != nil {
		return ethswitch.PortMapping{}, err
	}
	if err := checkEnum(at("ethertype"), it.EtherType, ethswitch.EtherTypes); err != nil {
		return ethswitch.PortMapping{}, err
	}
	// GNS3's schema lets vlan out, and Dynamips then fails on the port;
	// VLAN 1 is every switch's default.
	vlan := 1
	if it.VLAN.Set {
		vlan = it.VLAN.Value
	}
	return ethswitch.PortMapping{Name: it.Name.Value, PortNumber: it.PortNumber.Value, Type: it.Type.Value,
		VLAN: vlan, EtherType: it.EtherType.Value}, nil
}

// switchPorts is the change a switch's ports_mapping makes, nil when the
// body has none.
func switchPorts(f field[[]json.RawMessage]) (any, error) {
	return portsPatch[switchPortBody](f, func(ports *[]ethswitch.PortMapping) any { return &ethswitch.Patch{Ports: ports} })
}

// switchWire is the Ethernet switch's wire: GNS3 2.2's node, and GNS3
// 1.5's dynamips device (devices.go).
type switchWire struct{}

func (switchWire) create(v apiVersion, pid string, b []byte) (actors.CreateNode, error) {
	if v == v1 {
		return createDeviceV1(pid, b, ethswitch.Kind, &ethswitch.Patch{Ports: &[]ethswitch.PortMapping{}})
	}
	var body switchCreateV2
	if err := decodeObject(b, &body); err != nil {
		return actors.CreateNode{}, err
	}
	cmd, err := body.command(pid, body.NodeID, "Node", ethswitch.Kind)
	if err != nil {
		return cmd, err
	}
	if err := createConsoleType(&cmd, body.ConsoleType, switchConsoleTypes()); err != nil {
		return cmd, err
	}
	cmd.Props, err = switchPorts(body.PortsMapping)
	return cmd, err
}

func (switchWire) update(v apiVersion, ref actors.NodeRef, cur *replay.Node, b []byte) (actors.UpdateNode, error) {
	if v == v1 {
		return updateSwitchV1(ref, cur, b)
	}
	var body switchUpdateV2
	if err := decodeObject(b, &body); err != nil {
		return actors.UpdateNode{}, err
	}
	cmd, err := body.command(ref)
	if err != nil {
		return cmd, err
	}
	if err := updateConsole(&cmd, body.Console, body.ConsoleType, switchConsoleTypes()); err != nil {
		return cmd, err
	}
	cmd.Props, err = switchPorts(body.PortsMapping)
	return cmd, err
}

func (switchWire) render(s *Server, v apiVersion, n *replay.Node) any {
	props := recorded[ethswitch.Properties](n)
	if v == v1 {
		return switchV1(n, props)
	}
	ports := make([]switchPortJSON, len(props.Ports))
	for i, p := range props.Ports {
		ports[i] = switchPortJSON{EtherType: p.EtherType, Name: p.Name, PortNumber: p.PortNumber, Type: p.Type, VLAN: p.VLAN}
	}
	return switchV2{Console: consoleOf(n), ConsoleType: n.ConsoleType, Name: n.Name, NodeID: n.ID,
		PortsMapping: ports, ProjectID: n.ProjectID, Status: status(n)}
}
