package actors

import (
	"context"
	"syscall"

	"labd/actors/kind"
	"labd/events"
	"labd/replay"
)

// What the lifecycle has beyond Nova's operations, for Danube Cloud: a
// pending definition (the size a node is to have, applied by a start,
// stop or reboot that asks for it: the desired-versus-active split), a
// frozen flag that keeps a stopped node from starting, a start from a CD
// image, and a status check that compares the node's process with the
// record and corrects the record (Danube's PUT .../status/current).
//
// labd watches every process it runs (a pidfd for adopted ones), so a
// process that ends is recorded at once: the drift Danube's users know,
// a record that says running over a VM that is gone, cannot last here.
// What labd is not told of is a signal that stops or continues a process
// behind its back (kill -STOP): the record says running, the machine runs
// nothing. The status check sees it in /proc and records the node paused
// (cause "signal"); an unpause, a resume or a stop sends SIGCONT first.

// ProbeNode asks a node what its process says now.
type ProbeNode struct{ NodeRef }

// Probe is what a status check finds.
type Probe struct {
	// Node is the node as recorded.
	Node *replay.Node
	// Actual is the status the process shows now; Drift says it is not
	// the recorded one, and Detail says why.
	Actual replay.NodeStatus
	Drift  bool
	Detail string
}

// Probe checks a node's process against its record, changing nothing.
func (c *Client) Probe(ctx context.Context, ref NodeRef) (Probe, error) {
	return call[Probe](ctx, c, ProbeNode{ref})
}

func (a *nodeActor) probe() Probe {
	actual, detail, _ := a.actualState()
	return Probe{Node: a.state, Actual: actual, Drift: actual != a.state.Status, Detail: detail}
}

// actualState is the status the node's process shows, why it differs
// from the record, and the event that records it (nil for a process that
// is gone: exited records that).
func (a *nodeActor) actualState() (replay.NodeStatus, string, events.Data) {
	n, run := a.state, a.rt.run
	if run == nil || run.Process() == nil || !n.Running() {
		return n.Status, "", nil
	}
	switch run.Process().State() {
	case kind.ProcGone:
		return replay.NodeStopped, "the node's process is gone", nil
	case kind.ProcStopped:
		if n.Status == replay.NodeRunning {
			return replay.NodePaused, "a signal stopped the node's process (SIGSTOP)", events.NodeSuspended{Cause: events.CauseSignal}
		}
	default:
		if n.Status == replay.NodePaused && n.PauseCause == events.CauseSignal {
			return replay.NodeRunning, "the node's process was continued (SIGCONT)", events.NodeResumed{Cause: events.CauseSignal}
		}
	}
	return n.Status, "", nil
}

// reconcile records what the process shows, with the check's record.
func (a *nodeActor) reconcile(c Operate) (Outcome, error) {
	rec := a.newOperation(c)
	actual, detail, ev := a.actualState()
	var evs []events.Data
	switch {
	case actual == replay.NodeStopped && a.state.Status != replay.NodeStopped:
		a.exited(a.rt.run) // records the stop, as the exit's own notice would
	case ev != nil:
		evs = append(evs, ev)
	}
	if detail == "" {
		detail = "the record matches the node's process"
	}
	end := events.OperationEnded{ID: rec.ID, State: events.OpSuccess, Message: detail, Record: &rec.Operation}
	if err := a.commit(append(evs, end)...); err != nil {
		return Outcome{}, err
	}
	return a.outcome(rec.ID), nil
}

// continueRun continues a paused run: with SIGCONT when a signal paused
// it, else as its kind does.
func (a *nodeActor) continueRun() error {
	run := a.rt.run
	if a.state.PauseCause == events.CauseSignal && run.Process() != nil {
		return run.Process().Signal(syscall.SIGCONT)
	}
	return run.Resume()
}

// checkExtras validates what an operation asks beyond its op: the
// frozen flag, a freeze, a CD image, a definition to apply.
func (a *nodeActor) checkExtras(c Operate, refuse func(busy bool) error) error {
	n := a.state
	switch {
	case n.Frozen && (c.Op == OpStart || c.Op == OpReboot || c.Op == OpResume || c.Op == OpFreeze):
		return refuse(false)
	case c.Op == OpUnfreeze && !n.Frozen:
		return refuse(false)
	case c.Freeze && c.Op != OpStop:
		return Invalid("only a stop can freeze a node")
	case c.CDImage != "" && c.Op != OpStart:
		return Invalid("only a start can boot from a CD image")
	case c.CDImage != "":
		b, ok := a.drv.(kind.CDBooter)
		if !ok {
			return &Error{Class: ErrConflict, Msg: "a " + a.drv.Info().Title + " node cannot boot from a CD image", Err: ErrUnsupported}
		}
		if err := b.CheckCD(a.view(), c.CDImage); err != nil {
			return err
		}
	}
	if c.Apply && n.Definition != nil {
		_, err := a.definedProperties()
		return err
	}
	return nil
}

// checkDefine validates a definition: the kind must have a size, and the
// size must be one it takes.
func (a *nodeActor) checkDefine(c Operate) error {
	if c.CPUs == 0 && c.RAMMB == 0 {
		return Invalid("a definition needs vcpus or ram")
	}
	s, ok := a.drv.(kind.Sizer)
	if !ok {
		return &Error{Class: ErrConflict, Msg: "a " + a.drv.Info().Title + " node has no size to define", Err: ErrUnsupported}
	}
	cpus, ram := s.Size(a.state.Properties)
	if c.CPUs != 0 {
		cpus = c.CPUs
	}
	if c.RAMMB != 0 {
		ram = c.RAMMB
	}
	_, err := s.Resize(a.view(), cpus, ram)
	return err
}

// define records a pending definition.
func (a *nodeActor) define(c Operate) (Outcome, error) {
	rec := a.newOperation(c)
	if err := a.commit(events.NodeDefined{CPUs: c.CPUs, RAMMB: c.RAMMB}, endedRecord(rec, nil)); err != nil {
		return Outcome{}, err
	}
	return a.outcome(rec.ID), nil
}

// freeze freezes or unfreezes a stopped node.
func (a *nodeActor) freeze(c Operate) (Outcome, error) {
	rec := a.newOperation(c)
	var ev events.Data = events.NodeFrozen{}
	if c.Op == OpUnfreeze {
		ev = events.NodeUnfrozen{}
	}
	if err := a.commit(ev, endedRecord(rec, nil)); err != nil {
		return Outcome{}, err
	}
	return a.outcome(rec.ID), nil
}

// applies reports whether op applies a pending definition.
func (a *nodeActor) applies(op replay.Operation) bool {
	return op.Apply && a.state.Definition != nil
}

// definedProperties are the node's properties with the pending
// definition applied.
func (a *nodeActor) definedProperties() ([]byte, error) {
	s, ok := a.drv.(kind.Sizer)
	if !ok {
		return nil, ErrUnsupported
	}
	cpus, ram := s.Size(a.state.Properties)
	if d := a.state.Definition; d.CPUs != 0 {
		cpus = d.CPUs
	}
	if d := a.state.Definition; d.RAMMB != 0 {
		ram = d.RAMMB
	}
	return s.Resize(a.view(), cpus, ram)
}

// applyDefinition is the event that applies the pending definition, nil
// when op applies none.
func (a *nodeActor) applyDefinition(op replay.Operation) (events.Data, error) {
	if !a.applies(op) {
		return nil, nil
	}
	props, err := a.definedProperties()
	if err != nil {
		return nil, err
	}
	return events.DefinitionApplied{Properties: props, Previous: a.state.Properties}, nil
}

// afterStop are the events that end a stop: the stop, then the pending
// definition applied and the freeze, if the stop asks for them.
func (a *nodeActor) afterStop(op replay.Operation, stop events.NodeStopped) ([]events.Data, error) {
	evs := []events.Data{stop}
	apply, err := a.applyDefinition(op)
	if err != nil {
		return evs, err
	}
	if apply != nil {
		evs = append(evs, apply)
	}
	if op.Freeze {
		evs = append(evs, events.NodeFrozen{})
	}
	return evs, nil
}

// ErrNotCancellable is what a cancel of an operation that cannot be
// cancelled fails with: one that is not in flight, or not waiting for
// the guest.
var ErrNotCancellable = &Error{Class: ErrConflict, Msg: "the operation cannot be cancelled: only a graceful wait for the guest can"}

// cancel revokes the graceful wait in flight: the guest was asked to
// power off and may still do so; labd no longer forces it.
func (a *nodeActor) cancel(c Operate, cur *replay.Operation) (Outcome, error) {
	if cur == nil || (cur.ID != c.Target && cur.RequestID != c.Target) || a.rt.off == nil || a.rt.off.id != cur.ID {
		return Outcome{}, ErrNotCancellable
	}
	a.cancelPending()
	if err := a.commit(endRevoked(cur.ID, "cancelled")); err != nil {
		return Outcome{}, err
	}
	a.answerWaiters()
	return a.outcome(cur.ID), nil
}
