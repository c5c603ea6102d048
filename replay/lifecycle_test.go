package replay_test

import (
	"encoding/json"
	"strings"
	"testing"

	"labd/events"
	"labd/replay"
)

// The lifecycle's events fold into the stable state, the transitional one
// and the operation records; the fold refuses what the lifecycle never
// decides.
func TestLifecycleFold(t *testing.T) {
	op := func(id, name, task string) events.OperationStarted {
		return events.OperationStarted{State: events.OpStarted, Operation: events.Operation{ID: id, Op: name, Task: task, RequestID: "req-" + id}}
	}
	small, big := json.RawMessage(`{"ram":64}`), json.RawMessage(`{"ram":128}`)
	code := 0
	s := fold(t,
		rec(1, pid, events.ProjectCreated{Name: "p"}),
		nrec(2, pid, nid, events.NodeCreated{Kind: "qemu", Name: "vm", Properties: small, ConsolePassword: "pw", Metadata: map[string]string{"k": "v"}}),
		nrec(3, pid, nid, op("a", "start", replay.TaskStarting)),
	)
	key := replay.NodeKey(pid, nid)
	n := s.Nodes[key]
	if n.Task != replay.TaskStarting || n.InFlight() == nil || n.InFlight().ID != "a" || n.ConsolePassword != "pw" || n.Metadata["k"] != "v" {
		t.Fatalf("after the start was accepted: %+v", n)
	}
	for _, d := range []events.Data{
		op("b", "stop", replay.TaskStopping),                     // one is in flight already
		events.OperationEnded{ID: "zz", State: events.OpSuccess}, // not the one in flight
		events.ResizeConfirmed{},                                 // no resize waits
		events.NodeSaved{},                                       // nothing runs
	} {
		if err := s.Apply(nrec(4, pid, nid, d)); err == nil {
			t.Errorf("the fold took %T %+v", d, d)
		}
	}
	steps := []events.Data{
		started(20010, 20011),
		events.OperationEnded{ID: "a", State: events.OpSuccess},
		op("c", "suspend", replay.TaskSuspending),
		events.NodeSaved{ExitCode: &code},
		events.OperationEnded{ID: "c", State: events.OpSuccess},
	}
	seq := uint64(4)
	for _, d := range steps {
		if err := s.Apply(nrec(seq, pid, nid, d)); err != nil {
			t.Fatal(err)
		}
		seq++
	}
	n = s.Nodes[key]
	if n.Status != replay.NodeSuspended || n.Running() || n.Task != "" || len(s.UDPPorts()) != 0 {
		t.Fatalf("after the suspend: %s %q running %v ports %v", n.Status, n.Task, n.Running(), s.UDPPorts())
	}
	if got, ok := n.Operation("req-c"); !ok || got.State != events.OpSuccess || got.Ended.IsZero() {
		t.Fatalf("record by request id: %+v %v", got, ok)
	}
	// Restored, resized, reverted; a failed resize start leaves it in error.
	for _, d := range []events.Data{
		started(20010, 20011),
		events.NodeStopped{Reason: events.StopRequested, ExitCode: &code},
		events.NodeResized{Properties: big, Previous: small},
		events.ResizeReverted{Properties: small},
		events.NodeResized{Properties: big, Previous: small},
		events.ResizeConfirmed{},
		op("d", "resize", replay.TaskResizing),
		events.OperationEnded{ID: "d", State: events.OpFailure, Error: "no", Fault: true},
	} {
		if err := s.Apply(nrec(seq, pid, nid, d)); err != nil {
			t.Fatal(err)
		}
		seq++
	}
	n = s.Nodes[key]
	if n.Status != replay.NodeError || n.Resize != nil || string(n.Properties) != string(big) {
		t.Fatalf("after the failed resize: %s resize %v props %s", n.Status, n.Resize, n.Properties)
	}
	// A stop of a node in error clears it; a record that ended as it was
	// accepted is kept as it came.
	for _, d := range []events.Data{
		events.NodeStopped{Reason: events.StopRequested},
		events.OperationEnded{ID: "e", State: events.OpSuccess, Record: &events.Operation{ID: "e", Op: "rename"}},
	} {
		if err := s.Apply(nrec(seq, pid, nid, d)); err != nil {
			t.Fatal(err)
		}
		seq++
	}
	n = s.Nodes[key]
	if n.Status != replay.NodeStopped || n.Operations[len(n.Operations)-1].Op != "rename" {
		t.Fatalf("after the stop: %s, records %+v", n.Status, n.Operations)
	}
	// The state keeps the last MaxOperations records.
	for i := range replay.MaxOperations + 5 {
		id := strings.Repeat("x", 1+i%3) + string(rune('a'+i%26))
		if err := s.Apply(nrec(seq, pid, nid, events.OperationEnded{ID: id, State: events.OpSuccess, Record: &events.Operation{ID: id, Op: "rename"}})); err != nil {
			t.Fatal(err)
		}
		seq++
	}
	if got := len(s.Nodes[key].Operations); got != replay.MaxOperations {
		t.Fatalf("%d records kept, want %d", got, replay.MaxOperations)
	}
}

// A pending definition, the frozen flag and who paused a node fold as
// Danube Cloud's calls need them; the fold refuses a start of a frozen
// node, a definition applied to a running one and a freeze of a node
// that runs.
func TestDefinitionAndFreezeFold(t *testing.T) {
	small, big := json.RawMessage(`{"ram":64}`), json.RawMessage(`{"ram":128}`)
	s := fold(t,
		rec(1, pid, events.ProjectCreated{Name: "p"}),
		nrec(2, pid, nid, events.NodeCreated{Kind: "qemu", Name: "vm", Properties: small}),
		nrec(3, pid, nid, events.NodeDefined{RAMMB: 128}),
	)
	key := replay.NodeKey(pid, nid)
	if d := s.Nodes[key].Definition; d == nil || d.RAMMB != 128 || d.CPUs != 0 {
		t.Fatalf("the pending definition: %+v", d)
	}
	seq := uint64(4)
	apply := func(d events.Data) error {
		err := s.Apply(nrec(seq, pid, nid, d))
		if err == nil {
			seq++
		}
		return err
	}
	if err := apply(started(20010, 20011)); err != nil {
		t.Fatal(err)
	}
	for _, d := range []events.Data{events.DefinitionApplied{Properties: big, Previous: small}, events.NodeFrozen{}, events.NodeUnfrozen{}} {
		if err := apply(d); err == nil {
			t.Errorf("the fold took %T on a running node", d)
		}
	}
	for _, d := range []events.Data{events.NodeSuspended{Cause: events.CauseSignal}} {
		if err := apply(d); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.Nodes[key]; n.Status != replay.NodePaused || n.PauseCause != events.CauseSignal {
		t.Fatalf("paused by a signal: %s %q", n.Status, n.PauseCause)
	}
	code := 0
	for _, d := range []events.Data{events.NodeStopped{Reason: events.StopRequested, ExitCode: &code},
		events.DefinitionApplied{Properties: big, Previous: small}, events.NodeFrozen{}} {
		if err := apply(d); err != nil {
			t.Fatal(err)
		}
	}
	n := s.Nodes[key]
	if n.Definition != nil || string(n.Properties) != string(big) || !n.Frozen || n.PauseCause != "" {
		t.Fatalf("after the stop: definition %+v, properties %s, frozen %v, pause cause %q", n.Definition, n.Properties, n.Frozen, n.PauseCause)
	}
	if err := apply(started(20012, 20013)); err == nil || !strings.Contains(err.Error(), "frozen") {
		t.Fatalf("the fold started a frozen node: %v", err)
	}
	if err := apply(events.DefinitionApplied{Properties: small, Previous: big}); err == nil {
		t.Error("the fold applied a definition none was pending for")
	}
	if err := apply(events.NodeUnfrozen{}); err != nil {
		t.Fatal(err)
	}
	if err := apply(started(20012, 20013)); err != nil {
		t.Fatalf("an unfrozen node does not start: %v", err)
	}
}

// A record that ends as it is accepted (a rename, a define) may come while
// another operation is in flight: that one stays in flight, its end ends
// it, and the records kept never drop it.
func TestInstantRecordsDuringAnOperation(t *testing.T) {
	s := fold(t,
		rec(1, pid, events.ProjectCreated{Name: "p"}),
		nrec(2, pid, nid, events.NodeCreated{Kind: "qemu", Name: "vm"}),
		nrec(3, pid, nid, events.OperationStarted{State: events.OpStarted, Operation: events.Operation{ID: "stop", Op: "stop", Task: replay.TaskStopping}}),
	)
	seq := uint64(4)
	for i := range replay.MaxOperations + 5 {
		id := "define-" + strings.Repeat("x", i%3) + string(rune('a'+i%26))
		if err := s.Apply(nrec(seq, pid, nid, events.OperationEnded{ID: id, State: events.OpSuccess, Record: &events.Operation{ID: id, Op: "define"}})); err != nil {
			t.Fatal(err)
		}
		seq++
	}
	n := s.Nodes[replay.NodeKey(pid, nid)]
	if op := n.InFlight(); op == nil || op.ID != "stop" || n.Task != replay.TaskStopping || len(n.Operations) != replay.MaxOperations {
		t.Fatalf("the stop in flight after %d instant records: %+v, task %q, %d records", replay.MaxOperations+5, op, n.Task, len(n.Operations))
	}
	if err := s.Apply(nrec(seq, pid, nid, events.OperationEnded{ID: "stop", State: events.OpSuccess})); err != nil {
		t.Fatal(err)
	}
	n = s.Nodes[replay.NodeKey(pid, nid)]
	if got, ok := n.Operation("stop"); n.InFlight() != nil || n.Task != "" || !ok || got.State != events.OpSuccess {
		t.Fatalf("after the stop ended: in flight %+v, task %q, record %+v", n.InFlight(), n.Task, got)
	}
	if last := n.Operations[len(n.Operations)-1]; last.Op != "define" {
		t.Fatalf("the end of the stop moved its record: the last is %+v", last)
	}
}
