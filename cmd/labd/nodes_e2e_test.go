package main

import (
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// vpcsPIDs returns the pids of the vpcs processes working in dir.
func vpcsPIDs(t *testing.T, dir string) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cwd, err := os.Readlink("/proc/" + e.Name() + "/cwd")
		if err != nil || cwd != dir {
			continue
		}
		if cmd, err := os.ReadFile("/proc/" + e.Name() + "/cmdline"); err == nil && strings.Contains(string(cmd), "vpcs") {
			pids = append(pids, pid)
		}
	}
	return pids
}

func waitNoVPCS(t *testing.T, dir, why string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(vpcsPIDs(t, dir)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%s: vpcs processes %v still run in %s", why, vpcsPIDs(t, dir), dir)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startVPCS creates a project and a started VPCS node on d; it returns the
// node's URL and directory.
func startVPCS(t *testing.T, d *daemonProc) (string, string) {
	t.Helper()
	s, b, err := call("POST", d.URL+"/v2/compute/projects", `{"name": "lab"}`)
	if err != nil || s != 201 {
		t.Fatalf("create project: %d %s %v", s, b, err)
	}
	var p map[string]any
	json.Unmarshal(b, &p)
	base := d.URL + "/v2/compute/projects/" + p["project_id"].(string) + "/vpcs/nodes"
	if s, b, err = call("POST", base, `{"name": "PC1"}`); err != nil || s != 201 {
		t.Fatalf("create node: %d %s %v", s, b, err)
	}
	var n map[string]any
	json.Unmarshal(b, &n)
	url := base + "/" + n["node_id"].(string)
	if s, b, err = call("POST", url+"/start", ""); err != nil || s != 200 {
		t.Fatalf("start: %d %s %v", s, b, err)
	}
	return url, n["node_directory"].(string)
}

// A graceful stop stops the nodes, as GNS3 does, and records it: the next
// daemon shows them stopped.
func TestSIGTERMStopsNodes(t *testing.T) {
	dir := t.TempDir()
	d := startLabd(t, dir)
	url, nodeDir := startVPCS(t, d)
	if len(vpcsPIDs(t, nodeDir)) == 0 {
		t.Fatal("no vpcs process runs for the started node")
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	if code := d.wait(30 * time.Second); code != 0 {
		t.Fatalf("exit status %d", code)
	}
	waitNoVPCS(t, nodeDir, "after SIGTERM")
	d2 := startLabd(t, dir)
	var n map[string]any
	getJSON(t, strings.Replace(url, d.URL, d2.URL, 1), &n)
	if n["status"] != "stopped" {
		t.Fatalf("after a graceful stop and restart the node is %v", n["status"])
	}
}

// A crashed daemon leaves its nodes running (their own sessions); the next
// daemon recognises them by pid and start time, stops them and records why,
// so no process is orphaned and the node can start again.
func TestRestartAfterSIGKILLSettlesRunningNodes(t *testing.T) {
	dir := t.TempDir()
	d := startLabd(t, dir)
	url, nodeDir := startVPCS(t, d)
	d.cmd.Process.Kill()
	d.wait(10 * time.Second)
	if len(vpcsPIDs(t, nodeDir)) == 0 {
		t.Fatal("the node's process died with labd: it should run in its own session")
	}
	d2 := startLabd(t, dir)
	url2 := strings.Replace(url, d.URL, d2.URL, 1)
	deadline := time.Now().Add(15 * time.Second)
	for {
		var n map[string]any
		getJSON(t, url2, &n)
		if n["status"] == "stopped" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the restart the node is still %v", n["status"])
		}
		time.Sleep(100 * time.Millisecond)
	}
	waitNoVPCS(t, nodeDir, "after the restart")
	if s, b, err := call("POST", url2+"/start", ""); err != nil || s != 200 {
		t.Fatalf("start after the restart: %d %s %v", s, b, err)
	}
	if len(vpcsPIDs(t, nodeDir)) == 0 {
		t.Fatal("no vpcs after the new start")
	}
}
