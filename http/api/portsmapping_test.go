package api_test

import (
	"strconv"
	"strings"
	"testing"
)

// TestBadPortsMappingChangesNothing: a ports_mapping GNS3's schema refuses,
// or that the kind's driver refuses (duplicates, VLANs over 4094, interface
// names Linux does not take), is a 400 in GNS3's error shape, on create and
// on update, and nothing changes: no event, no file, the node as it was.
func TestBadPortsMappingChangesNothing(t *testing.T) {
	d := startDaemon(t, daemonOptions{})
	p := d.createProject("ports")
	v2 := "/v2/compute/projects/" + p
	sw := d.do("POST", v2+"/ethernet_switch/nodes", `{"name": "SW1"}`).expect(t, 201, "").object(t)
	hub := d.do("POST", v2+"/ethernet_hub/nodes", `{"name": "HUB1"}`).expect(t, 201, "").object(t)
	cloud := d.do("POST", v2+"/cloud/nodes", `{"name": "C1", "ports_mapping": [{"name": "u", "port_number": 0, "type": "udp", "lport": 20999, "rhost": "127.0.0.1", "rport": 20998}]}`).
		expect(t, 201, "").object(t)
	swPath := v2 + "/ethernet_switch/nodes/" + sw["node_id"].(string)
	hubPath := v2 + "/ethernet_hub/nodes/" + hub["node_id"].(string)
	cloudPath := v2 + "/cloud/nodes/" + cloud["node_id"].(string)
	devices := "/v1/projects/" + p + "/dynamips/devices"
	dev := d.do("POST", devices, `{"name": "SW2", "device_type": "ethernet_switch"}`).expect(t, 201, "").object(t)
	devPath := devices + "/" + dev["device_id"].(string)
	d.settle()
	before := snapshotState(t, d, p)
	nodesBefore := map[string]string{}
	for _, path := range []string{swPath, hubPath, cloudPath, devPath} {
		nodesBefore[path] = string(d.do("GET", path, "").expect(t, 200, "").Body)
	}

	access := func(n int, extra string) string {
		return `{"name": "e` + strconv.Itoa(n) + `", "port_number": ` + strconv.Itoa(n) + `, "type": "access", "vlan": 1` + extra + `}`
	}
	swBodies := map[string]string{
		"duplicate port numbers": `[` + access(1, "") + `, {"name": "other", "port_number": 1, "type": "access", "vlan": 1}]`,
		"duplicate port names":   `[{"name": "x", "port_number": 1, "type": "access", "vlan": 1}, {"name": "x", "port_number": 2, "type": "access", "vlan": 1}]`,
		"VLAN 0":                 `[{"name": "e0", "port_number": 0, "type": "access", "vlan": 0}]`,
		"VLAN 4095":              `[{"name": "e0", "port_number": 0, "type": "access", "vlan": 4095}]`,
		"unknown type":           `[{"name": "e0", "port_number": 0, "type": "trunk", "vlan": 1}]`,
		"bad ethertype":          `[{"name": "e0", "port_number": 0, "type": "qinq", "vlan": 1, "ethertype": "0x1234"}]`,
		"unknown member":         `[` + access(0, `, "speed": 1000`) + `]`,
		"wrong type":             `[{"name": "e0", "port_number": 0, "type": "access", "vlan": "1"}]`,
		"port number string":     `[{"name": "e0", "port_number": "0", "type": "access", "vlan": 1}]`,
		"negative port number":   `[{"name": "e0", "port_number": -1, "type": "access", "vlan": 1}]`,
		"missing name":           `[{"port_number": 0, "type": "access", "vlan": 1}]`,
		"empty name":             `[{"name": "", "port_number": 0, "type": "access", "vlan": 1}]`,
		"missing port_number":    `[{"name": "e0", "type": "access", "vlan": 1}]`,
		"missing type":           `[{"name": "e0", "port_number": 0, "vlan": 1}]`,
		"null item":              `[null]`,
		"item not an object":     `[1]`,
		"not an array":           `{"name": "e0"}`,
		"null":                   `null`,
	}
	hubBodies := map[string]string{
		"duplicate port numbers": `[{"name": "a", "port_number": 1}, {"name": "b", "port_number": 1}]`,
		"unknown member":         `[{"name": "a", "port_number": 1, "type": "access"}]`,
		"wrong type":             `[{"name": "a", "port_number": true}]`,
		"missing name":           `[{"port_number": 1}]`,
	}
	udp := func(extra string) string {
		return `[{"name": "u", "port_number": 0, "type": "udp", "lport": 20000, "rhost": "127.0.0.1", "rport": 20001` + extra + `}]`
	}
	tap := func(name string) string {
		return `[{"name": "t", "port_number": 0, "type": "tap", "interface": "` + name + `"}]`
	}
	cloudBodies := map[string]string{
		"TAP name with a slash":    tap("bad/name"),
		"TAP name too long":        tap("tap" + strings.Repeat("x", 20)),
		"empty interface":          tap(""),
		"missing interface":        `[{"name": "t", "port_number": 0, "type": "ethernet"}]`,
		"unknown type":             `[{"name": "t", "port_number": 0, "type": "vde", "interface": "eth0"}]`,
		"udp without rhost":        `[{"name": "u", "port_number": 0, "type": "udp", "lport": 20000, "rport": 20001}]`,
		"udp empty rhost":          `[{"name": "u", "port_number": 0, "type": "udp", "lport": 20000, "rhost": "", "rport": 20001}]`,
		"udp lport 0":              `[{"name": "u", "port_number": 0, "type": "udp", "lport": 0, "rhost": "h", "rport": 20001}]`,
		"udp rport 65536":          `[{"name": "u", "port_number": 0, "type": "udp", "lport": 20000, "rhost": "h", "rport": 65536}]`,
		"udp with an interface":    udp(`, "interface": "eth0"`),
		"tap with a tunnel":        `[{"name": "t", "port_number": 0, "type": "tap", "interface": "tap0", "lport": 20000}]`,
		"unknown member":           udp(`, "mtu": 1500`),
		"wrong type":               udp(`, "name": 7`),
		"duplicate port numbers":   `[{"name": "a", "port_number": 0, "type": "udp", "lport": 20000, "rhost": "h", "rport": 20001}, {"name": "b", "port_number": 0, "type": "udp", "lport": 20002, "rhost": "h", "rport": 20003}]`,
		"bad interfaces member":    udp(``) + `, "interfaces": [{"name": "eth0"}]`,
		"bad remote_console_type":  udp(``) + `, "remote_console_type": "rdp"`,
		"bad remote_console_port":  udp(``) + `, "remote_console_port": 0`,
		"remote_console_host null": udp(``) + `, "remote_console_host": null`,
	}

	type refused struct{ name, method, path, body string }
	var cases []refused
	for name, m := range swBodies {
		cases = append(cases,
			refused{"switch create " + name, "POST", v2 + "/ethernet_switch/nodes", `{"name": "X", "ports_mapping": ` + m + `}`},
			refused{"switch update " + name, "PUT", swPath, `{"ports_mapping": ` + m + `}`})
	}
	for name, m := range hubBodies {
		cases = append(cases,
			refused{"hub create " + name, "POST", v2 + "/ethernet_hub/nodes", `{"name": "X", "ports_mapping": ` + m + `}`},
			refused{"hub update " + name, "PUT", hubPath, `{"ports_mapping": ` + m + `}`})
	}
	for name, m := range cloudBodies {
		cases = append(cases,
			refused{"cloud create " + name, "POST", v2 + "/cloud/nodes", `{"name": "X", "ports_mapping": ` + m + `}`},
			refused{"cloud update " + name, "PUT", cloudPath, `{"ports_mapping": ` + m + `}`})
	}
	cases = append(cases,
		refused{"switch create unknown member", "POST", v2 + "/ethernet_switch/nodes", `{"name": "X", "vlans": []}`},
		refused{"switch create bad console_type", "POST", v2 + "/ethernet_switch/nodes", `{"name": "X", "console_type": "vnc"}`},
		refused{"switch update null name", "PUT", swPath, `{"name": null}`},
		refused{"switch update bad status", "PUT", swPath, `{"status": "paused"}`},
		refused{"switch update bad node_id", "PUT", swPath, `{"node_id": "x"}`},
		refused{"hub create without a name", "POST", v2 + "/ethernet_hub/nodes", `{"ports_mapping": []}`},
		refused{"v1 device port 0", "PUT", devPath, `{"ports": [{"port": 0, "type": "access", "vlan": 1}]}`},
		refused{"v1 device VLAN 4095", "PUT", devPath, `{"ports": [{"port": 1, "type": "access", "vlan": 4095}]}`},
		refused{"v1 device unknown member", "PUT", devPath, `{"ports": [{"port": 1, "type": "access", "vlan": 1, "x": 1}]}`},
		refused{"v1 device create unknown member", "POST", devices, `{"name": "X", "device_type": "ethernet_switch", "ports": []}`},
		refused{"v1 device NIO without nio", "POST", devPath + "/ports/1/nio", `{"port_settings": {"type": "access", "vlan": 1}}`},
		refused{"v1 device NIO VLAN 4095", "POST", devPath + "/ports/1/nio",
			`{"nio": {"type": "nio_udp", "lport": 20000, "rhost": "127.0.0.1", "rport": 20001}, "port_settings": {"type": "access", "vlan": 4095}}`},
	)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			checkErrorReply(t, d.do(c.method, c.path, c.body), 400)
		})
	}
	snapshotState(t, d, p).diff(t, before)
	for path, want := range nodesBefore {
		if got := string(d.do("GET", path, "").expect(t, 200, "").Body); got != want && !strings.Contains(path, "/cloud/") {
			t.Errorf("%s changed:\n%s\nto\n%s", path, want, got)
		}
	}
	// A cloud's interfaces are read at each rendering: compare the rest.
	got := d.do("GET", cloudPath, "").expect(t, 200, "").object(t)
	if !jsonEqual(t, got["ports_mapping"], `[{"name": "u", "port_number": 0, "type": "udp", "lport": 20999, "rhost": "127.0.0.1", "rport": 20998}]`) {
		t.Errorf("cloud changed: %v", got)
	}
}
