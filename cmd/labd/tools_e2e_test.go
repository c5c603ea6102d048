package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"labd/events"
	"labd/events/jetstream/jstest"
)

// toolProc is a history tool running as the real binary, its output read
// line by line.
type toolProc struct {
	cmd    *exec.Cmd
	stdout chan string // closed at end of output
	stderr chan string
	waited bool
}

func startTool(t *testing.T, args ...string) *toolProc {
	t.Helper()
	cmd := exec.Command(labdBinary(t), args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &toolProc{cmd: cmd, stdout: make(chan string, 1024), stderr: make(chan string, 1024)}
	for _, pipe := range []struct {
		sc *bufio.Scanner
		ch chan string
	}{{bufio.NewScanner(stdout), p.stdout}, {bufio.NewScanner(stderr), p.stderr}} {
		go func() {
			defer close(pipe.ch)
			for pipe.sc.Scan() {
				pipe.ch <- pipe.sc.Text()
			}
		}()
	}
	t.Cleanup(func() {
		if !p.waited {
			cmd.Process.Kill()
			p.wait(t)
		}
	})
	return p
}

// next returns the next line of ch that contains want, failing after a
// generous deadline or at the end of the output.
func nextLine(t *testing.T, ch chan string, want string) string {
	t.Helper()
	timeout := time.After(60 * time.Second)
	for {
		select {
		case line, ok := <-ch:
			if !ok {
				t.Fatalf("the tool's output ended without a line containing %q", want)
			}
			if strings.Contains(line, want) {
				return line
			}
		case <-timeout:
			t.Fatalf("no line containing %q within 60s", want)
		}
	}
}

// wait drains the output and waits for the exit; it returns the exit code.
func (p *toolProc) wait(t *testing.T) int {
	t.Helper()
	for range p.stdout {
	}
	for range p.stderr {
	}
	p.waited = true
	err := p.cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("%v: %v", p.cmd.Args, err)
	}
	return 0
}

// runBinary runs the binary to its end.
func runBinary(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(labdBinary(t), args...)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("%v: %v", args, err)
	}
	return out.String(), errOut.String(), code
}

// The history tools as an operator runs them, on a real daemon's history:
// online through --nats-url while it runs (offline is refused then),
// offline on its data directory once it has stopped.
func TestToolsThroughTheBinary(t *testing.T) {
	dir := t.TempDir()
	d := startLabd(t, dir, "--nats-listen", "127.0.0.1:0")
	var natsURL string
	for _, l := range d.log() {
		if m := natsURLLine.FindStringSubmatch(l); m != nil {
			natsURL = m[1]
		}
	}
	if natsURL == "" {
		t.Fatal("the embedded NATS did not log its client URL")
	}
	online := []string{"--nats-url", natsURL, "--compute-id", "e2e"}
	offline := []string{"--data-dir", dir, "--compute-id", "e2e"}

	_, stderr, code := runBinary(t, append([]string{"replay"}, offline...)...)
	if code == 0 || !strings.Contains(stderr, "labd: "+dir+": labd is running on this data dir: use --nats-url") {
		t.Fatalf("offline replay while labd runs: exit %d, stderr %q", code, stderr)
	}

	tail := startTool(t, append([]string{"events", "tail", "--json"}, online...)...)
	nextLine(t, tail.stderr, "following labd.ev.e2e.>")

	// A project with a VPCS node, started then stopped, through the API.
	s, b, err := call("POST", d.URL+"/v2/compute/projects", `{"name": "toolslab"}`)
	if err != nil || s != 201 {
		t.Fatalf("create project: %d %s %v", s, b, err)
	}
	var p map[string]any
	json.Unmarshal(b, &p)
	projectID := p["project_id"].(string)
	nodes := d.URL + "/v2/compute/projects/" + projectID + "/vpcs/nodes"
	if s, b, err = call("POST", nodes, `{"name": "PC1"}`); err != nil || s != 201 {
		t.Fatalf("create node: %d %s %v", s, b, err)
	}
	var n map[string]any
	json.Unmarshal(b, &n)
	nodeID := n["node_id"].(string)
	for _, op := range []string{"start", "stop"} {
		if s, b, err = call("POST", nodes+"/"+nodeID+"/"+op, ""); err != nil || s/100 != 2 {
			t.Fatalf("%s: %d %s %v", op, s, b, err)
		}
	}

	var startedLine eventJSON
	if err := json.Unmarshal([]byte(nextLine(t, tail.stdout, `"node.started"`)), &startedLine); err != nil {
		t.Fatal(err)
	}
	if startedLine.ProjectID != projectID || startedLine.NodeID != nodeID || !strings.Contains(string(startedLine.Data), `"pid":`) {
		t.Fatalf("tail's node.started line: %+v", startedLine)
	}
	nextLine(t, tail.stdout, `"node.stopped"`)
	tail.cmd.Process.Signal(syscall.SIGINT)
	if code := tail.wait(t); code != 0 {
		t.Fatalf("events tail exited %d after SIGINT", code)
	}

	out, stderr, code := runBinary(t, append([]string{"audit", "--json", "--node", nodeID}, online...)...)
	if code != 0 {
		t.Fatalf("audit: exit %d: %s", code, stderr)
	}
	var types []string
	for line := range strings.Lines(out) {
		var l eventJSON
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		types = append(types, l.Type)
	}
	if got := strings.Join(types, " "); got != "node.created node.started node.operation_ended node.stopped node.operation_ended" {
		t.Fatalf("audit --node: %s", got)
	}

	out, stderr, code = runBinary(t, append([]string{"replay"}, online...)...)
	if code != 0 || !strings.Contains(out, "toolslab") || !strings.Contains(out, "PC1") || !strings.Contains(out, "stopped") {
		t.Fatalf("online replay: exit %d\n%s%s", code, out, stderr)
	}

	d.cmd.Process.Signal(syscall.SIGTERM)
	if code := d.wait(30 * time.Second); code != 0 {
		t.Fatalf("labd exited %d", code)
	}

	// Offline now: the daemon's whole history (its shutdown included)
	// verifies, and replays to the moment the node was running.
	out, stderr, code = runBinary(t, append([]string{"audit", "--verify"}, offline...)...)
	if code != 0 || !strings.Contains(out, "verify: OK (") {
		t.Fatalf("audit --verify: exit %d\n%s%s", code, out, stderr)
	}
	out, stderr, code = runBinary(t, append([]string{"replay", "--json", "--at", itoa(startedLine.Seq)}, offline...)...)
	if code != 0 {
		t.Fatalf("replay --at: exit %d: %s", code, stderr)
	}
	var sum struct {
		Seq   uint64
		Nodes []struct {
			ID      string `json:"node_id"`
			Status  string
			Process *struct{ PID int }
		}
	}
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatal(err)
	}
	if sum.Seq != startedLine.Seq || len(sum.Nodes) != 1 || sum.Nodes[0].Status != "running" || sum.Nodes[0].Process == nil || sum.Nodes[0].Process.PID == 0 {
		t.Fatalf("replay --at %d: %s", startedLine.Seq, out)
	}

	// A history the fold refuses fails verify, with exit status 1.
	env := jstest.Start(t, jstest.Options{Dir: filepath.Join(dir, "nats"), SyncAlways: true})
	orphan, err := env.Store.Append(t.Context(), events.NodeSubject("e2e", "no-project", "n"), 0, "orphan",
		events.New(time.Now(), "no-project", "n", events.NodeCreated{Kind: "vpcs", Name: "orphan"}))
	if err != nil {
		t.Fatal(err)
	}
	env.Stop()
	out, stderr, code = runBinary(t, append([]string{"audit", "--verify"}, offline...)...)
	if code != 1 || !strings.Contains(out, "problem: sequence "+itoa(orphan)+" (node.created") ||
		!strings.Contains(stderr, "labd: verify: 1 problem in the history of compute e2e") {
		t.Fatalf("audit --verify of a broken history: exit %d\n%s%s", code, out, stderr)
	}

	if _, stderr, code = runBinary(t, "audit", "--since", "yesterday"); code == 0 || !strings.Contains(stderr, "labd: --since") {
		t.Fatalf("audit --since yesterday: exit %d, %q", code, stderr)
	}
}
