package actors

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"labd/actors/kind"
	"labd/events"
	"labd/replay"
)

// The node lifecycle, named by no dialect. A node is in a stable state
// (replay.NodeStatus: stopped, running, paused, suspended, error) or, while
// an operation is in flight, in a transitional one (replay.Node.Task:
// starting, stopping, rebooting...). Every request for an operation gets a
// record in the node's events (accepted, then ended SUCCESS, FAILURE or
// REVOKED), so the history says what was asked and what became of it.
//
// Operate is the strict entry, which the VM dialects (Nova, Danube Cloud,
// e24cloud) share: one operation in flight per node, refused with a
// StateError when the node's state does not allow it, answered as soon as
// it is recorded (or when it ends, with Wait). GNS3's routes keep their
// lenient, synchronous commands (StartNode, StopNode...), which run the
// same effects and leave records too.

// Op names a lifecycle operation.
type Op string

// Lifecycle operations.
const (
	OpStart         Op = "start"
	OpStop          Op = "stop"
	OpReboot        Op = "reboot"
	OpPause         Op = "pause"
	OpUnpause       Op = "unpause"
	OpSuspend       Op = "suspend"
	OpResume        Op = "resume"
	OpResize        Op = "resize"
	OpConfirmResize Op = "confirm_resize"
	OpRevertResize  Op = "revert_resize"
	OpRename        Op = "rename"
	OpDelete        Op = "delete"
	// OpDefine records a pending definition (CPUs, RAMMB), which an
	// operation with Apply applies while the node is off.
	OpDefine Op = "define"
	// OpFreeze and OpUnfreeze freeze a stopped node (nothing starts it)
	// and let it be started again.
	OpFreeze   Op = "freeze"
	OpUnfreeze Op = "unfreeze"
	// OpReconcile checks the node's process against the record and
	// corrects the record (see Probe).
	OpReconcile Op = "reconcile"
	// OpCancel cancels the graceful wait of the operation in flight
	// (Target): it ends REVOKED and the node is left as it is.
	OpCancel Op = "cancel"
	// OpReload, OpCreate: the records of GNS3's reload and of a create.
	OpReload Op = "reload"
)

// DefaultGracefulTimeout is how long a graceful stop waits for the guest
// when neither the request nor Config says (Nova's shutdown_timeout).
const DefaultGracefulTimeout = 60 * time.Second

// powerButtonRetry is how often a graceful stop presses the power button
// again while it waits (Nova's shutdown_retry_interval): a guest that was
// still booting may have missed the first press.
const powerButtonRetry = 10 * time.Second

// Operate asks a node for a lifecycle operation, strictly.
type Operate struct {
	NodeRef
	Op Op
	// Force: a stop ends the process at once (and overtakes a graceful
	// stop or soft reboot in flight); a reboot is a hard one.
	Force bool
	// Timeout bounds a graceful wait for the guest (stop, soft reboot,
	// the power-off of a resize); zero is Config.GracefulTimeout.
	Timeout time.Duration
	// CPUs and RAMMB are a resize's new size.
	CPUs, RAMMB int
	// Name is a rename's new name.
	Name string
	// Confirm: a resize takes effect with nothing left to confirm or
	// revert.
	Confirm bool
	// Apply: a start, stop or reboot applies the pending definition (if
	// any) while the node is off; a reboot then powers the machine off
	// and on rather than resetting it in place.
	Apply bool
	// Freeze: a stop leaves the node frozen.
	Freeze bool
	// CDImage is an image a start boots from, the first boot only with
	// CDImageOnce (the node's kind must be a kind.CDBooter).
	CDImage     string
	CDImageOnce bool
	// Target is the id or request id of the operation a cancel cancels.
	Target string
	// RequestID is the caller's id for the request, kept in the record.
	RequestID string
	// Wait answers when the operation has ended, rather than as soon as
	// it is recorded.
	Wait bool
}

// Outcome is what Operate answers: the node as it is then, and the
// operation's record.
type Outcome struct {
	Node *replay.Node
	Op   replay.Operation
}

// Operate runs a lifecycle operation. The error is a StateError (class
// ErrConflict) when the node's state does not allow it, ErrUnsupported
// (class ErrConflict) when the node's kind does not have it.
func (c *Client) Operate(ctx context.Context, cmd Operate) (Outcome, error) {
	return call[Outcome](ctx, c, cmd)
}

// ErrUnsupported is what an operation the node's kind does not have fails
// with (wrapped in a classified error of class ErrConflict).
var ErrUnsupported = kind.ErrUnsupported

// StateError is an operation refused because of the node's state.
type StateError struct {
	Op     Op
	Status replay.NodeStatus
	// Task is the node's transitional state, "" when none.
	Task string
	// Busy says the state allows the operation but another one is in
	// flight (InFlight).
	Busy     bool
	InFlight *replay.Operation
	// Resized says a resize waits to be confirmed or reverted.
	Resized bool
	// Frozen says the node is frozen.
	Frozen bool
}

func (e *StateError) Error() string {
	if e.Frozen && e.Op != OpUnfreeze {
		return fmt.Sprintf("cannot %s the node while it is frozen", e.Op)
	}
	if e.Busy {
		return fmt.Sprintf("cannot %s the node while it is %s", e.Op, e.Task)
	}
	if e.Resized && (e.Op == OpResize) {
		return fmt.Sprintf("cannot %s the node while a resize waits to be confirmed", e.Op)
	}
	return fmt.Sprintf("cannot %s the node while it is %s", e.Op, e.Status)
}

func stateError(e *StateError) error {
	return &Error{Class: ErrConflict, Msg: e.Error(), Err: e}
}

// allowed are the stable states each operation may start from.
var allowed = map[Op][]replay.NodeStatus{
	OpStart:    {replay.NodeStopped},
	OpStop:     {replay.NodeRunning, replay.NodePaused, replay.NodeError},
	OpPause:    {replay.NodeRunning},
	OpUnpause:  {replay.NodePaused},
	OpSuspend:  {replay.NodeRunning},
	OpResume:   {replay.NodeSuspended},
	OpResize:   {replay.NodeRunning, replay.NodeStopped},
	OpFreeze:   {replay.NodeStopped},
	OpUnfreeze: {replay.NodeStopped},
}

// rebootFrom are the states a reboot may start from: a soft one needs a
// running guest, a hard one powers on whatever is there (Nova's rules).
var rebootFrom = map[bool][]replay.NodeStatus{
	false: {replay.NodeRunning},
	true:  {replay.NodeRunning, replay.NodePaused, replay.NodeStopped, replay.NodeSuspended, replay.NodeError},
}

// Console is what it takes to reach a node's console.
type Console struct {
	// Type is the console type (telnet, vnc...).
	Type string
	// Host and Port are where it listens.
	Host string
	Port int
	// Password is the VNC password, "" for none.
	Password string
}

// Console returns a running node's console credentials.
func (c *Client) Console(projectID, nodeID string) (Console, error) {
	n, err := c.Node(projectID, nodeID)
	if err != nil {
		return Console{}, err
	}
	switch {
	case n.Console == 0:
		return Console{}, Conflict("Node %s has no console", n.Name)
	case !n.Running():
		return Console{}, Conflict("Node %s is not started", n.Name)
	}
	return Console{Type: n.ConsoleType, Host: c.cfg.Host, Port: n.Console, Password: n.ConsolePassword}, nil
}

// Size returns the CPUs and memory of a node of a kind that has a size.
func (c *Client) Size(n *replay.Node) (cpus, ramMB int, ok bool) {
	if s, has := c.cfg.driver(n.Kind).(kind.Sizer); has {
		cpus, ramMB = s.Size(n.Properties)
		return cpus, ramMB, true
	}
	return 0, 0, false
}

// operate validates and runs a strict operation (see Operate). It answers
// req itself: at once when the operation is recorded, unless c.Wait.
func (a *nodeActor) operate(req *request, c Operate) {
	cur := a.state.InFlight()
	overtake, err := a.checkOperate(c, cur)
	if err != nil {
		req.respond(nil, err)
		return
	}
	switch c.Op {
	case OpRename:
		req.respond(a.rename(c))
		return
	case OpConfirmResize:
		req.respond(a.confirmResize(c))
		return
	case OpDelete:
		req.respond(a.deleteOp(c, cur))
		return
	case OpDefine:
		req.respond(a.define(c))
		return
	case OpFreeze, OpUnfreeze:
		req.respond(a.freeze(c))
		return
	case OpReconcile:
		req.respond(a.reconcile(c))
		return
	case OpCancel:
		req.respond(a.cancel(c, cur))
		return
	}
	rec := a.newOperation(c)
	var evs []events.Data
	if overtake {
		evs = append(evs, a.revoked(cur, fmt.Sprintf("overtaken by the forced stop %s", rec.ID)))
		a.cancelPending()
	}
	if err := a.commit(append(evs, started(rec))...); err != nil {
		req.respond(nil, err)
		return
	}
	if c.Wait {
		a.rt.waiters = append(a.rt.waiters, waiter{req: req, op: rec.ID})
	} else {
		req.respond(a.outcome(rec.ID), nil)
	}
	a.run(rec)
}

// checkOperate is validate: the state must allow the operation, the kind
// must have it, and no other may be in flight, but for a forced stop that
// overtakes a graceful one (overtake true).
func (a *nodeActor) checkOperate(c Operate, cur *replay.Operation) (overtake bool, err error) {
	n, info := a.state, a.drv.Info()
	refuse := func(busy bool) error {
		return stateError(&StateError{Op: c.Op, Status: n.Status, Task: n.Task, Busy: busy, InFlight: cur,
			Resized: n.Resize != nil, Frozen: n.Frozen})
	}
	if err := a.checkExtras(c, refuse); err != nil {
		return false, err
	}
	from, ok := allowed[c.Op]
	switch c.Op {
	case OpReboot:
		from, ok = rebootFrom[c.Force], true
	case OpConfirmResize, OpRevertResize:
		if n.Resize == nil {
			return false, refuse(false)
		}
	case OpRename:
		if err := checkName("node", c.Name); err != nil {
			return false, err
		}
		return false, nil // a rename changes no state: it may come any time
	case OpDelete:
		return false, nil // a delete overtakes anything
	case OpDefine:
		return false, a.checkDefine(c)
	case OpCancel:
		return false, nil // cancel says itself what it cannot cancel
	case OpReconcile:
		// Anything but an operation in flight, whose effect is the
		// process's state to come.
		if cur != nil {
			return false, refuse(true)
		}
		return false, nil
	}
	if ok && !slices.Contains(from, n.Status) {
		return false, refuse(false)
	}
	if c.Op == OpResize && n.Resize != nil {
		return false, refuse(false)
	}
	if cur != nil {
		graceful := (cur.Op == string(OpStop) || cur.Op == string(OpReboot)) && !cur.Force
		if !(c.Op == OpStop && c.Force && graceful) {
			return false, refuse(true)
		}
		overtake = true
	}
	unsupported := func(what string) error {
		return &Error{Class: ErrConflict, Msg: fmt.Sprintf("a %s node cannot %s", info.Title, what), Err: ErrUnsupported}
	}
	switch {
	case info.AlwaysOn && c.Op != OpRename && c.Op != OpDelete:
		return false, &Error{Class: ErrConflict, Msg: fmt.Sprintf("a %s node always runs: it has no %s", info.Title, c.Op), Err: ErrUnsupported}
	case c.Op == OpUnpause && n.PauseCause == events.CauseSignal:
		// A signal paused it; a signal continues it, whatever the kind.
	case (c.Op == OpPause || c.Op == OpUnpause) && !info.Can(kind.CanPause):
		return false, unsupported("be paused")
	case (c.Op == OpSuspend || c.Op == OpResume) && !info.Can(kind.CanSave):
		return false, unsupported("be suspended to disk")
	case c.Op == OpResize || c.Op == OpRevertResize:
		s, ok := a.drv.(kind.Sizer)
		if !ok {
			return false, unsupported("be resized")
		}
		if c.Op == OpResize {
			if _, err := s.Resize(a.view(), c.CPUs, c.RAMMB); err != nil {
				return false, err
			}
		}
	}
	return overtake, nil
}

// task is the transitional state of an operation.
func task(c Operate) string {
	switch c.Op {
	case OpStart:
		return replay.TaskStarting
	case OpStop:
		return replay.TaskStopping
	case OpReboot:
		if c.Force {
			return replay.TaskRebootingHard
		}
		return replay.TaskRebooting
	case OpPause:
		return replay.TaskPausing
	case OpUnpause:
		return replay.TaskUnpausing
	case OpSuspend:
		return replay.TaskSuspending
	case OpResume:
		return replay.TaskResuming
	case OpResize, OpRevertResize:
		return replay.TaskResizing
	case OpDelete:
		return replay.TaskDeleting
	}
	return ""
}

// waiter is a request answered when its operation ends.
type waiter struct {
	req *request
	op  string
}

// outcome is the node and the record of operation id, as they are now.
func (a *nodeActor) outcome(id string) Outcome {
	op, _ := a.state.Operation(id)
	return Outcome{Node: a.state, Op: op}
}

// answerWaiters answers the requests waiting for operations that ended.
func (a *nodeActor) answerWaiters() {
	keep := a.rt.waiters[:0]
	for _, w := range a.rt.waiters {
		if op, ok := a.state.Operation(w.op); ok && !op.InFlight() {
			w.req.respond(Outcome{Node: a.state, Op: op}, nil)
			continue
		} else if !ok || !a.state.Exists() {
			w.req.respond(Outcome{Node: a.state, Op: op}, nil)
			continue
		}
		keep = append(keep, w)
	}
	a.rt.waiters = keep
}

// gracefulTimeout is the wait of a graceful operation.
func (a *nodeActor) gracefulTimeout(c Operate) time.Duration {
	switch {
	case c.Timeout > 0:
		return c.Timeout
	case a.cfg.GracefulTimeout > 0:
		return a.cfg.GracefulTimeout
	}
	return DefaultGracefulTimeout
}

// graceful reports whether an operation begins by asking the guest to
// power off and waiting for it.
func (a *nodeActor) graceful(op Op, force bool) bool {
	if force || a.rt.run == nil || a.state.Status != replay.NodeRunning || !a.drv.Info().Can(kind.CanPowerButton) {
		return false
	}
	_, ok := a.rt.run.(kind.PowerButton)
	return ok && (op == OpStop || op == OpReboot || op == OpResize || op == OpRevertResize)
}

func (a *nodeActor) newOperation(c Operate) replay.Operation {
	op := replay.Operation{State: opStarted}
	op.ID, op.Op, op.RequestID, op.Task, op.Force = newOpID(), string(c.Op), c.RequestID, task(c), c.Force
	op.CPUs, op.RAMMB, op.Confirm, op.Apply, op.Freeze = c.CPUs, c.RAMMB, c.Confirm, c.Apply, c.Freeze
	op.CDImage, op.CDImageOnce = c.CDImage, c.CDImageOnce
	if a.graceful(c.Op, c.Force) {
		t := a.gracefulTimeout(c)
		deadline := a.cfg.now().Add(t).UTC()
		op.TimeoutMS, op.Deadline = t.Milliseconds(), &deadline
	}
	return op
}

// run does the effect of an operation just recorded, or begins it: a
// graceful one waits for the guest without holding the mailbox.
func (a *nodeActor) run(op replay.Operation) {
	defer a.answerWaiters()
	if op.Deadline != nil {
		a.powerOff(op)
		return
	}
	var err error
	switch Op(op.Op) {
	case OpStart:
		err = a.opLaunch(op, false)
	case OpResume:
		err = a.opLaunch(op, true)
	case OpStop:
		err = a.opStopNow(op)
	case OpReboot:
		err = a.opReboot(op)
	case OpPause, OpUnpause:
		err = a.opPause(op, Op(op.Op) == OpPause)
	case OpSuspend:
		err = a.opSave(op)
	case OpResize:
		err = a.opApplySize(op, false)
	case OpRevertResize:
		err = a.opApplySize(op, true)
	default:
		err = a.finish(op, fmt.Errorf("actors: no effect for operation %s", op.Op))
	}
	if err != nil {
		a.log.Error("could not record the end of an operation", "op", op.Op, "id", op.ID, "err", err)
	}
}

// finish records the end of an operation with the events its effect
// produced: SUCCESS, or FAILURE with the effect's error.
func (a *nodeActor) finish(op replay.Operation, effect error, evs ...events.Data) error {
	end := endOf(op.ID, effect)
	return a.commit(append(evs, end)...)
}

// opLaunch starts the node (restoring its saved state for a resume).
func (a *nodeActor) opLaunch(op replay.Operation, restore bool) error {
	if apply, err := a.applyDefinition(op); err != nil {
		return a.finish(op, err)
	} else if apply != nil {
		if err := a.commit(apply); err != nil {
			return err
		}
	}
	started, err := a.launchWith(launchOpts{restore: restore, cd: op.CDImage, cdOnce: op.CDImageOnce})
	if err != nil {
		return a.finish(op, err, startFailed(err))
	}
	if err := a.commit(started, endOf(op.ID, nil)); err != nil {
		a.teardown(kind.StopKill)
		return err
	}
	return nil
}

// opStopNow ends the process at once (a forced stop, or a kind whose
// guest cannot be asked); a node in error has none, and is stopped.
func (a *nodeActor) opStopNow(op replay.Operation) error {
	mode := kind.StopKill
	if !op.Force {
		mode = kind.StopRequest
	}
	code := a.teardown(mode)
	evs, err := a.afterStop(op, stopped(code))
	return a.finish(op, err, evs...)
}

// opReboot is a hard reboot, or a soft one of a kind whose guest cannot
// be asked: the machine reset in place where the kind can, or powered
// off and on.
func (a *nodeActor) opReboot(op replay.Operation) error {
	var evs []events.Data
	if a.rt.run != nil && a.drv.Info().Can(kind.CanReset) && !a.applies(op) {
		if err := a.rt.run.Reset(a.view()); err == nil {
			evs = append(evs, reset())
			if a.state.Status == replay.NodePaused {
				if err := a.rt.run.Resume(); err != nil {
					return a.finish(op, err, evs...)
				}
				evs = append(evs, resumed())
			}
			return a.finish(op, nil, evs...)
		}
	}
	if a.rt.run != nil {
		evs = append(evs, stopped(a.teardown(kind.StopKill)))
	}
	if err := a.commit(evs...); err != nil {
		return err
	}
	return a.opLaunch(op, false)
}

func (a *nodeActor) opPause(op replay.Operation, pause bool) error {
	run := a.rt.run
	do, ev := run.Suspend, events.Data(suspendedEv())
	if !pause {
		do, ev = a.continueRun, resumed()
	}
	if err := do(); err != nil {
		return a.finish(op, err)
	}
	return a.finish(op, nil, ev)
}

// opSave saves the machine to its disks, then ends the process.
func (a *nodeActor) opSave(op replay.Operation) error {
	saver, ok := a.rt.run.(kind.Saver)
	if !ok {
		return a.finish(op, ErrUnsupported)
	}
	if err := saver.Save(); err != nil {
		return a.finish(op, err)
	}
	code := a.teardown(kind.StopKill)
	return a.finish(op, nil, saved(code))
}

// opApplySize applies a resize (or puts the size before it back) to a
// node that does not run, or that a graceful power-off just stopped
// (wasRunning); such a node is started again.
func (a *nodeActor) opApplySize(op replay.Operation, revert bool) error {
	return a.applySize(op, revert, a.rt.run != nil)
}

// applySize records the size change after evs (the stop of a graceful
// power-off), ending a run that still goes on first, then starts the
// node again if restart.
func (a *nodeActor) applySize(op replay.Operation, revert, restart bool, evs ...events.Data) error {
	if a.rt.run != nil {
		evs = append(evs, stopped(a.teardown(kind.StopKill)))
	}
	change, err := a.sizeChange(op, revert)
	if err != nil {
		if cerr := a.commit(evs...); cerr != nil {
			return cerr
		}
		return a.finish(op, err)
	}
	evs = append(evs, change)
	if op.Confirm && !revert {
		evs = append(evs, resizeConfirmed())
	}
	if !restart {
		return a.finish(op, nil, evs...)
	}
	if err := a.commit(evs...); err != nil {
		return err
	}
	started, err := a.launchMode(false)
	if err != nil {
		return a.commit(startFailed(err), faulted(op.ID, err))
	}
	if err := a.commit(started, endOf(op.ID, nil)); err != nil {
		a.teardown(kind.StopKill)
		return err
	}
	return nil
}

// sizeChange is the event of a resize, or of its revert.
func (a *nodeActor) sizeChange(op replay.Operation, revert bool) (events.Data, error) {
	if revert {
		return resizeReverted(a.state.Resize.Previous), nil
	}
	s, ok := a.drv.(kind.Sizer)
	if !ok {
		return nil, ErrUnsupported
	}
	props, err := s.Resize(a.view(), op.CPUs, op.RAMMB)
	if err != nil {
		return nil, err
	}
	return resized(props, a.state.Properties), nil
}

// rename is a rename: an update of the name, and its record.
func (a *nodeActor) rename(c Operate) (Outcome, error) {
	rec := a.newOperation(c)
	name := c.Name
	if _, err := a.update(UpdateNode{NodeRef: c.NodeRef, Name: &name}); err != nil {
		return Outcome{}, err
	}
	if err := a.commit(endedRecord(rec, nil)); err != nil {
		return Outcome{}, err
	}
	return a.outcome(rec.ID), nil
}

// confirmResize drops the size a resize kept.
func (a *nodeActor) confirmResize(c Operate) (Outcome, error) {
	rec := a.newOperation(c)
	if err := a.commit(resizeConfirmed(), endedRecord(rec, nil)); err != nil {
		return Outcome{}, err
	}
	return a.outcome(rec.ID), nil
}

// deleteOp deletes the node, whatever is in flight: that is revoked.
func (a *nodeActor) deleteOp(c Operate, cur *replay.Operation) (Outcome, error) {
	rec := a.newOperation(c)
	var evs []events.Data
	if cur != nil {
		evs = append(evs, a.revoked(cur, "the node was deleted"))
		a.cancelPending()
	}
	if err := a.commit(append(evs, started(rec))...); err != nil {
		return Outcome{}, err
	}
	defer a.answerWaiters()
	if err := a.remove(events.NodeDeleted{}, endOf(rec.ID, nil)); err != nil {
		return Outcome{}, err
	}
	op := rec
	op.State = opSuccess
	return Outcome{Node: a.state, Op: op}, nil
}

// lenient runs one of GNS3's commands as GNS3 does, and records it. A
// stop overtakes a graceful stop or reboot in flight (a forced stop); any
// other command waits for no one and is refused while an operation is in
// flight.
func (a *nodeActor) lenient(op Op, do func() (*replay.Node, error)) (*replay.Node, error) {
	rec := a.newOperation(Operate{Op: op})
	rec.Deadline, rec.TimeoutMS = nil, 0
	if op == OpStart && a.state.Frozen && !a.state.Running() {
		return nil, Conflict("Node %s is frozen: unfreeze it before starting it", a.state.Name)
	}
	if cur := a.state.InFlight(); cur != nil {
		graceful := (cur.Op == string(OpStop) || cur.Op == string(OpReboot)) && !cur.Force
		if op != OpStop || !graceful {
			return nil, Conflict("Node %s is busy (%s); retry when it is done", a.state.Name, cur.Task)
		}
		a.cancelPending()
		if err := a.commit(a.revoked(cur, "overtaken by a stop")); err != nil {
			return nil, err
		}
	}
	n, err := do()
	if a.state.Exists() {
		if cerr := a.commit(endedRecord(rec, err)); cerr != nil {
			a.log.Error("could not record an operation", "op", op, "err", cerr)
		}
		if err == nil {
			n = a.state
		}
	}
	a.answerWaiters()
	return n, err
}

// revoked is the end of an operation in flight that another overtook.
func (a *nodeActor) revoked(op *replay.Operation, why string) events.Data {
	return endRevoked(op.ID, why)
}

// errorText is the record's words for an effect's error.
func errorText(err error) string {
	if msg, ok := PublicMessage(err); ok {
		return msg
	}
	if errors.Is(err, ErrUnsupported) {
		return ErrUnsupported.Error()
	}
	return err.Error()
}
