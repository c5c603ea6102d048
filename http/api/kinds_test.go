package api_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// The API surface of the in-process kinds (Ethernet switch, hub, cloud) on
// both versions: members, defaults, the routes GNS3 has and the ones labd
// adds, and GNS3 1.5's dynamips devices. What flows through them is tested
// with their drivers.

const unknownNode = "00010203-0405-4607-8809-0a0b0c0d0e0f"

// ports decodes a ports_mapping (or v1 ports) member.
func ports(t *testing.T, v any) []map[string]any {
	t.Helper()
	items, ok := v.([]any)
	if !ok {
		t.Fatalf("ports %#v is not an array", v)
	}
	out := make([]map[string]any, len(items))
	for i, it := range items {
		if out[i], ok = it.(map[string]any); !ok {
			t.Fatalf("port %#v is not an object", it)
		}
	}
	return out
}

// jsonEqual reports whether got, decoded from a reply, is the JSON want.
func jsonEqual(t *testing.T, got any, want string) bool {
	t.Helper()
	var w any
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatal(err)
	}
	return reflect.DeepEqual(got, w)
}

func TestEthernetSwitchRoutes(t *testing.T) {
	d := startDaemon(t, daemonOptions{})
	p := d.createProject("switch")
	base := "/v2/compute/projects/" + p + "/ethernet_switch/nodes"
	const route = "/v2/compute/projects/{project_id}/ethernet_switch/nodes"

	// GNS3's defaults: 8 access ports in VLAN 1, no console, started.
	o := d.do("POST", base, `{"name": "SW1"}`).expect(t, 201, route).object(t)
	keys(t, o, "console", "console_type", "name", "node_id", "ports_mapping", "project_id", "status")
	if o["console_type"] != "none" || o["status"] != "started" || o["project_id"] != p || o["name"] != "SW1" {
		t.Fatalf("created switch %v", o)
	}
	pm := ports(t, o["ports_mapping"])
	if len(pm) != 8 || !jsonEqual(t, pm[0], `{"name": "Ethernet0", "port_number": 0, "type": "access", "vlan": 1}`) ||
		pm[7]["port_number"] != float64(7) {
		t.Fatalf("default ports_mapping %v", pm)
	}
	sw := base + "/" + o["node_id"].(string)
	if g := d.do("GET", sw, "").expect(t, 200, route+"/{node_id}").object(t); !reflect.DeepEqual(g, o) {
		t.Fatalf("GET %v, created %v", g, o)
	}

	// The client's port numbers and names are kept (GNS3 renumbers them
	// on an update), a missing vlan is VLAN 1.
	mapping := `[{"name": "uplink", "port_number": 5, "type": "dot1q", "vlan": 1},
		{"name": "e1", "port_number": 1, "type": "access", "vlan": 10},
		{"name": "q", "port_number": 9, "type": "qinq", "vlan": 100, "ethertype": "0x88A8"},
		{"name": "d", "port_number": 2, "type": "access"}]`
	want := `[{"name": "uplink", "port_number": 5, "type": "dot1q", "vlan": 1},
		{"name": "e1", "port_number": 1, "type": "access", "vlan": 10},
		{"name": "q", "port_number": 9, "type": "qinq", "vlan": 100, "ethertype": "0x88A8"},
		{"name": "d", "port_number": 2, "type": "access", "vlan": 1}]`
	u := d.do("PUT", sw, `{"name": "SW2", "ports_mapping": `+mapping+`}`).expect(t, 200, route+"/{node_id}").object(t)
	if u["name"] != "SW2" || !jsonEqual(t, u["ports_mapping"], want) {
		t.Fatalf("updated switch %v", u)
	}
	// An update may send the object back: node_id, project_id and status
	// are accepted and change nothing.
	echo, _ := json.Marshal(u)
	if e := d.do("PUT", sw, string(echo)).expect(t, 200, "").object(t); !reflect.DeepEqual(e, u) {
		t.Fatalf("echoed update %v, was %v", e, u)
	}

	// A telnet console, which GNS3's switch does not have.
	c := d.do("PUT", sw, `{"console_type": "telnet"}`).expect(t, 200, "").object(t)
	if c["console_type"] != "telnet" || c["console"] == nil {
		t.Fatalf("switch with a telnet console %v", c)
	}
	created := d.do("POST", base, `{"name": "SW3", "console_type": "telnet", "ports_mapping": [{"name": "a", "port_number": 0, "type": "access", "vlan": 1}]}`).
		expect(t, 201, route).object(t)
	if created["console_type"] != "telnet" || created["console"] == nil || len(ports(t, created["ports_mapping"])) != 1 {
		t.Fatalf("switch created with a console %v", created)
	}

	// Lifecycle: 204, the switch stays started; no reload, as in GNS3.
	for _, op := range []string{"start", "stop", "suspend"} {
		d.do("POST", sw+"/"+op, "").expect(t, 204, route+"/{node_id}/"+op)
	}
	d.do("POST", sw+"/reload", "").expect(t, 404, "")

	// Links on adapter 0, with PUT nio (filters) that GNS3's switch lacks.
	pa, pb := d.udpPort(p), d.udpPort(p)
	port := sw + "/adapters/0/ports/1"
	d.do("POST", port+"/nio", nioBody(pa, pb, "")).expect(t, 201, route+"/{node_id}/adapters/{adapter_number:\\d+}/ports/{port_number:\\d+}/nio")
	n := d.do("PUT", port+"/nio", nioBody(pa, pb, `,"filters":{"packet_loss":[10]},"suspend":false`)).expect(t, 201, "").object(t)
	if !jsonEqual(t, n["filters"], `{"packet_loss": [10]}`) {
		t.Fatalf("PUT nio answered %v", n)
	}
	cp := d.do("POST", port+"/start_capture", `{"capture_file_name": "sw.pcap", "data_link_type": "DLT_EN10MB"}`).expect(t, 200, "").object(t)
	if cp["pcap_file_path"] == nil {
		t.Fatalf("start_capture answered %v", cp)
	}
	d.do("POST", port+"/stop_capture", "").expect(t, 204, "")
	d.do("DELETE", port+"/nio", "").expect(t, 204, "")
	// A port the mapping does not have.
	d.do("POST", sw+"/adapters/0/ports/3/nio", nioBody(pa, pb, "")).expect(t, 409, "")

	// Duplicate into another switch.
	dst := d.do("POST", base, `{"name": "SW4"}`).expect(t, 201, "").object(t)["node_id"].(string)
	d.do("POST", sw+"/duplicate", `{"destination_node_id": "`+dst+`"}`).expect(t, 201, route+"/{node_id}/duplicate")

	// Another kind's routes do not see a switch, nor a switch's routes
	// another kind.
	vpc := d.createVPCS(p, "PC1")
	d.do("GET", "/v2/compute/projects/"+p+"/vpcs/nodes/"+o["node_id"].(string), "").expect(t, 404, "")
	d.do("GET", base+"/"+vpc.ID, "").expect(t, 404, "")

	d.do("DELETE", sw, "").expect(t, 204, route+"/{node_id}")
	d.do("GET", sw, "").expect(t, 404, "")
	d.do("GET", base+"/"+unknownNode, "").expect(t, 404, "")
}

func TestEthernetHubRoutes(t *testing.T) {
	d := startDaemon(t, daemonOptions{})
	p := d.createProject("hub")
	base := "/v2/compute/projects/" + p + "/ethernet_hub/nodes"
	const route = "/v2/compute/projects/{project_id}/ethernet_hub/nodes"

	o := d.do("POST", base, `{"name": "HUB1"}`).expect(t, 201, route).object(t)
	keys(t, o, "name", "node_id", "ports_mapping", "project_id", "status")
	pm := ports(t, o["ports_mapping"])
	if o["status"] != "started" || len(pm) != 8 || !jsonEqual(t, pm[3], `{"name": "Ethernet3", "port_number": 3}`) {
		t.Fatalf("created hub %v", o)
	}
	hub := base + "/" + o["node_id"].(string)
	d.do("GET", hub, "").expect(t, 200, route+"/{node_id}")
	u := d.do("PUT", hub, `{"name": "HUB2", "ports_mapping": [{"name": "x", "port_number": 4}, {"name": "y", "port_number": 0}]}`).
		expect(t, 200, route+"/{node_id}").object(t)
	if u["name"] != "HUB2" || !jsonEqual(t, u["ports_mapping"], `[{"name": "x", "port_number": 4}, {"name": "y", "port_number": 0}]`) {
		t.Fatalf("updated hub %v", u)
	}
	// A hub has no console: a console member is refused, its routes do
	// not exist.
	d.do("POST", base, `{"name": "HUB3", "console": 5000}`).expect(t, 400, "")
	d.do("PUT", hub, `{"console_type": "telnet"}`).expect(t, 400, "")
	d.do("GET", hub+"/console/ws", "").expect(t, 404, "")
	for _, op := range []string{"start", "stop", "suspend"} {
		d.do("POST", hub+"/"+op, "").expect(t, 204, "")
	}
	pa, pb := d.udpPort(p), d.udpPort(p)
	d.do("POST", hub+"/adapters/0/ports/4/nio", nioBody(pa, pb, "")).expect(t, 201, "")
	d.do("PUT", hub+"/adapters/0/ports/4/nio", nioBody(pa, pb, `,"suspend":true`)).expect(t, 201, "")
	d.do("DELETE", hub+"/adapters/0/ports/4/nio", "").expect(t, 204, "")
	d.do("DELETE", hub, "").expect(t, 204, "")
	d.do("GET", hub, "").expect(t, 404, "")
}

func TestCloudRoutes(t *testing.T) {
	d := startDaemon(t, daemonOptions{})
	p := d.createProject("cloud")
	base := "/v2/compute/projects/" + p + "/cloud/nodes"
	const route = "/v2/compute/projects/{project_id}/cloud/nodes"
	members := []string{"interfaces", "name", "node_directory", "node_id", "ports_mapping", "project_id",
		"remote_console_host", "remote_console_http_path", "remote_console_port", "remote_console_type", "status"}

	// GNS3's defaults: one ethernet port per host interface that is not
	// special, numbered from 0.
	o := d.do("POST", base, `{"name": "Cloud1"}`).expect(t, 201, route).object(t)
	keys(t, o, members...)
	if o["remote_console_host"] != "" || o["remote_console_port"] != float64(23) || o["remote_console_type"] != "none" ||
		o["remote_console_http_path"] != "/" || o["status"] != "started" {
		t.Fatalf("created cloud %v", o)
	}
	var plain []string
	for _, it := range ports(t, o["interfaces"]) {
		keys(t, it, "name", "special", "type")
		if it["special"] == false {
			plain = append(plain, it["name"].(string))
		}
	}
	if !slices.Contains(plain, "eth0") || slices.Contains(plain, "lo") {
		t.Fatalf("interfaces %v", o["interfaces"])
	}
	pm := ports(t, o["ports_mapping"])
	if len(pm) != len(plain) {
		t.Fatalf("default ports_mapping %v for the interfaces %v", pm, plain)
	}
	for i, port := range pm {
		if port["type"] != "ethernet" || port["port_number"] != float64(i) || port["interface"] != plain[i] || port["name"] != plain[i] {
			t.Fatalf("default port %d: %v (interfaces %v)", i, port, plain)
		}
	}
	cloud := base + "/" + o["node_id"].(string)
	d.do("GET", cloud, "").expect(t, 200, route+"/{node_id}")

	// Explicit ports of each type, the remote console, and the computed
	// members a client sends back.
	mapping := `[{"name": "tunnel", "port_number": 3, "type": "udp", "lport": 20999, "rhost": "127.0.0.1", "rport": 20998},
		{"name": "loopback", "port_number": 1, "type": "ethernet", "interface": "lo"}]`
	u := d.do("PUT", cloud, `{"name": "Cloud2", "remote_console_host": "10.0.0.1", "remote_console_port": 8080,
		"remote_console_type": "http", "remote_console_http_path": "/ui", "ports_mapping": `+mapping+`,
		"interfaces": [{"name": "eth0", "type": "ethernet", "special": false}], "node_directory": "/x", "status": "started"}`).
		expect(t, 200, route+"/{node_id}").object(t)
	keys(t, u, members...)
	if u["name"] != "Cloud2" || u["remote_console_host"] != "10.0.0.1" || u["remote_console_port"] != float64(8080) ||
		u["remote_console_type"] != "http" || u["remote_console_http_path"] != "/ui" || !jsonEqual(t, u["ports_mapping"], mapping) ||
		u["node_directory"] == "/x" {
		t.Fatalf("updated cloud %v", u)
	}
	created := d.do("POST", base, `{"name": "Cloud3", "ports_mapping": [{"name": "u", "port_number": 0, "type": "udp", "lport": 20997, "rhost": "localhost", "rport": 20996}]}`).
		expect(t, 201, route).object(t)
	if !jsonEqual(t, created["ports_mapping"], `[{"name": "u", "port_number": 0, "type": "udp", "lport": 20997, "rhost": "localhost", "rport": 20996}]`) {
		t.Fatalf("created cloud %v", created)
	}

	// 204 for start, stop and suspend; no reload, duplicate or console.
	for _, op := range []string{"start", "stop", "suspend"} {
		d.do("POST", cloud+"/"+op, "").expect(t, 204, route+"/{node_id}/"+op)
	}
	d.do("POST", cloud+"/start", "").expect(t, 204, "")
	for _, op := range []string{"reload", "duplicate"} {
		d.do("POST", cloud+"/"+op, "").expect(t, 404, "")
	}
	d.do("GET", cloud+"/console/ws", "").expect(t, 404, "")
	pa, pb := d.udpPort(p), d.udpPort(p)
	d.do("POST", cloud+"/adapters/0/ports/3/nio", nioBody(pa, pb, "")).expect(t, 201, "")
	d.do("DELETE", cloud+"/adapters/0/ports/3/nio", "").expect(t, 204, "")
	d.do("DELETE", cloud, "").expect(t, 204, route+"/{node_id}")
	d.do("GET", cloud, "").expect(t, 404, "")
}

// TestDynamipsDevicesV1 drives GNS3 1.5's dynamips devices: a switch and a
// hub whose ports come with their links, seen from v2 too.
func TestDynamipsDevicesV1(t *testing.T) {
	d := startDaemon(t, daemonOptions{})
	p := d.createProject("devices")
	base := "/v1/projects/" + p + "/dynamips/devices"
	const route = "/v1/projects/{project_id}/dynamips/devices"

	o := d.do("POST", base, `{"name": "SW1", "device_type": "ethernet_switch"}`).expect(t, 201, route).object(t)
	keys(t, o, "device_id", "name", "ports", "project_id")
	if o["name"] != "SW1" || o["project_id"] != p || !jsonEqual(t, o["ports"], `[]`) {
		t.Fatalf("created v1 switch %v", o)
	}
	id := o["device_id"].(string)
	sw := base + "/" + id
	d.do("GET", sw, "").expect(t, 200, route+"/{device_id}")

	// Port settings, merged port by port as 1.5 applies them.
	u := d.do("PUT", sw, `{"name": "SW2", "ports": [{"port": 1, "type": "access", "vlan": 10}]}`).expect(t, 200, route+"/{device_id}").object(t)
	if u["name"] != "SW2" || !jsonEqual(t, u["ports"], `[{"port": 1, "type": "access", "vlan": 10, "ethertype": ""}]`) {
		t.Fatalf("updated v1 switch %v", u)
	}
	u = d.do("PUT", sw, `{"ports": [{"port": 4, "type": "qinq", "vlan": 20, "ethertype": "0x9100"}]}`).expect(t, 200, "").object(t)
	if !jsonEqual(t, u["ports"], `[{"port": 1, "type": "access", "vlan": 10, "ethertype": ""}, {"port": 4, "type": "qinq", "vlan": 20, "ethertype": "0x9100"}]`) {
		t.Fatalf("merged v1 ports %v", u)
	}

	// A link makes its port, with the settings it brings.
	pa, pb := d.udpPort(p), d.udpPort(p)
	nio := fmt.Sprintf(`{"nio": {"type": "nio_udp", "lport": %d, "rhost": "127.0.0.1", "rport": %d}, "port_settings": {"type": "dot1q", "vlan": 1}}`, pa, pb)
	portRoute := route + "/{device_id}/ports/{port_number:\\d+}"
	r := d.do("POST", sw+"/ports/2/nio", nio).expect(t, 201, portRoute+"/nio").object(t)
	if !jsonEqual(t, r, fmt.Sprintf(`{"type": "nio_udp", "lport": %d, "rhost": "127.0.0.1", "rport": %d}`, pa, pb)) {
		t.Fatalf("v1 device NIO answered %v", r)
	}
	d.do("POST", sw+"/ports/2/start_capture", `{"capture_file_name": "dev.pcap", "data_link_type": "DLT_EN10MB"}`).expect(t, 200, portRoute+"/start_capture")
	d.do("POST", sw+"/ports/2/stop_capture", "").expect(t, 204, portRoute+"/stop_capture")
	d.do("DELETE", sw+"/ports/2/nio", "").expect(t, 204, portRoute+"/nio")
	// The v2 view of the same node: the ports as GNS3 2.2 names them.
	v2 := d.do("GET", "/v2/compute/projects/"+p+"/ethernet_switch/nodes/"+id, "").expect(t, 200, "").object(t)
	if !jsonEqual(t, v2["ports_mapping"], `[{"name": "Ethernet1", "port_number": 1, "type": "access", "vlan": 10},
		{"name": "Ethernet4", "port_number": 4, "type": "qinq", "vlan": 20, "ethertype": "0x9100"},
		{"name": "Ethernet2", "port_number": 2, "type": "dot1q", "vlan": 1}]`) {
		t.Fatalf("v2 view of the v1 switch %v", v2)
	}
	// Bad settings change nothing.
	d.do("POST", sw+"/ports/2/nio", strings.Replace(nio, `"vlan": 1}`, `"vlan": 0}`, 1)).expect(t, 400, "")
	d.do("PUT", sw, `{"ports": [{"port": 1, "type": "trunk", "vlan": 10}]}`).expect(t, 400, "")
	d.do("PUT", sw, `{"ports": [{"port": 1, "vlan": 10}]}`).expect(t, 400, "")

	// A hub: no ports until linked, no settings.
	h := d.do("POST", base, `{"name": "HUB1", "device_type": "ethernet_hub"}`).expect(t, 201, route).object(t)
	keys(t, h, "device_id", "name", "project_id")
	hub := base + "/" + h["device_id"].(string)
	hubNIO := fmt.Sprintf(`{"nio": {"type": "nio_udp", "lport": %d, "rhost": "127.0.0.1", "rport": %d}}`, pb, pa)
	d.do("POST", hub+"/ports/3/nio", strings.Replace(hubNIO, `}}`, `}, "port_settings": {"type": "access", "vlan": 1}}`, 1)).expect(t, 400, "")
	d.do("POST", hub+"/ports/3/nio", hubNIO).expect(t, 201, "")
	hv2 := d.do("GET", "/v2/compute/projects/"+p+"/ethernet_hub/nodes/"+h["device_id"].(string), "").expect(t, 200, "").object(t)
	if !jsonEqual(t, hv2["ports_mapping"], `[{"name": "Ethernet3", "port_number": 3}]`) {
		t.Fatalf("v2 view of the v1 hub %v", hv2)
	}
	d.do("PUT", hub, `{"name": "HUB2"}`).expect(t, 200, "")
	d.do("PUT", hub, `{"ports": [{"port": 1, "type": "access", "vlan": 1}]}`).expect(t, 400, "")

	// device_type: required, one of 1.5's; Frame Relay and ATM switches are
	// refused with the driver's reason.
	d.do("POST", base, `{"name": "X"}`).expect(t, 400, route)
	bad := d.do("POST", base, `{"name": "X", "device_type": "bogus"}`).expect(t, 409, route)
	if m := bad.object(t); m["message"] != "Unknown device type: bogus" {
		t.Fatalf("unknown device type answered %v", m)
	}
	for _, kind := range []string{"frame_relay_switch", "atm_switch"} {
		r := d.do("POST", base, `{"name": "X", "device_type": "`+kind+`"}`)
		checkErrorReply(t, r, 409)
		if want := unavailableReason(t, d, kind); r.object(t)["message"] != want {
			t.Fatalf("%s create answered %s, want the message %q", kind, r.Body, want)
		}
	}
	d.do("GET", base+"/"+unknownNode, "").expect(t, 404, "")

	d.do("DELETE", sw, "").expect(t, 204, route+"/{device_id}")
	d.do("DELETE", hub, "").expect(t, 204, "")
	d.do("GET", sw, "").expect(t, 404, "")
}

// TestCapabilitiesListRunnableKinds: node_types are the kinds this host
// runs, in the route table's order.
func TestCapabilitiesListRunnableKinds(t *testing.T) {
	d := startDaemon(t, daemonOptions{})
	caps := d.do("GET", "/v2/compute/capabilities", "").expect(t, 200, "/v2/compute/capabilities").object(t)
	keys(t, caps, "node_types", "platform", "version")
	if !jsonEqual(t, caps["node_types"], `["vpcs", "qemu", "ethernet_switch", "ethernet_hub", "cloud"]`) {
		t.Fatalf("node_types %v", caps["node_types"])
	}
}
