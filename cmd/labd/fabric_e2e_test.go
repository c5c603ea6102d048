package main

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"labd/nio/niotest"
)

// The crash test of issue 11: a lab whose switches, hub and cloud live
// inside labd survives a kill -9 of labd. Four VPCS on two switches joined
// by a dot1q trunk (VLAN 10 and 20), a hub between a switch and one of the
// PCs, and a cloud whose TAP device reaches an address in a network
// namespace of the test. After the restart every node has the same id and
// the same ports, and the pings succeed again within 5 s; VLAN 20 still
// does not reach VLAN 10.
func TestCrashRebuildsSwitchesHubsAndClouds(t *testing.T) {
	dir := t.TempDir()
	t.Cleanup(func() { killProcessesUnder(dir) })
	ns := niotest.New(t, "10.0.0.100/24")
	tap := niotest.Name("ltap")
	t.Cleanup(func() { exec.Command("ip", "link", "del", tap).Run() })

	d := startLabd(t, dir)
	lab := buildFabricLab(t, d, tap)
	ns.Join(t, tap)
	lab.start(t)
	lab.checkPings(t, time.Now().Add(30*time.Second))
	before := lab.snapshot(t, d.URL)

	d.cmd.Process.Signal(syscall.SIGKILL)
	d.wait(30 * time.Second)
	if !niotest.LinkExists(tap) {
		t.Fatalf("the TAP device %s went with labd: it must outlive a crash", tap)
	}
	// The history of the in-process kinds keeps every invariant labd
	// audit checks (their ports, their links).
	if out, err := exec.Command(labdBinary(t), "audit", "--verify", "--data-dir", dir, "--compute-id", "e2e").CombinedOutput(); err != nil ||
		!strings.Contains(string(out), "verify: OK") {
		t.Fatalf("labd audit --verify: %v\n%s", err, out)
	}
	d2 := startLabd(t, dir)
	restarted := time.Now()
	if after := lab.snapshot(t, d2.URL); !slices.EqualFunc(after, before, equalJSON) {
		t.Fatalf("GETs after the restart differ:\n%v\nbefore:\n%v", after, before)
	}
	lab.dialConsoles(t)
	took := lab.checkPings(t, restarted.Add(5*time.Second))
	t.Logf("pings through the rebuilt switches, hub and cloud %v after labd served again", took.Sub(restarted).Round(time.Millisecond))

	// A stop of the cloud (its TAP labd created) removes the device.
	mustCall(t, "POST", d2.URL+lab.cloud+"/stop", "", 204)
	if niotest.LinkExists(tap) {
		t.Fatalf("%s, which labd created, is still there after the cloud stopped", tap)
	}
}

// fabricLab is the lab of the crash test.
type fabricLab struct {
	url      string // the daemon that serves it
	project  string
	nodes    []string // every node's path
	pcs      map[string]string
	consoles map[string]int
	vpcs     map[string]*guestConsole
	cloud    string
}

func buildFabricLab(t *testing.T, d *daemonProc, tap string) *fabricLab {
	t.Helper()
	var p map[string]any
	json.Unmarshal(mustCall(t, "POST", d.URL+"/v2/compute/projects", `{"name":"fabric"}`, 201), &p)
	lab := &fabricLab{url: d.URL, project: p["project_id"].(string), pcs: map[string]string{}, consoles: map[string]int{}}
	base := "/v2/compute/projects/" + lab.project
	create := func(kind, body string) string {
		var n map[string]any
		json.Unmarshal(mustCall(t, "POST", d.URL+base+"/"+kind+"/nodes", body, 201), &n)
		path := base + "/" + kind + "/nodes/" + n["node_id"].(string)
		lab.nodes = append(lab.nodes, path)
		if c, ok := n["console"].(float64); ok {
			lab.consoles[path] = int(c)
		}
		return path
	}
	port := func(n int, typ string, vlan int) string {
		return fmt.Sprintf(`{"name":"Ethernet%d","port_number":%d,"type":%q,"vlan":%d}`, n, n, typ, vlan)
	}
	ports := strings.Join([]string{port(0, "access", 10), port(1, "access", 20), port(5, "access", 10), port(7, "dot1q", 1)}, ",")
	sw1 := create("ethernet_switch", `{"name":"SW1","ports_mapping":[`+ports+`]}`)
	sw2 := create("ethernet_switch", `{"name":"SW2","ports_mapping":[`+ports+`]}`)
	hub := create("ethernet_hub", `{"name":"HUB"}`)
	lab.cloud = create("cloud", `{"name":"Cloud","ports_mapping":[{"name":"tap","port_number":0,"type":"tap","interface":"`+tap+`"}]}`)
	for i, name := range []string{"PC1", "PC2", "PC3", "PC4"} {
		lab.pcs[name] = create("vpcs", fmt.Sprintf(`{"name":%q,"startup_script":"ip 10.0.0.%d/24"}`, name, i+1))
	}
	link := func(a, pa, b, pb string) {
		var o map[string]any
		json.Unmarshal(mustCall(t, "POST", d.URL+base+"/ports/udp", "", 201), &o)
		ua := int(o["udp_port"].(float64))
		json.Unmarshal(mustCall(t, "POST", d.URL+base+"/ports/udp", "", 201), &o)
		ub := int(o["udp_port"].(float64))
		nio := func(l, r int) string {
			return fmt.Sprintf(`{"type":"nio_udp","lport":%d,"rhost":"127.0.0.1","rport":%d}`, l, r)
		}
		mustCall(t, "POST", d.URL+a+"/adapters/0/ports/"+pa+"/nio", nio(ua, ub), 201)
		mustCall(t, "POST", d.URL+b+"/adapters/0/ports/"+pb+"/nio", nio(ub, ua), 201)
	}
	link(lab.pcs["PC1"], "0", sw1, "0")
	link(lab.pcs["PC2"], "0", sw1, "1")
	link(lab.pcs["PC3"], "0", hub, "0")
	link(hub, "1", sw2, "0")
	link(lab.pcs["PC4"], "0", sw2, "1")
	link(sw1, "7", sw2, "7")
	link(lab.cloud, "0", sw1, "5")
	return lab
}

func (l *fabricLab) start(t *testing.T) {
	t.Helper()
	for _, name := range []string{"PC1", "PC2", "PC3", "PC4"} {
		mustCall(t, "POST", l.url+l.pcs[name]+"/start", "", 200)
	}
	l.dialConsoles(t)
}

func (l *fabricLab) dialConsoles(t *testing.T) {
	t.Helper()
	l.vpcs = map[string]*guestConsole{}
	for name, path := range l.pcs {
		l.vpcs[name] = dialGuestConsole(t, l.consoles[path])
	}
}

// checkPings pings, until deadline, PC3 (VLAN 10, behind the trunk and the
// hub) and the namespace (behind the cloud) from PC1, and PC4 from PC2
// (VLAN 20), and returns when all had their reply; then it checks that
// PC2 does not reach PC1.
func (l *fabricLab) checkPings(t *testing.T, deadline time.Time) (replied time.Time) {
	t.Helper()
	for _, p := range []struct{ from, to string }{{"PC1", "10.0.0.3"}, {"PC1", "10.0.0.100"}, {"PC2", "10.0.0.4"}} {
		if !l.ping(t, p.from, p.to, deadline) {
			t.Fatalf("%s got no reply from %s by the deadline; console:\n%s", p.from, p.to, l.vpcs[p.from].output())
		}
	}
	replied = time.Now()
	if l.ping(t, "PC2", "10.0.0.1", time.Now().Add(3*time.Second)) {
		t.Fatal("PC2 (VLAN 20) got a reply from PC1 (VLAN 10)")
	}
	return replied
}

// ping sends single pings from a PC until one gets its reply or deadline
// passes.
func (l *fabricLab) ping(t *testing.T, from, to string, deadline time.Time) bool {
	t.Helper()
	c := l.vpcs[from]
	for {
		mark := len(c.output())
		c.send(t, "ping "+to+" -c 1")
		wait := time.Now().Add(1500 * time.Millisecond)
		for time.Now().Before(wait) {
			// VPCS 0.5 answers "10.0.0.3 icmp_seq=1 ttl=64 time=0.220 ms".
			if out := c.output()[mark:]; strings.Contains(out, to+" icmp_seq=") && strings.Contains(out, " time=") {
				return true
			}
			time.Sleep(20 * time.Millisecond)
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// snapshot returns the GET of every node of the lab.
func (l *fabricLab) snapshot(t *testing.T, url string) []map[string]any {
	t.Helper()
	l.url = url
	var out []map[string]any
	for _, n := range l.nodes {
		var o map[string]any
		getJSON(t, url+n, &o)
		out = append(out, o)
	}
	return out
}
