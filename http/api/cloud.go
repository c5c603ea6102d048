package api

import (
	"encoding/json"
	"strconv"

	"labd/actors"
	"labd/actors/cloud"
	"labd/host"
	"labd/replay"
)

// cloudPortJSON is a port of a cloud's ports_mapping as GNS3 2.2 shows
// it: an ethernet or tap port has an interface, a udp port a tunnel.
type cloudPortJSON struct {
	Interface  string `json:"interface,omitempty"`
	LPort      int    `json:"lport,omitempty"`
	Name       string `json:"name"`
	PortNumber int    `json:"port_number"`
	RHost      string `json:"rhost,omitempty"`
	RPort      int    `json:"rport,omitempty"`
	Type       string `json:"type"`
}

// hostInterfaceJSON is a host interface as a cloud shows it
// (HOST_INTERFACE_SCHEMA).
type hostInterfaceJSON struct {
	Name    string `json:"name"`
	Special bool   `json:"special"`
	Type    string `json:"type"`
}

// cloudV2 is a cloud as the GNS3 2.2 compute shows it: the members of
// CLOUD_OBJECT_SCHEMA. interfaces are the host's, read at each rendering,
// as GNS3 does.
type cloudV2 struct {
	Interfaces            []hostInterfaceJSON `json:"interfaces"`
	Name                  string              `json:"name"`
	NodeDirectory         string              `json:"node_directory"`
	NodeID                string              `json:"node_id"`
	PortsMapping          []cloudPortJSON     `json:"ports_mapping"`
	ProjectID             string              `json:"project_id"`
	RemoteConsoleHost     string              `json:"remote_console_host"`
	RemoteConsoleHTTPPath string              `json:"remote_console_http_path"`
	RemoteConsolePort     int                 `json:"remote_console_port"`
	RemoteConsoleType     string              `json:"remote_console_type"`
	Status                string              `json:"status"`
}

// cloudPortBody is a ports_mapping item as clients send it: the members
// of every branch of PORT_OBJECT_SCHEMA's oneOf, told apart by type.
type cloudPortBody struct {
	mappedPortBody
	Type      field[string] `json:"type"`
	Interface field[string] `json:"interface"`
	LPort     field[int]    `json:"lport"`
	RHost     field[string] `json:"rhost"`
	RPort     field[int]    `json:"rport"`
}

// hostInterfaceBody is an interfaces item as clients send it back.
type hostInterfaceBody struct {
	Name    field[string] `json:"name"`
	Type    field[string] `json:"type"`
	Special field[bool]   `json:"special"`
}

// The enums of GNS3's cloud schema, the driver's.
var (
	cloudPortTypes     = []string{cloud.Ethernet, cloud.TAP, cloud.UDP}
	hostInterfaceTypes = []string{cloud.Ethernet, cloud.TAP}
)

// cloudProps are the members of a cloud's create and update besides its
// name and id.
type cloudProps struct {
	RemoteConsoleHost     field[string]            `json:"remote_console_host"`
	RemoteConsolePort     nullable[int]            `json:"remote_console_port"`
	RemoteConsoleType     field[string]            `json:"remote_console_type"`
	RemoteConsoleHTTPPath field[string]            `json:"remote_console_http_path"`
	PortsMapping          field[[]json.RawMessage] `json:"ports_mapping"`
	// Interfaces are accepted, checked and ignored: they are the host's.
	Interfaces field[[]json.RawMessage] `json:"interfaces"`
}

// cloudCreateV2 is the body of POST .../cloud/nodes.
type cloudCreateV2 struct {
	Name   field[string] `json:"name"`
	NodeID field[string] `json:"node_id"`
	cloudProps
}

// cloudUpdateV2 is the body of PUT .../cloud/nodes/{node_id}: the object's
// members, every one optional.
type cloudUpdateV2 struct {
	NodeDirectory field[string] `json:"node_directory"`
	cloudProps
	objectUpdate
}

// patch checks the members against GNS3's schema and returns the change
// they make, a *cloud.Patch; a nil interface when they make none (a typed
// nil in Props would read as a change). A null remote_console_port, which
// the schema allows, keeps the port.
func (c cloudProps) patch() (any, error) {
	var p cloud.Patch
	changed := false
	if c.RemoteConsoleHost.Set {
		p.RemoteConsoleHost, changed = &c.RemoteConsoleHost.Value, true
	}
	if c.RemoteConsolePort.Set && !c.RemoteConsolePort.Null {
		if v := c.RemoteConsolePort.Value; v < 1 || v > 65535 {
			return nil, badRequest("field \"remote_console_port\" must be a port number between 1 and 65535, not %d", v)
		}
		p.RemoteConsolePort, changed = &c.RemoteConsolePort.Value, true
	}
	if c.RemoteConsoleType.Set {
		if err := checkEnum("remote_console_type", c.RemoteConsoleType, cloud.RemoteConsoleTypes); err != nil {
			return nil, err
		}
		p.RemoteConsoleType, changed = &c.RemoteConsoleType.Value, true
	}
	if c.RemoteConsoleHTTPPath.Set {
		p.RemoteConsoleHTTPPath, changed = &c.RemoteConsoleHTTPPath.Value, true
	}
	ports, err := decodePorts[cloudPortBody](c.PortsMapping)
	if err != nil {
		return nil, err
	}
	if ports != nil {
		p.Ports, changed = ports, true
	}
	if c.Interfaces.Set {
		if err := checkHostInterfaces(c.Interfaces.Value); err != nil {
			return nil, err
		}
	}
	if !changed {
		return nil, nil
	}
	return &p, nil
}

// port checks the item against GNS3's schema (each item, where GNS3's
// tuple-form items check only the first). Duplicates, interface names and
// this host's devices are the driver's to judge.
func (it cloudPortBody) port(item string) (cloud.PortMapping, error) {
	at := func(m string) string { return item + "." + m }
	if err := it.check(item); err != nil {
		return cloud.PortMapping{}, err
	}
	if !it.Type.Set {
		return cloud.PortMapping{}, badRequest("field %q is required", at("type"))
	}
	if err := checkEnum(at("type"), it.Type, cloudPortTypes); err != nil {
		return cloud.PortMapping{}, err
	}
	p := cloud.PortMapping{Name: it.Name.Value, PortNumber: it.PortNumber.Value, Type: it.Type.Value}
	if it.Type.Value == cloud.UDP {
		switch {
		case it.Interface.Set:
			return p, badRequest("a udp port has no interface: field %q is not allowed", at("interface"))
		case !it.LPort.Set:
			return p, badRequest("field %q is required", at("lport"))
		case !it.RHost.Set:
			return p, badRequest("field %q is required", at("rhost"))
		case !it.RPort.Set:
			return p, badRequest("field %q is required", at("rport"))
		case it.LPort.Value < 1 || it.LPort.Value > 65535:
			return p, badRequest("field %q must be a port number between 1 and 65535, not %d", at("lport"), it.LPort.Value)
		case it.RPort.Value < 1 || it.RPort.Value > 65535:
			return p, badRequest("field %q must be a port number between 1 and 65535, not %d", at("rport"), it.RPort.Value)
		case it.RHost.Value == "":
			return p, badRequest("field %q must not be empty", at("rhost"))
		}
		p.LPort, p.RHost, p.RPort = it.LPort.Value, it.RHost.Value, it.RPort.Value
		return p, nil
	}
	switch {
	case it.LPort.Set || it.RHost.Set || it.RPort.Set:
		return p, badRequest("a port of type %q has no tunnel: %s may have only name, port_number, type and interface",
			it.Type.Value, item)
	case !it.Interface.Set:
		return p, badRequest("field %q is required", at("interface"))
	case it.Interface.Value == "":
		return p, badRequest("field %q must not be empty", at("interface"))
	}
	p.Interface = it.Interface.Value
	return p, nil
}

// checkHostInterfaces checks the interfaces a client sends back against
// HOST_INTERFACE_SCHEMA.
func checkHostInterfaces(raw []json.RawMessage) error {
	items, err := decodeItems[hostInterfaceBody]("interfaces", raw)
	if err != nil {
		return err
	}
	for i, it := range items {
		at := "interfaces[" + strconv.Itoa(i) + "]."
		switch {
		case !it.Name.Set:
			return badRequest("field %q is required", at+"name")
		case !it.Type.Set:
			return badRequest("field %q is required", at+"type")
		case !it.Special.Set:
			return badRequest("field %q is required", at+"special")
		case it.Name.Value == "":
			return badRequest("field %q must not be empty", at+"name")
		}
		if err := checkEnum(at+"type", it.Type, hostInterfaceTypes); err != nil {
			return err
		}
	}
	return nil
}

// cloudWire is the cloud's wire. GNS3 1.5 had no cloud on the server: a
// v1 client sees a cloud in 2.2's shape.
type cloudWire struct{}

func (cloudWire) create(_ apiVersion, pid string, b []byte) (actors.CreateNode, error) {
	var body cloudCreateV2
	if err := decodeObject(b, &body); err != nil {
		return actors.CreateNode{}, err
	}
	cmd, err := newNode(pid, body.NodeID, "Node", body.Name, cloud.Kind)
	if err != nil {
		return cmd, err
	}
	cmd.Props, err = body.patch()
	return cmd, err
}

func (cloudWire) update(_ apiVersion, ref actors.NodeRef, _ *replay.Node, b []byte) (actors.UpdateNode, error) {
	var body cloudUpdateV2
	if err := decodeObject(b, &body); err != nil {
		return actors.UpdateNode{}, err
	}
	cmd, err := body.command(ref)
	if err != nil {
		return cmd, err
	}
	cmd.Props, err = body.patch()
	return cmd, err
}

func (cloudWire) render(s *Server, _ apiVersion, n *replay.Node) any {
	props := recorded[cloud.Properties](n)
	ports := make([]cloudPortJSON, len(props.Ports))
	for i, p := range props.Ports {
		ports[i] = cloudPortJSON{Interface: p.Interface, LPort: p.LPort, Name: p.Name, PortNumber: p.PortNumber,
			RHost: p.RHost, RPort: p.RPort, Type: p.Type}
	}
	return cloudV2{
		Interfaces: s.hostInterfaces(), Name: n.Name, NodeDirectory: s.cfg.Client.NodeDir(n), NodeID: n.ID,
		PortsMapping: ports, ProjectID: n.ProjectID,
		RemoteConsoleHost: props.RemoteConsoleHost, RemoteConsoleHTTPPath: props.RemoteConsoleHTTPPath,
		RemoteConsolePort: props.RemoteConsolePort, RemoteConsoleType: props.RemoteConsoleType,
		Status: status(n),
	}
}

// hostInterfaces lists the host's interfaces for a cloud's interfaces
// member; an empty list when they cannot be read (a rendering cannot
// fail).
func (s *Server) hostInterfaces() []hostInterfaceJSON {
	ifs, err := listHostInterfaces()
	if err != nil {
		s.log.Warn("cloud: cannot list the host's interfaces", "err", err)
		return []hostInterfaceJSON{}
	}
	return ifs
}

// listHostInterfaces reads the host's interfaces as GNS3 lists them for a
// cloud: the host's listing, which the cloud driver's default ports come
// from too, so that the two agree on what is special.
func listHostInterfaces() ([]hostInterfaceJSON, error) {
	ifs, err := host.Interfaces()
	if err != nil {
		return nil, err
	}
	out := make([]hostInterfaceJSON, len(ifs))
	for i, it := range ifs {
		out[i] = hostInterfaceJSON{Name: it.Name, Special: it.Special, Type: it.Type}
	}
	return out, nil
}
