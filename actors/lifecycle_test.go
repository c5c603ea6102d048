package actors_test

import (
	"errors"
	"testing"

	"github.com/google/uuid"

	"labd/actors"
	"labd/events"
	"labd/replay"
)

// nodeHistory returns the types of a node's events, in order.
func nodeHistory(t *testing.T, f *fixture, pid, nid string) []events.Record {
	t.Helper()
	var out []events.Record
	if _, err := f.env.Store.Load(t.Context(), events.NodeSubject(compute, pid, nid), 1, func(r events.Record) error {
		out = append(out, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// The strict lifecycle on a VPCS node: each operation is recorded with
// its outcome, a state that does not allow an operation refuses it with a
// StateError and records nothing, and what VPCS cannot do is
// ErrUnsupported.
func TestStrictLifecycleOnVPCS(t *testing.T) {
	f := start(t, nil)
	pid := f.create(t, "lifecycle")
	nid := uuid.NewString()
	ref := actors.NodeRef{ProjectID: pid, NodeID: nid}
	if _, err := f.client.CreateNode(t.Context(), actors.CreateNode{NodeRef: ref, Kind: "vpcs", Name: "PC1"}); err != nil {
		t.Fatal(err)
	}
	op := func(o actors.Operate) (actors.Outcome, error) {
		o.NodeRef, o.Wait = ref, true
		return f.client.Operate(t.Context(), o)
	}
	out, err := op(actors.Operate{Op: actors.OpStart, RequestID: "req-1"})
	if err != nil {
		t.Fatal(err)
	}
	if out.Node.Status != replay.NodeRunning || out.Op.State != events.OpSuccess || out.Op.RequestID != "req-1" || out.Node.Task != "" {
		t.Fatalf("start: status %s task %q, record %+v", out.Node.Status, out.Node.Task, out.Op)
	}

	// Refusals record nothing.
	before := len(nodeHistory(t, f, pid, nid))
	for _, c := range []struct {
		o      actors.Operate
		status replay.NodeStatus
		unsup  bool
	}{
		{actors.Operate{Op: actors.OpStart}, replay.NodeRunning, false},
		{actors.Operate{Op: actors.OpUnpause}, replay.NodeRunning, false},
		{actors.Operate{Op: actors.OpConfirmResize}, replay.NodeRunning, false},
		{actors.Operate{Op: actors.OpPause}, "", true},
		{actors.Operate{Op: actors.OpSuspend}, "", true},
		{actors.Operate{Op: actors.OpResize, CPUs: 2, RAMMB: 256}, "", true},
	} {
		_, err := op(c.o)
		var se *actors.StateError
		switch {
		case c.unsup && !errors.Is(err, actors.ErrUnsupported):
			t.Errorf("%s: %v, want ErrUnsupported", c.o.Op, err)
		case !c.unsup && (!errors.As(err, &se) || se.Status != c.status || se.Busy):
			t.Errorf("%s: %v, want a StateError in %s", c.o.Op, err, c.status)
		case !errors.Is(err, actors.ErrConflict):
			t.Errorf("%s: %v is not of class conflict", c.o.Op, err)
		}
	}
	if after := len(nodeHistory(t, f, pid, nid)); after != before {
		t.Fatalf("refused operations recorded %d events", after-before)
	}

	// A soft reboot of a kind without a power button is a stop and a
	// start; a graceful stop is VPCS's own quit.
	out, err = op(actors.Operate{Op: actors.OpReboot})
	if err != nil || out.Node.Status != replay.NodeRunning || out.Op.State != events.OpSuccess {
		t.Fatalf("reboot: %v, %+v", err, out)
	}
	out, err = op(actors.Operate{Op: actors.OpStop})
	if err != nil || out.Node.Status != replay.NodeStopped || out.Node.Running() || out.Op.State != events.OpSuccess {
		t.Fatalf("stop: %v, %+v", err, out)
	}
	out, err = op(actors.Operate{Op: actors.OpRename, Name: "PC-renamed"})
	if err != nil || out.Node.Name != "PC-renamed" || out.Op.Op != string(actors.OpRename) {
		t.Fatalf("rename: %v, %+v", err, out)
	}

	// GNS3's lenient commands leave records too: a start of a running
	// node is a success that changes nothing.
	if _, err := f.client.NodeDo(t.Context(), actors.StartNode{NodeRef: ref}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.client.NodeDo(t.Context(), actors.StartNode{NodeRef: ref}); err != nil {
		t.Fatal(err)
	}
	n, _ := f.client.Node(pid, nid)
	var ops []string
	for _, o := range n.Operations {
		if o.InFlight() {
			t.Errorf("operation %s is still in flight", o.Op)
		}
		ops = append(ops, o.Op+":"+o.State)
	}
	want := []string{"start:SUCCESS", "reboot:SUCCESS", "stop:SUCCESS", "rename:SUCCESS", "start:SUCCESS", "start:SUCCESS"}
	if len(ops) != len(want) {
		t.Fatalf("records %v, want %v", ops, want)
	}
	for i := range want {
		if ops[i] != want[i] {
			t.Fatalf("records %v, want %v", ops, want)
		}
	}

	// The history folds to the same records.
	st, err := replay.Rehydrate(t.Context(), f.env.Store, compute, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Nodes[replay.NodeKey(pid, nid)]; len(got.Operations) != len(want) || got.Status != replay.NodeRunning {
		t.Fatalf("the fold has %d records, status %s", len(got.Operations), got.Status)
	}

	// A delete ends the node and its record says so.
	out, err = op(actors.Operate{Op: actors.OpDelete})
	if err != nil || out.Node.Exists() || out.Op.State != events.OpSuccess {
		t.Fatalf("delete: %v, %+v", err, out)
	}
}
