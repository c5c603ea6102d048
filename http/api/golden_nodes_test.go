package api_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"labd/events"
	"labd/replay"
)

// The fixed ids of the golden node session.
const (
	goldenLab     = "3f6c2a10-8d4e-4b7a-9c1d-2e5f6a7b8c01" // stays open
	goldenClosing = "3f6c2a10-8d4e-4b7a-9c1d-2e5f6a7b8c02" // closed with its nodes

	goldenPC1    = "11111111-1111-4111-8111-111111111101" // VPCS over v1: linked, captured, adopted
	goldenPC2    = "11111111-1111-4111-8111-111111111102" // VPCS over v2: killed from outside
	goldenPCGone = "11111111-1111-4111-8111-111111111103" // VPCS whose directory cannot be made, deleted
	goldenPC3    = "11111111-1111-4111-8111-111111111104" // VPCS of the closed project, running at the close

	goldenQ1   = "22222222-2222-4222-8222-222222222201" // QEMU over v2: suspended, resumed, reset
	goldenQ2   = "22222222-2222-4222-8222-222222222202" // QEMU over v1, deleted
	goldenQTPM = "22222222-2222-4222-8222-222222222203" // QEMU with tpm: its start fails
	goldenQ3   = "22222222-2222-4222-8222-222222222204" // QEMU over v1 of the closed project
)

// TestRecordGoldenNodeSession records the second golden event log
// (testdata/golden/nodes.jsonl and nodes.state.json): a real session of
// VPCS and QEMU nodes over both API versions, across a restart of the
// daemon that adopts a running node. Package replay must keep folding it
// to the recorded state. It only writes with -update-golden; otherwise it
// checks that the session still produces every node event type, so a new
// one is noticed here.
func TestRecordGoldenNodeSession(t *testing.T) {
	needQEMUBinaries(t)
	// Reapers first: their cleanups run after the daemons have stopped.
	reaper := newVPCSReaper(t)
	qemuPIDs := reapQEMU(t)
	o := ownPorts(40)
	o.computeID = "golden"
	o.dataDir = t.TempDir()

	var adoptable vpcsRun
	var adoptablePID int
	before := func(t *testing.T) {
		keep := o
		keep.keepNodes = true
		d := startDaemon(t, keep)
		adoptable, adoptablePID = recordBeforeRestart(t, d, reaper, qemuPIDs)
	}
	if !t.Run("before the restart", before) {
		t.FailNow()
	}
	if len(adoptable.processes()) == 0 {
		t.Fatal("the VPCS left for the next daemon no longer runs")
	}

	d := startDaemon(t, o)
	recordAfterRestart(t, d, adoptablePID)

	lines, recs := goldenLog(t, d)
	checkNodeEventTypes(t, recs)
	if !*updateGolden {
		return
	}
	st, err := replay.Rehydrate(t.Context(), d.Env.Store, "golden", nil)
	if err != nil {
		t.Fatal(err)
	}
	writeGolden(t, "nodes", lines, st)
	t.Logf("recorded %d events: %v", len(lines), typeCounts(recs))
}

// recordBeforeRestart runs the first part of the session on a daemon
// that keeps its nodes when it stops, and returns the VPCS it leaves
// running and its recorded pid.
func recordBeforeRestart(t *testing.T, d *daemon, reaper *vpcsReaper, qemuPIDs *[]int) (vpcsRun, int) {
	lab, closing := "/v2/compute/projects/"+goldenLab, "/v2/compute/projects/"+goldenClosing
	d.do("POST", "/v2/compute/projects", `{"name": "nodes", "project_id": "`+goldenLab+`"}`).expect(t, 201, "")
	d.do("POST", "/v2/compute/projects", `{"name": "closing", "project_id": "`+goldenClosing+`"}`).expect(t, 201, "")

	// Creations over both versions.
	pc1 := vpcsNode{ID: goldenPC1}
	d.do("POST", "/v1/projects/"+goldenLab+"/vpcs/vms", `{"name": "PC1", "vm_id": "`+goldenPC1+`", "startup_script": "ip 10.0.0.1/24\n"}`).expect(t, 201, "")
	pc2 := vpcsNode{ID: goldenPC2}
	d.do("POST", lab+"/vpcs/nodes", `{"name": "PC2", "node_id": "`+goldenPC2+`"}`).expect(t, 201, "")
	q1 := lab + "/qemu/nodes/" + goldenQ1
	d.do("POST", lab+"/qemu/nodes", `{"name": "Q1", "node_id": "`+goldenQ1+`", "ram": 128}`).expect(t, 201, "")
	q2 := "/v1/projects/" + goldenLab + "/qemu/vms/" + goldenQ2
	d.do("POST", "/v1/projects/"+goldenLab+"/qemu/vms", `{"name": "Q2", "vm_id": "`+goldenQ2+`", "ram": 64}`).expect(t, 201, "")
	qtpm := lab + "/qemu/nodes/" + goldenQTPM
	d.do("POST", lab+"/qemu/nodes", `{"name": "QTPM", "node_id": "`+goldenQTPM+`", "tpm": true}`).expect(t, 201, "")
	d.do("POST", closing+"/vpcs/nodes", `{"name": "PC3", "node_id": "`+goldenPC3+`"}`).expect(t, 201, "")
	d.do("POST", "/v1/projects/"+goldenClosing+"/qemu/vms", `{"name": "Q3", "vm_id": "`+goldenQ3+`"}`).expect(t, 201, "")

	// Updates: renames over both versions, QEMU properties.
	d.do("PUT", "/v1/projects/"+goldenLab+"/vpcs/vms/"+goldenPC1, `{"name": "PC1-renamed"}`).expect(t, 200, "")
	d.do("PUT", nodePath(goldenLab, pc2), `{"name": "PC2-renamed"}`).expect(t, 200, "")
	d.do("PUT", q1, `{"ram": 96, "adapters": 2, "cpus": 1}`).expect(t, 200, "")

	// Links: PC1 and PC2 joined; a filter, then a suspended link; Q1
	// linked to a project port; one more NIO removed.
	pa, pb := d.link(goldenLab, pc1, pc2)
	d.do("PUT", nodePath(goldenLab, pc1)+"/adapters/0/ports/0/nio", nioBody(pa, pb, `, "filters": {"packet_loss": [10], "delay": [5, 1]}`)).expect(t, 201, "")
	d.do("PUT", nodePath(goldenLab, pc1)+"/adapters/0/ports/0/nio", nioBody(pa, pb, `, "filters": {"packet_loss": [10], "delay": [5, 1]}, "suspend": true`)).expect(t, 201, "")
	qa, qb := d.udpPort(goldenLab), d.udpPort(goldenLab)
	d.do("POST", q1+"/adapters/1/ports/0/nio", nioBody(qa, qb, "")).expect(t, 201, "")
	d.do("POST", q1+"/adapters/0/ports/0/nio", nioBody(qb, qa, "")).expect(t, 201, "")
	d.do("DELETE", q1+"/adapters/0/ports/0/nio", "").expect(t, 204, "")

	// VPCS runs: a v1 start, a v2 start, a capture on the running link,
	// a hot NIO removal.
	d.do("POST", "/v1/projects/"+goldenLab+"/vpcs/vms/"+goldenPC1+"/start", "").expect(t, 204, "")
	d.startNode(goldenLab, pc2)
	run1 := d.runningRun(t, goldenLab, pc1, reaper)
	run2 := d.runningRun(t, goldenLab, pc2, reaper)
	d.do("POST", nodePath(goldenLab, pc1)+"/adapters/0/ports/0/start_capture", `{"capture_file_name": "pc1.pcap", "data_link_type": "DLT_EN10MB"}`).expect(t, 200, "")
	d.do("POST", nodePath(goldenLab, pc1)+"/adapters/0/ports/0/stop_capture", "").expect(t, 204, "")
	d.do("DELETE", nodePath(goldenLab, pc2)+"/adapters/0/ports/0/nio", "").expect(t, 204, "")

	// QEMU: a start, a suspend and resume, a reload served by a reset,
	// a stop; a start that fails; a deletion over v1.
	d.do("POST", q1+"/start", "").expect(t, 200, "")
	q1Run := goldenLastStarted(t, d, goldenLab, goldenQ1)
	*qemuPIDs = append(*qemuPIDs, q1Run.PID)
	d.do("POST", q1+"/suspend", "").expect(t, 204, "")
	d.waitStatus(t, q1, "suspended", 10*time.Second)
	d.do("POST", q1+"/resume", "").expect(t, 204, "")
	d.waitStatus(t, q1, "started", 10*time.Second)
	d.do("POST", q1+"/reload", "").expect(t, 204, "")
	if got := goldenLastStarted(t, d, goldenLab, goldenQ1).PID; got != q1Run.PID {
		t.Fatalf("the reload restarted QEMU: pid %d, was %d", got, q1Run.PID)
	}
	d.do("POST", q1+"/stop", "").expect(t, 204, "")
	waitProcessGone(t, q1Run.PID)
	d.do("POST", qtpm+"/start", "").expect(t, 409, "")
	d.do("DELETE", q2, "").expect(t, 204, "")

	// PC2 killed from outside.
	for _, pid := range run2.processes() {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill %d: %v", pid, err)
		}
	}
	d.waitStatus(t, nodePath(goldenLab, pc2), "stopped", 10*time.Second)

	// A node whose directory cannot be made (a file is in the way):
	// created, its effect failed; then deleted, which removes the file.
	gone := vpcsNode{ID: goldenPCGone}
	blocker := filepath.Join(d.DataDir, "projects", goldenLab, "project-files", "vpcs", goldenPCGone)
	if err := os.MkdirAll(filepath.Dir(blocker), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(blocker, []byte("in the way\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d.do("POST", lab+"/vpcs/nodes", `{"name": "PC-gone", "node_id": "`+goldenPCGone+`"}`).expect(t, 500, "")
	d.do("DELETE", nodePath(goldenLab, gone), "").expect(t, 204, "")
	if _, err := os.Stat(blocker); !os.IsNotExist(err) {
		t.Fatalf("the deleted node's path is still there: %v", err)
	}

	// PC1 keeps running for the next daemon.
	return run1, goldenLastStarted(t, d, goldenLab, goldenPC1).PID
}

// recordAfterRestart runs the rest of the session on the daemon started
// on the first one's data: it has adopted PC1; PC3 starts, and its
// project closes with it running.
func recordAfterRestart(t *testing.T, d *daemon, adoptedPID int) {
	pc1 := vpcsNode{ID: goldenPC1}
	if s := d.getNodeV2(t, goldenLab, pc1)["status"]; s != "started" {
		t.Fatalf("after the restart PC1 is %v, want started", s)
	}
	hist := goldenHistory(t, d, goldenLab, goldenPC1)
	if a, ok := hist[len(hist)-1].Data.(events.NodeAdopted); !ok || a.PID != adoptedPID {
		t.Fatalf("after the restart PC1's last event is %s %+v, want its adoption (pid %d)", hist[len(hist)-1].Type, hist[len(hist)-1].Data, adoptedPID)
	}
	pc3 := vpcsNode{ID: goldenPC3}
	d.startNode(goldenClosing, pc3)
	d.do("POST", "/v2/compute/projects/"+goldenClosing+"/close", "").expect(t, 204, "")
	hist = goldenHistory(t, d, goldenClosing, goldenPC3)
	if n := len(hist); n < 2 || hist[n-2].Type != events.TypeNodeStopped || hist[n-1].Type != events.TypeNodeClosed {
		t.Fatalf("PC3's history ends %v, want a stop then the close", eventTypes(hist))
	}
}

// checkNodeEventTypes fails unless the session produced every node event
// type of this build, an effect failure on a node subject, and stops both
// requested and unasked.
func checkNodeEventTypes(t *testing.T, recs []events.Record) {
	t.Helper()
	seen := map[events.Type]bool{}
	reasons := map[string]bool{}
	nodeEffectFailed := false
	for _, r := range recs {
		seen[r.Type] = true
		switch d := r.Data.(type) {
		case events.EffectFailed:
			nodeEffectFailed = nodeEffectFailed || r.NodeID != ""
		case events.NodeStopped:
			reasons[d.Reason] = true
		}
	}
	// Suspend to disk, resize, definitions and freezing are operations
	// GNS3's routes do not have: replay's own tests fold them.
	strictOnly := map[events.Type]bool{events.TypeNodeSaved: true, events.TypeNodeResized: true,
		events.TypeResizeConfirmed: true, events.TypeResizeReverted: true,
		events.TypeNodeDefined: true, events.TypeDefinitionApplied: true, events.TypeNodeFrozen: true, events.TypeNodeUnfrozen: true}
	for _, typ := range events.Types() {
		if strings.HasPrefix(string(typ), "node.") && !seen[typ] && !strictOnly[typ] {
			t.Errorf("the golden node session produced no %s event", typ)
		}
	}
	if !nodeEffectFailed {
		t.Errorf("the golden node session produced no %s event on a node subject", events.TypeEffectFailed)
	}
	for _, why := range []string{events.StopRequested, events.StopExited} {
		if !reasons[why] {
			t.Errorf("the golden node session has no node.stopped of reason %q", why)
		}
	}
}

// goldenLog reads the whole event stream of d as golden lines, with the
// events they hold.
func goldenLog(t *testing.T, d *daemon) ([]goldenLine, []events.Record) {
	t.Helper()
	js, err := jetstream.New(d.Env.Conn)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(t.Context(), d.Env.Store.StreamName())
	if err != nil {
		t.Fatal(err)
	}
	var lines []goldenLine
	var recs []events.Record
	for seq := uint64(1); seq <= d.lastSeq(); seq++ {
		m, err := stream.GetMsg(t.Context(), seq)
		if err != nil {
			t.Fatal(err)
		}
		ev, err := events.Unmarshal(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		msgID := m.Header.Get(jetstream.MsgIDHeader)
		lines = append(lines, goldenLine{Seq: m.Sequence, Subject: m.Subject, MsgID: msgID, Body: m.Data})
		recs = append(recs, events.Record{Event: ev, Seq: m.Sequence, Subject: m.Subject, MsgID: msgID})
	}
	return lines, recs
}

// writeGolden writes testdata/golden/<name>.jsonl and <name>.state.json.
func writeGolden(t *testing.T, name string, lines []goldenLine, st *replay.State) {
	t.Helper()
	dir := filepath.Join("..", "..", "testdata", "golden")
	// A golden log is never re-recorded: it is an old history that must
	// keep its meaning. A new session gets a new log beside it.
	if _, err := os.Stat(filepath.Join(dir, name+".jsonl")); err == nil {
		t.Fatalf("testdata/golden/%s.jsonl exists: golden logs are never re-recorded; record a new one beside it", name)
	}
	var log []byte
	for _, l := range lines {
		b, err := json.Marshal(l)
		if err != nil {
			t.Fatal(err)
		}
		log = append(append(log, b...), '\n')
	}
	if err := os.WriteFile(filepath.Join(dir, name+".jsonl"), log, 0o644); err != nil {
		t.Fatal(err)
	}
	state, err := json.MarshalIndent(replay.Summarize(st), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".state.json"), append(state, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}

// goldenHistory returns the events of one node aggregate of the golden
// compute.
func goldenHistory(t *testing.T, d *daemon, project, node string) []events.Record {
	t.Helper()
	var recs []events.Record
	if _, err := d.Env.Store.Load(t.Context(), events.NodeSubject("golden", project, node), 1, func(r events.Record) error {
		recs = append(recs, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return recs
}

// goldenLastStarted returns the last process the node's history started.
func goldenLastStarted(t *testing.T, d *daemon, project, node string) events.NodeStarted {
	t.Helper()
	hist := goldenHistory(t, d, project, node)
	for _, r := range slices.Backward(hist) {
		if s, ok := r.Data.(events.NodeStarted); ok {
			return s
		}
	}
	t.Fatalf("node %s never started", node)
	return events.NodeStarted{}
}

// reapQEMU returns a list of QEMU pids whose processes are killed, if they
// still run QEMU, when the test ends: a failing test leaks nothing.
func reapQEMU(t *testing.T) *[]int {
	pids := &[]int{}
	t.Cleanup(func() {
		for _, pid := range *pids {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			if err == nil && strings.Contains(filepath.Base(strings.Split(string(b), "\x00")[0]), "qemu-system") {
				t.Logf("killing leftover QEMU %d", pid)
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	return pids
}

// typeCounts counts the records of each type, for the log.
func typeCounts(recs []events.Record) map[events.Type]int {
	n := map[events.Type]int{}
	for _, r := range recs {
		n[r.Type]++
	}
	return n
}
