package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"labd/actors/actorstest"
)

// These tests run the real labd binary, built from this tree (with the
// race detector when the tests run with it).

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func labdBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "labd-e2e-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "labd")
		args := []string{"build", "-o", binPath}
		if raceEnabled {
			args = append(args, "-race")
		}
		out, err := exec.Command("go", append(args, ".")...).CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// daemonProc is a running labd.
type daemonProc struct {
	t    *testing.T
	cmd  *exec.Cmd
	URL  string
	mu   sync.Mutex
	logs []string
	done chan struct{} // closed when the process has exited
	err  error         // its exit status, once done
}

var servingLine = regexp.MustCompile(`msg="labd is serving" addr=(\S+)`)

// startLabd starts labd serve on dataDir with a free API port and waits
// until it serves.
func startLabd(t *testing.T, dataDir string, extra ...string) *daemonProc {
	t.Helper()
	// labd, as root, runs its nodes as the node user, who must reach
	// them.
	actorstest.Reachable(t, dataDir)
	// Ranges of their own, so that nodes of daemons of other test packages
	// running at the same time do not race for the same ports; a later flag
	// wins.
	args := append([]string{"serve", "--data-dir", dataDir, "--port", "0", "--compute-id", "e2e",
		"--console-port-range", "15000-15999", "--udp-port-range", "16000-16999"}, extra...)
	cmd := exec.Command(labdBinary(t), args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &daemonProc{t: t, cmd: cmd, done: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.logs = append(p.logs, line)
			p.mu.Unlock()
			if m := servingLine.FindStringSubmatch(line); m != nil {
				addr <- m[1]
			}
		}
		io.Copy(io.Discard, stderr)
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		// A graceful stop first: labd stops its nodes' processes, which
		// run in sessions of their own and would outlive a SIGKILL.
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("labd log:\n%s", strings.Join(p.log(), "\n"))
		}
	})
	select {
	case a := <-addr:
		p.URL = "http://" + a
	case <-p.done:
		t.Fatalf("labd exited before serving: %v\n%s", p.err, strings.Join(p.log(), "\n"))
	case <-time.After(60 * time.Second):
		t.Fatalf("labd did not serve within 60s\n%s", strings.Join(p.log(), "\n"))
	}
	return p
}

func (p *daemonProc) log() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.logs)
}

// wait waits for the process to exit and returns its exit code.
func (p *daemonProc) wait(within time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(within):
		p.t.Fatalf("labd did not exit within %v", within)
	}
	if p.err == nil {
		return 0
	}
	if ee, ok := p.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	p.t.Fatalf("labd: %v", p.err)
	return -1
}

var httpClient = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 32}}

func call(method, url, body string) (int, []byte, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	status, b, err := call("GET", url, "")
	if err != nil || status != 200 {
		t.Fatalf("GET %s: %d %s %v", url, status, b, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

// acked is what a client was told had happened.
type acked struct {
	project map[string]any // the v2 JSON of the creation
	v1      map[string]any // the v1 JSON after the rename
	ports   []float64
	// renaming is the name of a rename sent but not acknowledged when
	// the daemon died: it may or may not have landed.
	renaming string
}

// The durability acceptance test: twenty clients create projects (each
// then renamed and given a UDP port) against the real daemon; it is killed
// with SIGKILL while they are still at it, restarted on the same data
// directory, and every acknowledged request must be there, with identical
// fields and the same port allocations.
func TestDurabilityAcrossSIGKILL(t *testing.T) {
	dataDir := t.TempDir()
	d := startLabd(t, dataDir)

	const clients, target = 20, 200
	var mu sync.Mutex
	got := map[string]*acked{}
	completed := 0
	killed := make(chan struct{})
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-killed:
					return
				default:
				}
				id := uuid.NewString()
				body := fmt.Sprintf(`{"name": "c%d-p%d", "project_id": %q, "variables": [{"name": "client", "value": "%d"}]}`, c, i, id, c)
				status, b, err := call("POST", d.URL+"/v2/compute/projects", body)
				if err != nil || status != 201 {
					return // the daemon died under us
				}
				a := &acked{}
				json.Unmarshal(b, &a.project)
				mu.Lock()
				got[id] = a
				mu.Unlock()
				rename := fmt.Sprintf("renamed c%d-p%d", c, i)
				mu.Lock()
				a.renaming = rename
				mu.Unlock()
				status, b, err = call("PUT", d.URL+"/v1/projects/"+id, fmt.Sprintf(`{"name": %q}`, rename))
				if err != nil || status != 200 {
					return
				}
				var v1 map[string]any
				json.Unmarshal(b, &v1)
				mu.Lock()
				a.v1 = v1
				mu.Unlock()
				status, b, err = call("POST", d.URL+"/v2/compute/projects/"+id+"/ports/udp", "")
				if err != nil || status != 201 {
					return
				}
				var port map[string]float64
				json.Unmarshal(b, &port)
				mu.Lock()
				a.ports = append(a.ports, port["udp_port"])
				completed++
				n := completed
				mu.Unlock()
				if n == target {
					// Kill while the other clients are mid-request.
					d.cmd.Process.Signal(syscall.SIGKILL)
					close(killed)
				}
			}
		})
	}
	wg.Wait()
	if code := d.wait(10 * time.Second); code != -1 && d.err == nil {
		t.Fatalf("labd exited %d, want death by SIGKILL", code)
	}
	mu.Lock()
	defer mu.Unlock()
	if completed < target {
		t.Fatalf("only %d projects completed before the kill", completed)
	}

	d2 := startLabd(t, dataDir)
	var v2list []map[string]any
	getJSON(t, d2.URL+"/v2/compute/projects", &v2list)
	byID := map[string]map[string]any{}
	for _, p := range v2list {
		byID[p["project_id"].(string)] = p
	}
	var wantPorts []float64
	for id, a := range got {
		p, ok := byID[id]
		if !ok {
			t.Fatalf("acknowledged project %s is missing after the restart", id)
		}
		if a.v1 != nil {
			var v1 map[string]any
			getJSON(t, d2.URL+"/v1/projects/"+id, &v1)
			if !equalJSON(v1, a.v1) {
				t.Fatalf("project %s after restart: %v, acknowledged %v", id, v1, a.v1)
			}
			// The v2 view is the creation plus the rename.
			want := map[string]any{"project_id": id, "name": a.v1["name"], "variables": a.project["variables"]}
			if !equalJSON(p, want) {
				t.Fatalf("project %s (v2) after restart: %v, want %v", id, p, want)
			}
		} else {
			// Only the creation was acknowledged; the rename in flight
			// may have landed too.
			landed := map[string]any{"project_id": id, "name": a.renaming, "variables": a.project["variables"]}
			if !equalJSON(p, a.project) && !equalJSON(p, landed) {
				t.Fatalf("project %s after restart: %v, acknowledged %v", id, p, a.project)
			}
		}
		wantPorts = append(wantPorts, a.ports...)
	}
	// Unacknowledged requests may or may not have landed; acknowledged
	// ports must all be held, and nothing beyond the projects' own.
	var ports struct {
		UDPPorts []float64 `json:"udp_ports"`
	}
	getJSON(t, d2.URL+"/v2/compute/network/ports", &ports)
	for _, p := range wantPorts {
		if !slices.Contains(ports.UDPPorts, p) {
			t.Fatalf("acknowledged UDP port %v is not allocated after the restart", p)
		}
	}
	if len(ports.UDPPorts) > len(byID) {
		t.Fatalf("%d UDP ports allocated for %d projects", len(ports.UDPPorts), len(byID))
	}
	// A new allocation never hands out a port that is already held.
	newID := uuid.NewString()
	if s, b, _ := call("POST", d2.URL+"/v2/compute/projects", `{"name": "after", "project_id": "`+newID+`"}`); s != 201 {
		t.Fatalf("create after restart: %d %s", s, b)
	}
	s, b, _ := call("POST", d2.URL+"/v2/compute/projects/"+newID+"/ports/udp", "")
	var port map[string]float64
	json.Unmarshal(b, &port)
	if s != 201 || slices.Contains(ports.UDPPorts, port["udp_port"]) {
		t.Fatalf("allocation after restart: %d %s (held: %d ports)", s, b, len(ports.UDPPorts))
	}
	t.Logf("%d projects acknowledged before SIGKILL, %d present after restart", len(got), len(byID))
}

func equalJSON(a, b map[string]any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

// SIGTERM and SIGINT stop labd cleanly, with exit status 0.
func TestSignalsShutDownCleanly(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			dir := t.TempDir()
			d := startLabd(t, dir)
			if s, _, err := call("POST", d.URL+"/v2/compute/projects", `{"name": "x"}`); err != nil || s != 201 {
				t.Fatalf("create: %d %v", s, err)
			}
			d.cmd.Process.Signal(sig)
			if code := d.wait(30 * time.Second); code != 0 {
				t.Fatalf("exit status %d after %v", code, sig)
			}
			if logs := d.log(); !strings.Contains(logs[len(logs)-1], `msg=stopped`) {
				t.Fatalf("last log line %q", logs[len(logs)-1])
			}
			// The lock is released: a new daemon starts on the same directory.
			d2 := startLabd(t, dir)
			var list []map[string]any
			getJSON(t, d2.URL+"/v2/compute/projects", &list)
			if len(list) != 1 {
				t.Fatalf("%d projects after a clean restart", len(list))
			}
		})
	}
}

// An allowed POST /v1/server/shutdown answers 201 and the daemon exits 0;
// a second daemon on the same data directory is refused while the first
// runs.
func TestServerShutdownRouteAndDataDirLock(t *testing.T) {
	dir := t.TempDir()
	d := startLabd(t, dir, "--allow-server-control")

	second := exec.Command(labdBinary(t), "serve", "--data-dir", dir, "--port", "0")
	out, err := second.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "in use by another labd") {
		t.Fatalf("a second daemon on the same directory: %v\n%s", err, out)
	}

	if s, b, err := call("POST", d.URL+"/v1/server/shutdown", "{}"); err != nil || s != 201 {
		t.Fatalf("shutdown: %d %s %v", s, b, err)
	}
	if code := d.wait(30 * time.Second); code != 0 {
		t.Fatalf("exit status %d after /v1/server/shutdown", code)
	}
}

func TestFlagsAreValidated(t *testing.T) {
	for _, args := range [][]string{
		{"--compute-id", "a.b"},
		{"--udp-port-range", "30000-20000"},
		{"--console-port-range", "x"},
		{"--log-level", "loud"},
		{"--nats-sync", "sometimes"},
		{"--port", "70000"},
		{"--nats-url", "nats://127.0.0.1:1", "--nats-listen", "127.0.0.1:0"},
	} {
		cmd := exec.Command(labdBinary(t), append([]string{"serve", "--data-dir", t.TempDir()}, args...)...)
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Fatalf("labd serve %v started", args)
		}
		if !strings.Contains(string(out), "labd:") {
			t.Fatalf("labd serve %v: no clear error: %s", args, out)
		}
	}
}

var natsURLLine = regexp.MustCompile(`msg="embedded NATS serves clients" url=(\S+)`)

// --nats-listen serves the embedded NATS over TCP; a second daemon with
// another compute id keeps its history there through --nats-url, and each
// replays only its own subjects.
func TestExternalNATSAndComputeIsolation(t *testing.T) {
	a := startLabd(t, t.TempDir(), "--nats-listen", "127.0.0.1:0")
	var natsURL string
	for _, l := range a.log() {
		if m := natsURLLine.FindStringSubmatch(l); m != nil {
			natsURL = m[1]
		}
	}
	if natsURL == "" {
		t.Fatal("the embedded NATS did not log its client URL")
	}
	bDir := t.TempDir()
	b := startLabd(t, bDir, "--nats-url", natsURL, "--compute-id", "other")
	if s, body, err := call("POST", b.URL+"/v2/compute/projects", `{"name": "on b"}`); err != nil || s != 201 {
		t.Fatalf("create on b: %d %s %v", s, body, err)
	}
	if s, body, err := call("POST", a.URL+"/v2/compute/projects", `{"name": "on a"}`); err != nil || s != 201 {
		t.Fatalf("create on a: %d %s %v", s, body, err)
	}
	b.cmd.Process.Signal(syscall.SIGTERM)
	if code := b.wait(30 * time.Second); code != 0 {
		t.Fatalf("b exited %d", code)
	}

	b2 := startLabd(t, bDir, "--nats-url", natsURL, "--compute-id", "other")
	for _, tc := range []struct {
		d    *daemonProc
		want string
	}{{a, "on a"}, {b2, "on b"}} {
		var list []map[string]any
		getJSON(t, tc.d.URL+"/v2/compute/projects", &list)
		if len(list) != 1 || list[0]["name"] != tc.want {
			t.Fatalf("%s sees %v, want only %q", tc.d.URL, list, tc.want)
		}
	}
}
