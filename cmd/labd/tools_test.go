package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"labd/events"
	"labd/events/jetstream/jstest"
	"labd/replay"
)

// The history tools run as functions against real embedded JetStream
// servers holding histories appended here event by event; the binary test
// (tools_e2e_test.go) runs them against a real daemon.

const toolCompute = "tools"

var toolT0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

// toolHistory appends real events to a store, each aggregate at its
// version, one minute apart from toolT0 on.
type toolHistory struct {
	t        *testing.T
	store    events.Store
	versions map[string]uint64
	n        int
}

// appended is where an event landed and the time it carries.
type appended struct {
	seq uint64
	at  time.Time
}

func newToolHistory(t *testing.T, store events.Store) *toolHistory {
	return &toolHistory{t: t, store: store, versions: map[string]uint64{}}
}

// add appends d to the project's subject, or to the node's when nodeID is
// set. The store checks nothing but the expected version: illegal
// histories are written as easily as legal ones.
func (h *toolHistory) add(projectID, nodeID string, d events.Data) appended {
	h.t.Helper()
	subject := events.ProjectSubject(toolCompute, projectID)
	if nodeID != "" {
		subject = events.NodeSubject(toolCompute, projectID, nodeID)
	}
	h.n++
	at := toolT0.Add(time.Duration(h.n) * time.Minute)
	seq, err := h.store.Append(h.t.Context(), subject, h.versions[subject], uuid.NewString(), events.New(at, projectID, nodeID, d))
	if err != nil {
		h.t.Fatalf("append %s to %s: %v", d.EventType(), subject, err)
	}
	h.versions[subject] = seq
	return appended{seq: seq, at: at}
}

// offlineDataDir returns a data directory whose embedded store holds the
// history write appends, its server stopped as a stopped labd leaves it.
func offlineDataDir(t *testing.T, write func(h *toolHistory)) string {
	t.Helper()
	dir := t.TempDir()
	env := jstest.Start(t, jstest.Options{Dir: filepath.Join(dir, "nats"), SyncAlways: true})
	write(newToolHistory(t, env.Store))
	env.Stop()
	return dir
}

// onlineStore starts a store that serves NATS clients on loopback, as a
// daemon with --nats-listen does, and returns it with its client URL.
func onlineStore(t *testing.T) (*jstest.Env, string) {
	t.Helper()
	env := jstest.Start(t, jstest.Options{Listen: "127.0.0.1:0"})
	return env, env.Server.ClientURL()
}

type toolFunc func(ctx context.Context, args []string, stdout, stderr io.Writer) error

// runTool runs a tool as main's run would, and returns what it printed.
func runTool(t *testing.T, tool toolFunc, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	// A tool that should have returned but follows forever fails the
	// test instead of hanging it.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	err = tool(ctx, args, &out, &errOut)
	return out.String(), errOut.String(), err
}

func mustRunTool(t *testing.T, tool toolFunc, args ...string) string {
	t.Helper()
	out, errOut, err := runTool(t, tool, args...)
	if err != nil {
		t.Fatalf("%v: %v\nstdout:\n%s\nstderr:\n%s", args, err, out, errOut)
	}
	return out
}

func vpcsNode(console int) events.NodeCreated {
	return events.NodeCreated{Kind: "vpcs", Name: "PC-" + uuid.NewString()[:4], Console: console, ConsoleType: "telnet"}
}

func started(pid, nodePort, bridgePort int) events.NodeStarted {
	return events.NodeStarted{PID: pid, CommandLine: "vpcs", Tunnels: []events.Tunnel{{NodePort: nodePort, BridgePort: bridgePort}}}
}

func findNode(t *testing.T, sum replay.Summary, nodeID string) *replay.Node {
	t.Helper()
	for _, n := range sum.Nodes {
		if n.ID == nodeID {
			return n
		}
	}
	t.Fatalf("node %s not in the state: %+v", nodeID, sum.Nodes)
	return nil
}

// The acceptance test: labd replay --at shows the lab as it was at
// a past moment; a node's status is checked at three points, by sequence
// and by time, offline on a data directory.
func TestReplayAtThreePointsInTime(t *testing.T) {
	const p, n = "p-lab", "n-pc1"
	var created, start, linked, stop appended
	dir := offlineDataDir(t, func(h *toolHistory) {
		h.add(p, "", events.ProjectCreated{Name: "lab"})
		created = h.add(p, n, vpcsNode(5000))
		start = h.add(p, n, started(4242, 20010, 20011))
		linked = h.add(p, n, events.NIOAdded{Adapter: 0, Port: 0, NIO: events.NIO{Type: "nio_udp", LPort: 20100, RHost: "127.0.0.1", RPort: 20101}})
		stop = h.add(p, n, events.NodeStopped{Reason: events.StopRequested})
	})
	base := []string{"--data-dir", dir, "--compute-id", toolCompute}
	replayAt := func(at string) replay.Summary {
		t.Helper()
		args := append(slices.Clone(base), "--json")
		if at != "" {
			args = append(args, "--at", at)
		}
		var sum replay.Summary
		if err := json.Unmarshal([]byte(mustRunTool(t, replayTool, args...)), &sum); err != nil {
			t.Fatal(err)
		}
		return sum
	}
	type want struct {
		status replay.NodeStatus
		pid    int
		links  int
		seq    uint64
	}
	stoppedFresh := want{replay.NodeStopped, 0, 0, created.seq}
	running := want{replay.NodeRunning, 4242, 0, start.seq}
	stoppedLinked := want{replay.NodeStopped, 0, 1, stop.seq}
	for _, tc := range []struct {
		at   string
		want want
	}{
		{itoa(created.seq), stoppedFresh},
		{itoa(start.seq), running},
		{itoa(stop.seq), stoppedLinked},
		{created.at.Format(time.RFC3339), stoppedFresh},
		// Between two events: the state of the earlier one.
		{start.at.Add(30 * time.Second).Format(time.RFC3339), running},
		{stop.at.Format(time.RFC3339Nano), stoppedLinked},
		{"", stoppedLinked}, // the end of the history
	} {
		sum := replayAt(tc.at)
		node := findNode(t, sum, n)
		pid := 0
		if node.Process != nil {
			pid = node.Process.PID
		}
		got := want{node.Status, pid, len(node.Links), sum.Seq}
		if got != tc.want {
			t.Errorf("--at %q: node %+v, want %+v", tc.at, got, tc.want)
		}
	}
	if sum := replayAt(itoa(linked.seq)); len(findNode(t, sum, n).Links) != 1 || findNode(t, sum, n).Status != replay.NodeRunning {
		t.Errorf("--at %d: %+v", linked.seq, findNode(t, sum, n))
	}
	// Before the first event: nothing.
	if sum := replayAt(toolT0.Format(time.RFC3339)); len(sum.Projects) != 0 || len(sum.Nodes) != 0 || sum.Seq != 0 {
		t.Errorf("--at before the history: %+v", sum)
	}

	// The table says where it stopped and shows the running node's pid.
	out := mustRunTool(t, replayTool, append(base, "--at", itoa(start.seq))...)
	for _, want := range []string{"state at sequence " + itoa(start.seq) + " (--at " + itoa(start.seq) + ")", "p-lab", "lab", "opened",
		"n-pc1", "vpcs", "running", "5000", "4242"} {
		if !strings.Contains(out, want) {
			t.Errorf("table at %d lacks %q:\n%s", start.seq, want, out)
		}
	}
	out = mustRunTool(t, replayTool, base...)
	if !strings.Contains(out, "state at sequence "+itoa(stop.seq)+" (end of history)") || strings.Contains(out, "4242") {
		t.Errorf("table at the end:\n%s", out)
	}
	if _, _, err := runTool(t, replayTool, append(base, "--at", "yesterday")...); err == nil || !strings.Contains(err.Error(), "RFC 3339") {
		t.Errorf("--at yesterday: %v", err)
	}
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

// auditLines runs audit --json and decodes its lines.
func auditLines(t *testing.T, args ...string) []eventJSON {
	t.Helper()
	out := mustRunTool(t, auditTool, append(args, "--json")...)
	var lines []eventJSON
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var l eventJSON
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		lines = append(lines, l)
	}
	return lines
}

// eventJSON is a line of audit --json as a client decodes it.
type eventJSON struct {
	Seq       uint64          `json:"seq"`
	At        time.Time       `json:"at"`
	Type      string          `json:"type"`
	ProjectID string          `json:"project_id"`
	NodeID    string          `json:"node_id"`
	Data      json.RawMessage `json:"data"`
}

func seqs(lines []eventJSON) []uint64 {
	var s []uint64
	for _, l := range lines {
		s = append(s, l.Seq)
	}
	return s
}

// audit lists the timeline, filtered by project, node and time, as a table
// or as JSON lines, online through --nats-url.
func TestAuditFiltersByProjectNodeAndTime(t *testing.T) {
	env, url := onlineStore(t)
	h := newToolHistory(t, env.Store)
	var all, p1, n1, n2 []uint64
	track := func(a appended, lists ...*[]uint64) {
		all = append(all, a.seq)
		for _, l := range lists {
			*l = append(*l, a.seq)
		}
	}
	track(h.add("p1", "", events.ProjectCreated{Name: "one"}), &p1)
	track(h.add("p2", "", events.ProjectCreated{Name: "two"}))
	track(h.add("p1", "n1", vpcsNode(5000)), &p1, &n1)
	track(h.add("p2", "n2", vpcsNode(5001)), &n2)
	track(h.add("p1", "n1", started(4242, 20010, 20011)), &p1, &n1)
	track(h.add("p1", "", events.UDPPortAllocated{Port: 20000}), &p1)
	track(h.add("p1", "n1", events.NodeStopped{Reason: events.StopExited, Message: "bye"}), &p1, &n1)
	track(h.add("p2", "n2", events.NodeDeleted{}), &n2)
	// Another compute's events never show.
	if _, err := env.Store.Append(t.Context(), events.ProjectSubject("other", "p1"), 0, uuid.NewString(),
		events.New(toolT0, "p1", "", events.ProjectCreated{Name: "elsewhere"})); err != nil {
		t.Fatal(err)
	}

	base := []string{"--nats-url", url, "--compute-id", toolCompute}
	lines := auditLines(t, base...)
	if !slices.Equal(seqs(lines), all) {
		t.Fatalf("audit: sequences %v, want %v", seqs(lines), all)
	}
	first := lines[4]
	if first.Type != "node.started" || first.ProjectID != "p1" || first.NodeID != "n1" || !first.At.Equal(toolT0.Add(5*time.Minute)) {
		t.Fatalf("line %+v", first)
	}
	var d events.NodeStarted
	if err := json.Unmarshal(first.Data, &d); err != nil || d.PID != 4242 || d.Tunnels[0].BridgePort != 20011 {
		t.Fatalf("data %s: %+v %v", first.Data, d, err)
	}
	if lines[0].NodeID != "" || lines[0].ProjectID != "p1" {
		t.Fatalf("a project event: %+v", lines[0])
	}

	for _, tc := range []struct {
		args []string
		want []uint64
	}{
		{[]string{"--project", "p1"}, p1},
		{[]string{"--node", "n1"}, n1},
		{[]string{"--project", "p2", "--node", "n2"}, n2},
		{[]string{"--project", "p1", "--node", "n2"}, nil},
		{[]string{"--since", toolT0.Add(3 * time.Minute).Format(time.RFC3339), "--until", toolT0.Add(5 * time.Minute).Format(time.RFC3339)}, all[2:5]},
		{[]string{"--project", "p1", "--since", toolT0.Add(6 * time.Minute).Format(time.RFC3339)}, p1[3:]},
	} {
		got := seqs(auditLines(t, append(slices.Clone(base), tc.args...)...))
		if !slices.Equal(got, tc.want) {
			t.Errorf("audit %v: sequences %v, want %v", tc.args, got, tc.want)
		}
	}

	out := mustRunTool(t, auditTool, append(base, "--node", "n1")...)
	rows := strings.Split(strings.TrimSpace(out), "\n")
	if len(rows) != 1+len(n1) || !strings.HasPrefix(rows[0], "SEQ") {
		t.Fatalf("table:\n%s", out)
	}
	for _, want := range []string{"node.started", `"pid":4242`, "2026-11-22T10:05:00.000Z", "p1", "n1", `"message":"bye"`} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if _, _, err := runTool(t, auditTool, append(base, "--project", "p1.>")...); err == nil {
		t.Error("a project id with subject wildcards was accepted")
	}
}

// verifyOnline runs audit --verify against a store.
func verifyOnline(t *testing.T, url string) (string, error) {
	t.Helper()
	out, _, err := runTool(t, auditTool, "--nats-url", url, "--compute-id", toolCompute, "--verify")
	return out, err
}

func TestAuditVerifyPassesOnACleanHistory(t *testing.T) {
	env, url := onlineStore(t)
	h := newToolHistory(t, env.Store)
	h.add("p1", "", events.ProjectCreated{Name: "lab"})
	h.add("p1", "", events.UDPPortAllocated{Port: 20000})
	h.add("p1", "pc", vpcsNode(5000))
	h.add("p1", "pc", started(100, 20010, 20011))
	h.add("p1", "pc", events.NIOAdded{Adapter: 0, Port: 0, NIO: events.NIO{Type: "nio_udp", LPort: 20000, RHost: "127.0.0.1", RPort: 20001}})
	h.add("p1", "pc", events.CaptureStarted{Adapter: 0, Port: 0, File: "pc.pcap", LinkType: "DLT_EN10MB"})
	qemu := vpcsNode(5001)
	qemu.Kind, qemu.Properties = "qemu", json.RawMessage(`{"adapters": 3, "ram": 256}`)
	h.add("p1", "vm", qemu)
	h.add("p1", "vm", events.NIOAdded{Adapter: 2, Port: 0, NIO: events.NIO{Type: "nio_udp", LPort: 20001, RHost: "127.0.0.1", RPort: 20000}})
	h.add("p1", "vm", events.CaptureStarted{Adapter: 2, Port: 0, File: "vm.pcap"})
	h.add("p1", "vm", events.CaptureStopped{Adapter: 2, Port: 0})
	// A closed project whose node was closed first, as labd records it;
	// its console port is free again for p1's node below.
	h.add("p2", "", events.ProjectCreated{Name: "old"})
	h.add("p2", "x", vpcsNode(5002))
	h.add("p2", "x", events.NodeClosed{})
	h.add("p2", "", events.ProjectClosed{})
	h.add("p1", "pc2", vpcsNode(5002))

	out, err := verifyOnline(t, url)
	if err != nil {
		t.Fatalf("verify: %v\n%s", err, out)
	}
	for _, want := range []string{"verify: OK (15 events, 2 projects, 4 nodes)", "capture still running: node pc (project p1) port 0/0 to pc.pcap"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "vm.pcap") {
		t.Errorf("a stopped capture is listed as running:\n%s", out)
	}
}

// A violated invariant fails verify with a report that names it, for
// histories the store accepted: the store checks versions, not rules.
func TestAuditVerifyFailsOnABrokenHistory(t *testing.T) {
	for _, tc := range []struct {
		name    string
		history func(h *toolHistory) appended // returns the guilty event
		want    []string
	}{
		{"console port held twice", func(h *toolHistory) appended {
			h.add("p1", "", events.ProjectCreated{Name: "lab"})
			h.add("p1", "a", vpcsNode(5000))
			return h.add("p1", "b", vpcsNode(5000))
		}, []string{"console port 5000 held by node p1/a and p1/b", "node.created on labd.ev.tools.p1.node.b"}},
		{"UDP port of a project reused by a tunnel", func(h *toolHistory) appended {
			h.add("p1", "", events.ProjectCreated{Name: "lab"})
			h.add("p1", "", events.UDPPortAllocated{Port: 20010})
			h.add("p1", "a", vpcsNode(5000))
			return h.add("p1", "a", started(1, 20010, 20011))
		}, []string{"UDP port 20010 held by p1 and node p1/a"}},
		{"NIO on a port that does not exist", func(h *toolHistory) appended {
			h.add("p1", "", events.ProjectCreated{Name: "lab"})
			h.add("p1", "a", vpcsNode(5000))
			return h.add("p1", "a", events.NIOAdded{Adapter: 1, Port: 0, NIO: events.NIO{Type: "nio_udp", LPort: 20000, RHost: "127.0.0.1", RPort: 1}})
		}, []string{"NIO on port 1/0 of node a (project p1), a vpcs node without that port"}},
		{"NIO beyond a QEMU node's adapters", func(h *toolHistory) appended {
			h.add("p1", "", events.ProjectCreated{Name: "lab"})
			vm := vpcsNode(5000)
			vm.Kind = "qemu" // no properties: one adapter
			h.add("p1", "vm", vm)
			return h.add("p1", "vm", events.NIOAdded{Adapter: 1, Port: 0, NIO: events.NIO{Type: "nio_udp", LPort: 20000, RHost: "127.0.0.1", RPort: 1}})
		}, []string{"NIO on port 1/0 of node vm (project p1), a qemu node without that port (its ports: [[0 0]])"}},
		{"started twice", func(h *toolHistory) appended {
			h.add("p1", "", events.ProjectCreated{Name: "lab"})
			h.add("p1", "a", vpcsNode(5000))
			h.add("p1", "a", started(1, 20010, 20011))
			return h.add("p1", "a", started(2, 20012, 20013))
		}, []string{"node.started at sequence 4: the node is already running"}},
		{"stopped without running", func(h *toolHistory) appended {
			h.add("p1", "", events.ProjectCreated{Name: "lab"})
			h.add("p1", "a", vpcsNode(5000))
			return h.add("p1", "a", events.NodeStopped{Reason: events.StopExited})
		}, []string{"the node is not running"}},
		{"node created in a closed project", func(h *toolHistory) appended {
			h.add("p1", "", events.ProjectCreated{Name: "lab"})
			h.add("p1", "", events.ProjectClosed{})
			return h.add("p1", "a", vpcsNode(5000))
		}, []string{"created in project p1, which is not open"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, url := onlineStore(t)
			h := newToolHistory(t, env.Store)
			guilty := tc.history(h)
			h.add("p9", "", events.ProjectCreated{Name: "after"}) // the report says later events were not checked

			out, err := verifyOnline(t, url)
			if err == nil || !strings.Contains(err.Error(), "verify: 1 problem in") {
				t.Fatalf("verify: err %v, want a failure\n%s", err, out)
			}
			for _, want := range tc.want {
				if !strings.Contains(out, want) {
					t.Errorf("report lacks %q:\n%s", want, out)
				}
			}
			if !strings.Contains(out, "verify: FAILED, 1 problem ") {
				t.Errorf("report does not say it failed:\n%s", out)
			}
			foldErr := strings.Contains(out, "does not fold")
			if foldErr && !strings.Contains(out, "sequence "+itoa(guilty.seq)+" (") {
				t.Errorf("report does not name sequence %d:\n%s", guilty.seq, out)
			}
			if foldErr != strings.Contains(out, "events after it were not checked") {
				t.Errorf("report:\n%s", out)
			}
		})
	}
}

// verifyState checks the state itself, not only what the fold refuses:
// states built by hand break what replay.State.Apply would never let
// through.
func TestAuditVerifyStateInvariants(t *testing.T) {
	opened := func(id string, udp ...int) *replay.Project {
		return &replay.Project{ID: id, Name: id, Status: replay.StatusOpened, UDPPorts: udp}
	}
	node := func(project, id string, console int) *replay.Node {
		return &replay.Node{ProjectID: project, ID: id, Kind: "vpcs", Name: id, Console: console, Status: replay.NodeStopped}
	}
	running := func(n *replay.Node, ports ...int) *replay.Node {
		n.Status, n.Process = replay.NodeRunning, &events.NodeStarted{PID: 7, Tunnels: []events.Tunnel{{NodePort: ports[0], BridgePort: ports[1]}}}
		return n
	}
	link := func(n *replay.Node, adapter, port int, capture *events.CaptureStarted) *replay.Node {
		n.Links = append(n.Links, replay.Link{Adapter: adapter, Port: port, Capture: capture})
		return n
	}
	state := func(ps []*replay.Project, ns ...*replay.Node) *replay.State {
		s := replay.New()
		for _, p := range ps {
			s.Projects[p.ID] = p
		}
		for _, n := range ns {
			s.Nodes[replay.NodeKey(n.ProjectID, n.ID)] = n
		}
		return s
	}
	closed := opened("gone")
	closed.Status = replay.StatusClosed

	for _, tc := range []struct {
		name string
		s    *replay.State
		want string // "" for a clean state
	}{
		{"clean", state([]*replay.Project{opened("p", 20000)}, running(node("p", "a", 5000), 20010, 20011),
			link(node("p", "b", 5001), 0, 0, &events.CaptureStarted{File: "b.pcap"})), ""},
		{"console twice", state([]*replay.Project{opened("p")}, node("p", "a", 5000), node("p", "b", 5000)),
			"console port 5000 held twice: by node a (project p) and by node b (project p)"},
		{"a deleted node's console is free", state([]*replay.Project{opened("p")}, node("p", "a", 5000),
			func() *replay.Node { n := node("p", "b", 5000); n.Status = replay.NodeDeleted; return n }()), ""},
		{"project port used by a tunnel", state([]*replay.Project{opened("p", 20010)}, running(node("p", "a", 5000), 20010, 20011)),
			"UDP port 20010 held twice: by project p and by node a (project p) tunnel 0/0 (node end)"},
		{"two projects, one port", state([]*replay.Project{opened("p", 20000), opened("q", 20000)}),
			"UDP port 20000 held twice: by project p and by project q"},
		{"node of a closed project", state([]*replay.Project{closed}, node("gone", "a", 5000)),
			"node a (project gone) exists but its project is closed"},
		{"node of no project", state(nil, node("nowhere", "a", 5000)), "exists but its project is unknown"},
		{"NIO on a missing port", state([]*replay.Project{opened("p")}, link(node("p", "a", 5000), 0, 1, nil)),
			"NIO on port 0/1 of node a (project p)"},
		{"NIO on a deleted node", state([]*replay.Project{opened("p")},
			func() *replay.Node {
				n := link(node("p", "a", 5000), 0, 0, nil)
				n.Status = replay.NodeDeleted
				return n
			}()),
			"node a (project p) is deleted but has 1 NIOs"},
		{"capture on another port", state([]*replay.Project{opened("p")}, link(node("p", "a", 5000), 0, 0, &events.CaptureStarted{Adapter: 1})),
			"capture of port 1/0 recorded on port 0/0"},
		{"started without a process", state([]*replay.Project{opened("p")},
			func() *replay.Node { n := node("p", "a", 5000); n.Status = replay.NodeRunning; return n }()),
			"node a (project p) is running but has no process"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := verifyState(tc.s, 0, nil)
			if tc.want == "" {
				if len(rep.Problems) != 0 {
					t.Fatalf("problems in a clean state: %q", rep.Problems)
				}
				return
			}
			if len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0], tc.want) {
				t.Fatalf("problems %q, want one containing %q", rep.Problems, tc.want)
			}
		})
	}
}

// lockedBuffer is a bytes.Buffer a tool writes from its goroutine while
// the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// events tail prints what is appended after it started, and only that
// (or from --from on), until its context ends.
func TestTailPrintsEventsAppendedAfterItStarted(t *testing.T) {
	env, url := onlineStore(t)
	h := newToolHistory(t, env.Store)
	before := h.add("old", "", events.ProjectCreated{Name: "before"})

	tail := func(args ...string) (stdout, stderr *lockedBuffer, stop func() error) {
		stdout, stderr = &lockedBuffer{}, &lockedBuffer{}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() {
			done <- tailTool(ctx, append([]string{"--nats-url", url, "--compute-id", toolCompute}, args...), stdout, stderr)
		}()
		stop = func() error {
			cancel()
			select {
			case err := <-done:
				return err
			case <-time.After(20 * time.Second):
				t.Fatal("tail did not stop after its context ended")
				return nil
			}
		}
		t.Cleanup(func() { cancel() })
		waitFor(t, "tail to start", func() bool { return strings.Contains(stderr.String(), "following") })
		return stdout, stderr, stop
	}

	live, liveErr, stopLive := tail("--json")
	if want := "following labd.ev.tools.> from sequence " + itoa(before.seq+1); !strings.Contains(liveErr.String(), want) {
		t.Fatalf("tail's stderr %q lacks %q", liveErr.String(), want)
	}
	onlyNew, _, stopOnlyNew := tail("--project", "new")
	fromStart, _, stopFromStart := tail("--from", "1", "--node", "n")

	after := h.add("new", "", events.ProjectCreated{Name: "after"})
	node := h.add("new", "n", vpcsNode(5000))
	waitFor(t, "the new events in tail --json", func() bool { return strings.Count(live.String(), "\n") >= 2 })
	waitFor(t, "the node's event in tail --from 1 --node n", func() bool { return strings.Contains(fromStart.String(), "node.created") })
	waitFor(t, "the new project's events in tail --project new", func() bool { return strings.Contains(onlyNew.String(), "node.created") })

	for _, stop := range []func() error{stopLive, stopOnlyNew, stopFromStart} {
		if err := stop(); err != nil {
			t.Fatalf("tail ended with %v, want nil after an interrupt", err)
		}
	}
	var got []eventJSON
	for line := range strings.Lines(live.String()) {
		var l eventJSON
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("tail --json line %q: %v", line, err)
		}
		got = append(got, l)
	}
	if len(got) != 2 || got[0].Seq != after.seq || got[0].Type != "project.created" || got[1].Seq != node.seq || got[1].NodeID != "n" {
		t.Fatalf("tail printed %+v, want sequences %d and %d only", got, after.seq, node.seq)
	}
	if table := onlyNew.String(); !strings.HasPrefix(table, "SEQ") || strings.Contains(table, "before") || !strings.Contains(table, `"name":"after"`) {
		t.Fatalf("tail --project new:\n%s", table)
	}
	if rows := strings.Count(fromStart.String(), "\n"); rows != 2 { // header and the node's one event
		t.Fatalf("tail --from 1 --node n:\n%s", fromStart.String())
	}
}

// Offline, a tool takes the data directory's lock: it refuses while labd
// (here: serve's own lock function) holds it, and works once it is free.
func TestToolOfflineRefusesWhileTheDataDirIsLocked(t *testing.T) {
	dir := offlineDataDir(t, func(h *toolHistory) { h.add("p", "", events.ProjectCreated{Name: "lab"}) })
	unlock, err := lockDataDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	base := []string{"--data-dir", dir, "--compute-id", toolCompute}
	for name, tool := range map[string]toolFunc{"replay": replayTool, "audit": auditTool, "tail": tailTool} {
		_, _, err := runTool(t, tool, base...)
		if err == nil || !strings.Contains(err.Error(), "labd is running on this data dir: use --nats-url") {
			t.Errorf("%s on a locked data dir: %v", name, err)
		}
	}
	unlock()
	if out := mustRunTool(t, replayTool, base...); !strings.Contains(out, "lab") {
		t.Fatalf("replay once unlocked:\n%s", out)
	}
	// The tool released the lock in turn: labd (its lock) can take it.
	unlock, err = lockDataDir(dir)
	if err != nil {
		t.Fatalf("the tool kept the lock: %v", err)
	}
	unlock()
}

func TestToolRefusesWhatItCannotRead(t *testing.T) {
	_, url := onlineStore(t)
	empty := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--data-dir", empty}, "holds no event store"},
		{[]string{"--data-dir", filepath.Join(empty, "missing")}, "no such file"},
		{[]string{"--nats-url", url, "--nats-stream", "NOPE"}, "no stream NOPE"},
		{[]string{"--nats-url", url, "--data-dir", empty}, "give one"},
		{[]string{"--data-dir", empty, "--compute-id", "a.b"}, "--compute-id"},
		{[]string{"--data-dir", empty, "extra"}, "unexpected arguments"},
	} {
		_, _, err := runTool(t, replayTool, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("replay %v: %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
	if _, _, err := runTool(t, auditTool, "--nats-url", url, "--verify", "--project", "p"); err == nil {
		t.Error("--verify with --project was accepted")
	}
	if _, _, err := runTool(t, eventsTool, "head"); err != errUsage {
		t.Errorf("labd events head: %v", err)
	}
}
