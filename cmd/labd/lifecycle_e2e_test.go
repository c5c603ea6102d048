package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
)

// novaCall is a Nova request with a token (labd on loopback takes any).
func novaCall(t *testing.T, method, url, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Auth-Token", "e2e")
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return resp.StatusCode, b
}

// haltDataDir returns a data directory whose image store holds
// testdata/images/halt.img, a guest that ignores the power button.
func haltDataDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	images := filepath.Join(dir, "images", "QEMU")
	if err := os.MkdirAll(images, 0o755); err != nil {
		t.Fatal(err)
	}
	img, err := os.ReadFile(filepath.Join("..", "..", "testdata", "images", "halt.img"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(images, "halt.img"), img, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// alive reports whether pid runs (a zombie does not).
func alive(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// novaServer is the part of a Nova server the test reads.
type novaServer struct {
	Status     string  `json:"status"`
	VMState    string  `json:"OS-EXT-STS:vm_state"`
	TaskState  *string `json:"OS-EXT-STS:task_state"`
	PowerState int     `json:"OS-EXT-STS:power_state"`
}

func getServer(t *testing.T, url string) novaServer {
	t.Helper()
	status, b := novaCall(t, "GET", url, "")
	if status != 200 {
		t.Fatalf("GET %s: %d %s", url, status, b)
	}
	var out struct {
		Server novaServer `json:"server"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("GET %s: %v: %s", url, err, b)
	}
	return out.Server
}

// waitServer polls a server until ok says so.
func waitServer(t *testing.T, url string, within time.Duration, what string, ok func(novaServer) bool) novaServer {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		s := getServer(t, url)
		if ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not %s within %v: %+v", what, within, s)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A labd killed with SIGKILL in the middle of a 30 s graceful stop of a
// guest that ignores the power button: the next labd adopts the QEMU and
// goes on waiting until the recorded deadline, then forces; the
// operation's record ends SUCCESS (never left STARTED), labd audit
// --operations shows it, and the history verifies.
func TestCrashDuringAGracefulStopEndsItsRecord(t *testing.T) {
	dir := haltDataDir(t)
	const timeout = 30 * time.Second
	flags := []string{"--nova-shutdown-timeout", timeout.String(), "--vnc-port-range", "15900-15999"}
	d := startLabd(t, dir, flags...)
	pid := uuid.NewString()
	mustCall(t, "POST", d.URL+"/v2/compute/projects", `{"name": "nova", "project_id": "`+pid+`"}`, 201)

	// The smallest flavor, and the server.
	status, b := novaCall(t, "GET", d.URL+"/v2/"+pid+"/flavors/detail", "")
	var flavors struct {
		Flavors []struct {
			ID  string `json:"id"`
			RAM int    `json:"ram"`
		} `json:"flavors"`
	}
	if status != 200 || json.Unmarshal(b, &flavors) != nil || len(flavors.Flavors) == 0 {
		t.Fatalf("flavors: %d %s", status, b)
	}
	flavor := flavors.Flavors[0]
	for _, f := range flavors.Flavors {
		if f.RAM < flavor.RAM {
			flavor = f
		}
	}
	status, b = novaCall(t, "POST", d.URL+"/v2/"+pid+"/servers",
		`{"server": {"name": "halt", "imageRef": "halt.img", "flavorRef": "`+flavor.ID+`", "networks": "none"}}`)
	var created struct {
		Server struct {
			ID string `json:"id"`
		} `json:"server"`
	}
	if status != 202 || json.Unmarshal(b, &created) != nil || created.Server.ID == "" {
		t.Fatalf("create: %d %s", status, b)
	}
	server := "/v2/" + pid + "/servers/" + created.Server.ID
	waitServer(t, d.URL+server, 60*time.Second, "ACTIVE", func(s novaServer) bool { return s.Status == "ACTIVE" })
	nodeDir := filepath.Join(dir, "projects", pid, "project-files", "qemu", created.Server.ID)
	qemuPIDs := processesIn(nodeDir, false)
	if len(qemuPIDs) == 0 {
		t.Fatal("no QEMU process runs in the server's directory")
	}

	stopAt := time.Now()
	if status, b := novaCall(t, "POST", d.URL+server+"/action", `{"os-stop": null}`); status != 202 || len(b) != 0 {
		t.Fatalf("os-stop: %d %q", status, b)
	}
	waitServer(t, d.URL+server, 10*time.Second, "powering-off", func(s novaServer) bool {
		return s.TaskState != nil && *s.TaskState == "powering-off"
	})
	time.Sleep(2 * time.Second) // well inside the wait
	d.cmd.Process.Kill()
	d.wait(10 * time.Second)
	for _, p := range qemuPIDs {
		if syscall.Kill(p, 0) != nil {
			t.Fatalf("QEMU %d died with labd", p)
		}
	}

	d2 := startLabd(t, dir, flags...)
	s := getServer(t, d2.URL+server)
	if s.Status != "ACTIVE" || s.TaskState == nil || *s.TaskState != "powering-off" {
		t.Fatalf("after the restart, before the deadline: %+v, want ACTIVE still powering-off", s)
	}
	s = waitServer(t, d2.URL+server, timeout+20*time.Second, "SHUTOFF", func(s novaServer) bool { return s.Status == "SHUTOFF" })
	took := time.Since(stopAt)
	if took < timeout-time.Second {
		t.Fatalf("stopped %v after the request, before its %v deadline", took, timeout)
	}
	if s.VMState != "stopped" || s.TaskState != nil || s.PowerState != 4 {
		t.Fatalf("stopped server: %+v", s)
	}
	t.Logf("the graceful stop ended %v after it was asked, across a SIGKILL of labd", took.Round(100*time.Millisecond))
	for _, p := range qemuPIDs {
		// Gone, or a zombie its new parent has not reaped yet.
		for end := time.Now().Add(5 * time.Second); alive(p); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(end) {
				t.Fatalf("QEMU %d still runs after the forced stop", p)
			}
		}
	}
	d2.cmd.Process.Signal(syscall.SIGTERM)
	d2.wait(30 * time.Second)

	out, err := exec.Command(labdBinary(t), "audit", "--operations", "--data-dir", dir, "--compute-id", "e2e", "--node", created.Server.ID).CombinedOutput()
	if err != nil {
		t.Fatalf("labd audit --operations: %v\n%s", err, out)
	}
	var stop string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) > 5 && f[4] == "stop" {
			stop = line
		}
		if len(f) > 5 && f[5] == "STARTED" {
			t.Errorf("an operation is left in flight: %s", line)
		}
	}
	if !strings.Contains(stop, "SUCCESS") || !strings.Contains(stop, "forced") {
		t.Fatalf("the stop's record is %q, want SUCCESS and forced; audit:\n%s", stop, out)
	}
	if out, err := exec.Command(labdBinary(t), "audit", "--verify", "--data-dir", dir, "--compute-id", "e2e").CombinedOutput(); err != nil ||
		!strings.Contains(string(out), "verify: OK") {
		t.Fatalf("labd audit --verify: %v\n%s", err, out)
	}
}

// One node, two APIs: a server made through Nova is an ordinary QEMU node
// to GNS3 (started, and announced on the notification stream as GNS3
// clients expect), and a node made through GNS3 is a server to Nova.
func TestNovaAndGNS3SeeOneNode(t *testing.T) {
	dir := haltDataDir(t)
	d := startLabd(t, dir, "--vnc-port-range", "15900-15999")
	pid := uuid.NewString()
	mustCall(t, "POST", d.URL+"/v2/compute/projects", `{"name": "both", "project_id": "`+pid+`"}`, 201)

	// The project's GNS3 notification stream, from now on.
	resp, err := http.Get(d.URL + "/v2/compute/projects/" + pid + "/notifications")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("notifications: %v %v", resp, err)
	}
	defer resp.Body.Close()
	lines := make(chan string, 256)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<16), 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()

	status, b := novaCall(t, "POST", d.URL+"/v2/"+pid+"/servers", `{"server": {"name": "vm", "imageRef": "halt.img", "flavorRef": "42", "networks": "none"}}`)
	var created struct {
		Server struct {
			ID string `json:"id"`
		} `json:"server"`
	}
	if status != 202 || json.Unmarshal(b, &created) != nil {
		t.Fatalf("create: %d %s", status, b)
	}
	id := created.Server.ID
	server := d.URL + "/v2/" + pid + "/servers/" + id
	waitServer(t, server, 60*time.Second, "ACTIVE", func(s novaServer) bool { return s.Status == "ACTIVE" })
	var node map[string]any
	getJSON(t, d.URL+"/v2/compute/projects/"+pid+"/qemu/nodes/"+id, &node)
	if node["status"] != "started" || node["console_type"] != "vnc" || node["name"] != "vm" {
		t.Fatalf("GNS3 sees the Nova server as %v", node)
	}
	deadline := time.After(10 * time.Second)
	for seen := false; !seen; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("the notification stream ended")
			}
			seen = strings.Contains(l, `"action": "node.updated"`) && strings.Contains(l, id) && strings.Contains(l, `"status": "started"`) ||
				strings.Contains(l, `"action":"node.updated"`) && strings.Contains(l, id) && strings.Contains(l, `"status":"started"`)
		case <-deadline:
			t.Fatal("no node.updated notification says the Nova server started")
		}
	}

	// GNS3's stop of the server is Nova's SHUTOFF.
	mustCall(t, "POST", d.URL+"/v2/compute/projects/"+pid+"/qemu/nodes/"+id+"/stop", "", 204)
	if s := getServer(t, server); s.Status != "SHUTOFF" || s.VMState != "stopped" {
		t.Fatalf("after GNS3's stop Nova sees %+v", s)
	}

	// A VPCS made through GNS3 is a server; what VPCS cannot do is 501.
	b = mustCall(t, "POST", d.URL+"/v2/compute/projects/"+pid+"/vpcs/nodes", `{"name": "PC1"}`, 201)
	var pc map[string]any
	if err := json.Unmarshal(b, &pc); err != nil {
		t.Fatal(err)
	}
	pcID := pc["node_id"].(string)
	status, b = novaCall(t, "GET", d.URL+"/v2/"+pid+"/servers", "")
	if status != 200 || !strings.Contains(string(b), pcID) || !strings.Contains(string(b), id) {
		t.Fatalf("Nova's servers: %d %s", status, b)
	}
	if status, b := novaCall(t, "POST", d.URL+"/v2/"+pid+"/servers/"+pcID+"/action", `{"os-start": null}`); status != 202 {
		t.Fatalf("os-start of the VPCS: %d %s", status, b)
	}
	waitServer(t, d.URL+"/v2/"+pid+"/servers/"+pcID, 10*time.Second, "ACTIVE", func(s novaServer) bool { return s.Status == "ACTIVE" })
	getJSON(t, d.URL+"/v2/compute/projects/"+pid+"/vpcs/nodes/"+pcID, &pc)
	if pc["status"] != "started" {
		t.Fatalf("GNS3 sees the VPCS Nova started as %v", pc["status"])
	}
	if status, b := novaCall(t, "POST", d.URL+"/v2/"+pid+"/servers/"+pcID+"/action", `{"pause": null}`); status != 501 || !strings.Contains(string(b), "notImplemented") {
		t.Fatalf("pause of a VPCS: %d %s, want 501 notImplemented", status, b)
	}
}
