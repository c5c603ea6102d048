package api_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// waitAction reads a notification stream until an action arrives.
func waitAction(t *testing.T, next func() note, action string) note {
	t.Helper()
	for {
		if n := next(); n.Action == action {
			return n
		}
	}
}

// TestVPCSRoutesEndToEnd covers the node routes the lab tests do not: the
// startup script and a rename, v1 and v2 notifications of the node's life,
// hot NIO add and remove on running nodes, reload, suspend, duplicate, the
// console WebSocket and console reset, delete.
func TestVPCSRoutesEndToEnd(t *testing.T) {
	d := startDaemon(t, daemonOptions{})
	p := d.createProject("routes")
	v1 := openStream(t, d.URL+"/v1/projects/"+p+"/notifications")
	ws := dialWS(t, d, "", nil)
	next1 := func() note { return v1.event(10 * time.Second) }
	next2 := func() note { return ws.event(10 * time.Second) }

	// Create with a startup script: %h is the node's name.
	o := d.do("POST", "/v2/compute/projects/"+p+"/vpcs/nodes",
		`{"name": "PC1", "startup_script": "set pcname %h\nip 10.9.0.1/24\n", "console_type": "telnet"}`).
		expect(t, 201, "").object(t)
	keys(t, o, "command_line", "console", "console_type", "name", "node_directory", "node_id", "project_id", "status")
	a := vpcsNode{ID: o["node_id"].(string), Console: int(o["console"].(float64))}
	dir := o["node_directory"].(string)
	if want := filepath.Join(d.DataDir, "projects", p, "project-files", "vpcs", a.ID); dir != want {
		t.Fatalf("node_directory %q, want %q", dir, want)
	}
	script := func() string {
		b, err := os.ReadFile(filepath.Join(dir, "startup.vpc"))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if s := script(); s != "set pcname PC1\nip 10.9.0.1/24\n" {
		t.Fatalf("startup.vpc %q", s)
	}
	if n := waitAction(t, next1, "vm.created"); n.Event["vm_id"] != a.ID {
		t.Fatalf("vm.created %v", n.Event)
	}
	if n := waitAction(t, next2, "node.updated"); n.Event["node_id"] != a.ID || n.Event["status"] != "stopped" {
		t.Fatalf("node.updated after create %v", n.Event)
	}

	// Rename: the script's set pcname follows; v1 shows the script.
	d.do("PUT", nodePath(p, a), `{"name": "PC9"}`).expect(t, 200, "")
	if s := script(); s != "set pcname PC9\nip 10.9.0.1/24\n" {
		t.Fatalf("after rename startup.vpc %q", s)
	}
	v1vm := d.do("GET", "/v1/projects/"+p+"/vpcs/vms/"+a.ID, "").expect(t, 200, "").object(t)
	if v1vm["name"] != "PC9" || v1vm["startup_script_path"] != "startup.vpc" || !strings.Contains(v1vm["startup_script"].(string), "PC9") {
		t.Fatalf("v1 VM after rename %v", v1vm)
	}

	// Start both without links, then link them hot.
	b := d.createVPCS(p, "PC2")
	d.startNode(p, a)
	if n := waitAction(t, next1, "vm.started"); n.Event["vm_id"] != a.ID || n.Event["status"] != "started" {
		t.Fatalf("vm.started %v", n.Event)
	}
	d.startNode(p, b)
	ca, cb := dialConsole(t, a.Console), dialConsole(t, b.Console)
	// PC1 took 10.9.0.1 from its startup script.
	if out := ca.command("show ip", 10*time.Second); !strings.Contains(out, "10.9.0.1") {
		t.Fatalf("the startup script did not run:\n%s", out)
	}
	cb.setIP("10.9.0.2")
	pa, pb := d.link(p, a, b)
	if replies, _ := cb.ping("10.9.0.1", 2, 20*time.Second); replies != 2 {
		t.Fatalf("%d of 2 replies over a link added to running nodes", replies)
	}
	// Hot remove: no more replies; add again: replies.
	d.do("DELETE", nodePath(p, a)+"/adapters/0/ports/0/nio", "").expect(t, 204, "")
	if replies, _ := cb.ping("10.9.0.1 -w 300", 2, 20*time.Second); replies != 0 {
		t.Fatalf("%d replies after the NIO was removed", replies)
	}
	d.do("POST", nodePath(p, a)+"/adapters/0/ports/0/nio", nioBody(pa, pb, "")).expect(t, 201, "")
	if replies, _ := cb.ping("10.9.0.1", 2, 20*time.Second); replies != 2 {
		t.Fatalf("%d of 2 replies after the NIO came back", replies)
	}

	// The console over a WebSocket, and a reset that keeps it working.
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	wsURL := "ws" + strings.TrimPrefix(d.URL, "http") + nodePath(p, a) + "/console/ws"
	conn, _, err := websocket.Dial(ctx, wsURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	nc := websocket.NetConn(ctx, conn, websocket.MessageBinary)
	d.do("POST", nodePath(p, a)+"/console/reset", "").expect(t, 204, "")
	if _, err := nc.Write([]byte("show ip\n")); err != nil {
		t.Fatal(err)
	}
	var got strings.Builder
	buf := make([]byte, 4096)
	for !strings.Contains(got.String(), "10.9.0.1") {
		n, err := nc.Read(buf)
		if err != nil {
			t.Fatalf("console/ws: %v after %q", err, got.String())
		}
		got.Write(buf[:n])
	}
	conn.Close(websocket.StatusNormalClosure, "")
	// A stopped node has no console to open.
	d.do("POST", nodePath(p, b)+"/stop", "").expect(t, 204, "")
	d.do("GET", nodePath(p, b)+"/console/ws", "").expect(t, 409, "")

	// Reload restarts the process; suspend is a no-op that answers 204.
	before := d.do("GET", nodePath(p, a), "").expect(t, 200, "").object(t)["command_line"]
	run := runOf(t, before.(string))
	d.do("POST", nodePath(p, a)+"/reload", "").expect(t, 204, "")
	run.waitGone(t, 10*time.Second)
	if s := d.do("GET", nodePath(p, a), "").expect(t, 200, "").object(t)["status"]; s != "started" {
		t.Fatalf("after reload the node is %v", s)
	}
	d.do("POST", nodePath(p, a)+"/suspend", "").expect(t, 204, "")

	// Duplicate into an existing node: the files follow.
	c := d.createVPCS(p, "PC3")
	dup := d.do("POST", nodePath(p, a)+"/duplicate", `{"destination_node_id": "`+c.ID+`"}`).expect(t, 201, "").object(t)
	if dup["node_id"] != c.ID {
		t.Fatalf("duplicate answered %v", dup)
	}
	if b, err := os.ReadFile(filepath.Join(filepath.Dir(dir), c.ID, "startup.vpc")); err != nil || !strings.Contains(string(b), "10.9.0.1") {
		t.Fatalf("duplicated startup.vpc: %q %v", b, err)
	}
	d.do("POST", nodePath(p, a)+"/duplicate", `{"destination_node_id": "00000000-0000-4000-8000-000000000000"}`).expect(t, 404, "")

	// Delete a running node: its process and directory go, v2 hears it.
	d.do("DELETE", nodePath(p, a), "").expect(t, 204, "")
	waitAction(t, next2, "node.deleted")
	d.do("GET", nodePath(p, a), "").expect(t, 404, "")
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("the deleted node's directory: %v", err)
	}
	// Stopping a node is a vm.stopped on v1.
	d.startNode(p, b)
	d.do("POST", nodePath(p, b)+"/stop", "").expect(t, 204, "")
	waitAction(t, next1, "vm.stopped")
}
