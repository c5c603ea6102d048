package main

import (
	"encoding/json"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// vpcsPIDs returns the pids of the processes working in a VPCS node's
// directory: vpcs and the helper it forks.
func vpcsPIDs(t *testing.T, dir string) []int {
	t.Helper()
	return processesIn(dir, false)
}

// processesIn returns, sorted, the live processes whose working directory
// is dir, or with tree anything under it too. Zombies are left out: they
// run nothing (this sandbox's init does not reap orphans).
func processesIn(dir string, tree bool) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cwd, err := os.Readlink("/proc/" + e.Name() + "/cwd")
		if err != nil || (cwd != dir && !(tree && strings.HasPrefix(cwd, dir+"/"))) {
			continue
		}
		if st, err := os.ReadFile("/proc/" + e.Name() + "/stat"); err == nil && !strings.Contains(string(st), ") Z ") {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
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
// daemon recognises them by pid and start time and adopts them: the same
// process, still started, its console served again. A process that died
// while no labd ran is recorded as stopped, and the node starts again.
func TestRestartAfterSIGKILLAdoptsRunningNodes(t *testing.T) {
	dir := t.TempDir()
	d := startLabd(t, dir)
	url, nodeDir := startVPCS(t, d)
	var before map[string]any
	getJSON(t, url, &before)
	pids := vpcsPIDs(t, nodeDir)
	d.cmd.Process.Kill()
	d.wait(10 * time.Second)
	if len(vpcsPIDs(t, nodeDir)) == 0 {
		t.Fatal("the node's process died with labd: it should run in its own session")
	}

	d2 := startLabd(t, dir)
	url2 := strings.Replace(url, d.URL, d2.URL, 1)
	var after map[string]any
	getJSON(t, url2, &after)
	if !equalJSON(before, after) {
		t.Fatalf("GET after the restart:\n%v\nbefore the crash:\n%v", after, before)
	}
	if got := vpcsPIDs(t, nodeDir); !slices.Equal(got, pids) {
		t.Fatalf("vpcs pids %v after the restart, %v before: not adopted", got, pids)
	}
	waitLog(t, d2, "adopted the node's process")
	conn, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(int(after["console"].(float64))), 5*time.Second)
	if err != nil {
		t.Fatalf("the adopted node's console: %v", err)
	}
	conn.Close()

	// Killed while no labd runs: the next one records it stopped.
	d2.cmd.Process.Kill()
	d2.wait(10 * time.Second)
	for _, pid := range vpcsPIDs(t, nodeDir) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	waitNoVPCS(t, nodeDir, "after killing the node")
	d3 := startLabd(t, dir)
	url3 := strings.Replace(url, d.URL, d3.URL, 1)
	deadline := time.Now().Add(15 * time.Second)
	for {
		var n map[string]any
		getJSON(t, url3, &n)
		if n["status"] == "stopped" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a node whose process died is still %v after the restart", n["status"])
		}
		time.Sleep(100 * time.Millisecond)
	}
	if s, b, err := call("POST", url3+"/start", ""); err != nil || s != 200 {
		t.Fatalf("start after the restart: %d %s %v", s, b, err)
	}
	if len(vpcsPIDs(t, nodeDir)) == 0 {
		t.Fatal("no vpcs after the new start")
	}
}

// With --keep-nodes a graceful stop leaves the nodes running, and the next
// labd adopts them.
func TestKeepNodesLeavesThemForTheNextLabd(t *testing.T) {
	dir := t.TempDir()
	d := startLabd(t, dir, "--keep-nodes")
	url, nodeDir := startVPCS(t, d)
	pids := vpcsPIDs(t, nodeDir)
	d.cmd.Process.Signal(syscall.SIGTERM)
	if code := d.wait(30 * time.Second); code != 0 {
		t.Fatalf("exit status %d", code)
	}
	if got := vpcsPIDs(t, nodeDir); !slices.Equal(got, pids) {
		t.Fatalf("after SIGTERM with --keep-nodes, vpcs pids %v, want %v still running", got, pids)
	}
	d2 := startLabd(t, dir)
	var n map[string]any
	getJSON(t, strings.Replace(url, d.URL, d2.URL, 1), &n)
	if n["status"] != "started" {
		t.Fatalf("after --keep-nodes and a restart the node is %v", n["status"])
	}
	waitLog(t, d2, "adopted the node's process")
	if got := vpcsPIDs(t, nodeDir); !slices.Equal(got, pids) {
		t.Fatalf("vpcs pids %v after the restart, want the kept %v", got, pids)
	}
}

// waitLog waits for a line of d's log containing want.
func waitLog(t *testing.T, d *daemonProc, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, l := range d.log() {
			if strings.Contains(l, want) {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no %q in the log:\n%s", want, strings.Join(d.log(), "\n"))
}
