package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"labd/events/jetstream/jstest"
	"labd/replay"
)

// The chaos test of issue 5: a scripted workload of 1,000 API calls on
// projects, VPCS nodes (created, started, stopped, renamed, deleted) and
// UDP ports, with labd killed (SIGKILL) at 20 random moments, each time
// in the middle of a call, and started again. After the last restart every
// acknowledged call's effect is present, every node process is the one its
// node's history records (none orphaned, none twice), the port pools hold
// exactly what the history holds, and the history folds without a
// violation.
func TestChaosKillsLoseNothing(t *testing.T) {
	const calls, kills = 1000, 20
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(4, 2)) // a fixed script: a failure can be replayed
	killAt := map[int]bool{}
	for len(killAt) < kills {
		killAt[50+rng.IntN(calls-60)] = true
	}
	m := &chaosModel{t: t, dir: dir, nodes: map[string]*chaosNode{}, projects: map[string]bool{}}
	t.Cleanup(func() { killProcessesUnder(dir) }) // last: what --keep-nodes daemons left
	m.d = startLabd(t, dir, "--keep-nodes")
	restarts, unanswered := 0, 0
	for i := range calls {
		if killAt[i] {
			// The kill lands while this call is in flight (or just
			// before or after it): its outcome is unknown to the client.
			delay := time.Duration(rng.IntN(3000)) * time.Microsecond
			stopped := m.stoppedNode(rng)
			if stopped != nil && restarts%2 == 0 {
				// Half the kills hit a start, which takes tens of
				// milliseconds: some land after the process is spawned
				// and before its start is recorded.
				delay = time.Duration(5+rng.IntN(60)) * time.Millisecond
			}
			old := m.d
			go func() { time.Sleep(delay); old.cmd.Process.Kill() }()
			before := m.acked
			if stopped != nil && restarts%2 == 0 {
				m.lifecycle(stopped, "start", "started", 200)
			} else {
				m.step(rng)
			}
			if m.acked == before {
				unanswered++
			}
			old.wait(10 * time.Second)
			m.d = startLabd(t, dir, "--keep-nodes")
			restarts++
			m.resync()
			continue
		}
		m.step(rng)
	}
	t.Logf("%d calls, %d kills and restarts (%d calls cut off by them); %d projects, %d nodes (%d running)",
		calls, restarts, unanswered, len(m.projects), m.existing(), m.running())

	// Every acknowledged effect is there.
	m.checkAll()
	// Every node process is the recorded one, once.
	var ports struct {
		ConsolePorts []int `json:"console_ports"`
		UDPPorts     []int `json:"udp_ports"`
	}
	getJSON(t, m.d.URL+"/v2/compute/network/ports", &ports)
	m.d.cmd.Process.Kill()
	m.d.wait(10 * time.Second)
	st := foldDataDir(t, dir)
	m.checkProcesses(st)
	// The history keeps every invariant labd audit checks.
	if out, err := exec.Command(labdBinary(t), "audit", "--verify", "--data-dir", dir, "--compute-id", "e2e").CombinedOutput(); err != nil ||
		!strings.Contains(string(out), "verify: OK") {
		t.Fatalf("labd audit --verify: %v\n%s", err, out)
	} else {
		t.Logf("%s", strings.TrimSpace(string(out)))
	}
	// The pools hold exactly what the history holds.
	if want := sorted(st.ConsolePorts()); !slices.Equal(sorted(ports.ConsolePorts), want) {
		t.Fatalf("console ports in use %v, the history holds %v", sorted(ports.ConsolePorts), want)
	}
	if want := sorted(st.UDPPorts()); !slices.Equal(sorted(ports.UDPPorts), want) {
		t.Fatalf("UDP ports in use %v, the history holds %v", sorted(ports.UDPPorts), want)
	}
}

// chaosModel is what the client was told: the acknowledged effects.
type chaosModel struct {
	t        *testing.T
	d        *daemonProc
	dir      string
	projects map[string]bool // id → exists
	nodes    map[string]*chaosNode
	order    []string // node ids, in creation order
	acked    int
}

type chaosNode struct {
	project, id, name, status string
	deleted                   bool
	// unsure: a call on the node was not acknowledged; the daemon is
	// asked what became of it after the restart. cut is that call.
	unsure bool
	cut    string
}

func (n *chaosNode) path() string {
	return "/v2/compute/projects/" + n.project + "/vpcs/nodes/" + n.id
}

// do sends one call; ok is false when no reply came (the daemon died).
func (m *chaosModel) do(method, path, body string) (status int, reply map[string]any, ok bool) {
	m.t.Helper()
	status, b, err := call(method, m.d.URL+path, body)
	if err != nil {
		return 0, nil, false
	}
	if status >= 500 {
		m.t.Fatalf("%s %s: %d %s", method, path, status, b)
	}
	if status < 300 {
		m.acked++
	}
	json.Unmarshal(b, &reply)
	return status, reply, true
}

// step makes one random call and records its acknowledged effect.
func (m *chaosModel) step(rng *rand.Rand) {
	live := m.liveNodes()
	projects := m.liveProjects()
	switch k := rng.IntN(100); {
	case k < 8 || len(projects) == 0:
		id := uuid.NewString()
		if s, _, ok := m.do("POST", "/v2/compute/projects", fmt.Sprintf(`{"name":"p%d","project_id":%q}`, len(m.projects), id)); ok && s == 201 {
			m.projects[id] = true
		} else if !ok {
			m.projects[id] = false // unknown: resync asks
		}
	case k < 25 && m.existing() < 12:
		n := &chaosNode{project: projects[rng.IntN(len(projects))], id: uuid.NewString(), status: "stopped"}
		n.name = "PC" + strconv.Itoa(len(m.order)+1)
		s, _, ok := m.do("POST", "/v2/compute/projects/"+n.project+"/vpcs/nodes", fmt.Sprintf(`{"name":%q,"node_id":%q}`, n.name, n.id))
		if ok && s != 201 {
			m.t.Fatalf("create node: %d", s)
		}
		n.unsure = !ok
		m.nodes[n.id] = n
		m.order = append(m.order, n.id)
	case k < 45 && len(live) > 0 && m.running() < 8:
		m.lifecycle(live[rng.IntN(len(live))], "start", "started", 200)
	case k < 65 && len(live) > 0:
		m.lifecycle(live[rng.IntN(len(live))], "stop", "stopped", 204)
	case k < 75 && len(live) > 0:
		n := live[rng.IntN(len(live))]
		name := n.name + "x"
		if s, _, ok := m.do("PUT", n.path(), fmt.Sprintf(`{"name":%q}`, name)); ok && s == 200 {
			n.name = name
		} else if !ok {
			n.unsure = true
		}
	case k < 80 && len(live) > 0:
		n := live[rng.IntN(len(live))]
		if s, _, ok := m.do("DELETE", n.path(), ""); ok && s == 204 {
			n.deleted = true
		} else if !ok {
			n.unsure = true
		}
	case k < 95:
		m.do("POST", "/v2/compute/projects/"+projects[rng.IntN(len(projects))]+"/ports/udp", "")
	default:
		if len(live) > 0 {
			n := live[rng.IntN(len(live))]
			if s, o, ok := m.do("GET", n.path(), ""); ok && (s != 200 || o["name"] != n.name || o["status"] != n.status) {
				m.t.Fatalf("GET %s: %d %v; the client was told name %q, status %s", n.id, s, o, n.name, n.status)
			}
		}
	}
}

func (m *chaosModel) lifecycle(n *chaosNode, op, status string, want int) {
	m.t.Helper()
	s, b, ok := m.do("POST", n.path()+"/"+op, "")
	switch {
	case !ok:
		n.unsure, n.cut = true, op
	case s == want:
		n.status = status
	default:
		m.t.Fatalf("%s %s: %d %v", op, n.id, s, b)
	}
}

// resync asks the restarted daemon what became of the calls it never
// answered.
func (m *chaosModel) resync() {
	m.t.Helper()
	for id, known := range m.projects {
		if !known {
			s, _, _ := m.do("GET", "/v2/compute/projects/"+id, "")
			if s == 200 {
				m.projects[id] = true
			} else {
				delete(m.projects, id)
			}
		}
	}
	for _, n := range m.nodes {
		if !n.unsure || n.deleted {
			continue
		}
		s, o, _ := m.do("GET", n.path(), "")
		// A stop the kill cut may have signalled the process, which the
		// restarted daemon then adopts while it ends (VPCS takes ~0.1 s
		// on SIGTERM): it is recorded stopped a moment later. Until the
		// stop itself is recorded before its signal (a "stopping" state),
		// the client waits that moment out.
		for deadline := time.Now().Add(2 * time.Second); s == 200 && n.cut == "stop" && o["status"] == "started" && time.Now().Before(deadline); {
			time.Sleep(50 * time.Millisecond)
			s, o, _ = m.do("GET", n.path(), "")
		}
		if s == 404 {
			n.deleted = true
		} else {
			n.name, n.status = o["name"].(string), o["status"].(string)
		}
		n.unsure, n.cut = false, ""
	}
}

func (m *chaosModel) liveProjects() []string {
	var out []string
	for id, ok := range m.projects {
		if ok {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

func (m *chaosModel) liveNodes() []*chaosNode {
	var out []*chaosNode
	for _, id := range m.order {
		if n := m.nodes[id]; !n.deleted && !n.unsure {
			out = append(out, n)
		}
	}
	return out
}

// stoppedNode returns a random stopped node, nil if there is none.
func (m *chaosModel) stoppedNode(rng *rand.Rand) *chaosNode {
	var stopped []*chaosNode
	for _, n := range m.liveNodes() {
		if n.status == "stopped" {
			stopped = append(stopped, n)
		}
	}
	if len(stopped) == 0 {
		return nil
	}
	return stopped[rng.IntN(len(stopped))]
}

func (m *chaosModel) existing() int {
	c := 0
	for _, n := range m.nodes {
		if !n.deleted {
			c++
		}
	}
	return c
}

func (m *chaosModel) running() int {
	c := 0
	for _, n := range m.nodes {
		if !n.deleted && n.status == "started" {
			c++
		}
	}
	return c
}

// checkAll compares every project and node with what the client was told.
func (m *chaosModel) checkAll() {
	m.t.Helper()
	for _, id := range m.liveProjects() {
		if s, _, _ := m.do("GET", "/v2/compute/projects/"+id, ""); s != 200 {
			m.t.Fatalf("acknowledged project %s: GET %d", id, s)
		}
	}
	for _, id := range m.order {
		n := m.nodes[id]
		s, o, _ := m.do("GET", n.path(), "")
		switch {
		case n.deleted && s != 404:
			m.t.Fatalf("deleted node %s: GET %d", id, s)
		case !n.deleted && (s != 200 || o["name"] != n.name || o["status"] != n.status):
			m.t.Fatalf("node %s: GET %d %v; the client was told name %q, status %s", id, s, o, n.name, n.status)
		}
	}
}

// checkProcesses checks that each running node of the history has its
// recorded process, and that no VPCS runs for any other node.
func (m *chaosModel) checkProcesses(st *replay.State) {
	m.t.Helper()
	byDir := map[string][]int{}
	for _, pid := range processesIn(m.dir, true) {
		cwd, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/cwd")
		byDir[cwd] = append(byDir[cwd], pid)
	}
	seen := 0
	for _, n := range st.Nodes {
		dir := filepath.Join(m.dir, "projects", n.ProjectID, "project-files", n.Kind, n.ID)
		procs := byDir[dir]
		switch {
		case n.Running() && !slices.Contains(procs, n.Process.PID):
			m.t.Fatalf("node %s is recorded running as pid %d; its directory has %v", n.ID, n.Process.PID, procs)
		case n.Running() && len(procs) != 2: // vpcs and the helper it forks
			m.t.Fatalf("node %s runs %d processes %v, want one vpcs (and its helper)", n.ID, len(procs), procs)
		case !n.Running() && len(procs) > 0:
			m.t.Fatalf("node %s is %s but processes %v run in its directory", n.ID, n.Status, procs)
		}
		seen += len(procs)
	}
	if all := len(processesIn(m.dir, true)); all != seen {
		m.t.Fatalf("%d processes run under the data directory, %d belong to nodes", all, seen)
	}
}

// killProcessesUnder kills the processes working under dir: the nodes
// that labd daemons started with --keep-nodes left behind.
func killProcessesUnder(dir string) {
	for _, pid := range processesIn(dir, true) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// foldDataDir folds the history of a stopped labd's data directory.
func foldDataDir(t *testing.T, dir string) *replay.State {
	t.Helper()
	env := jstest.Start(t, jstest.Options{Dir: filepath.Join(dir, "nats")})
	defer env.Stop()
	st, err := replay.Rehydrate(t.Context(), env.Store, "e2e", nil)
	if err != nil {
		t.Fatalf("the history does not fold: %v", err)
	}
	return st
}

func sorted(s []int) []int {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
