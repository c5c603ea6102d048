package actors

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"

	"labd/actors/kind"
	"labd/events"
	"labd/replay"
)

// Graceful operations. A graceful stop (and a soft reboot, and the
// power-off before a running node is resized) presses the guest's power
// button and waits for its process to end, up to the operation's recorded
// deadline, pressing again every powerButtonRetry; then it forces. The
// wait holds no mailbox: the actor serves other requests meanwhile (a
// forced stop may overtake it), and learns of the end from the process's
// exit or from a timer. A labd restarted in the middle goes on waiting
// until the recorded deadline, for the adopted process.

const (
	opStarted = events.OpStarted
	opSuccess = events.OpSuccess
)

// pendingOff is a graceful wait in progress.
type pendingOff struct {
	id       string
	deadline time.Time
	timeout  time.Duration
	timer    *time.Timer
	retry    *time.Timer
}

// offDeadline tells the actor a graceful wait reached its deadline.
type offDeadline struct{ id string }

// offRetry tells the actor to press the power button again.
type offRetry struct{ id string }

// resumeOp asks the actor to settle the operation its history leaves in
// flight (sent once when it starts on a history).
type resumeOp struct{}

// powerOff presses the power button and waits (see above).
func (a *nodeActor) powerOff(op replay.Operation) {
	a.pressPowerButton()
	a.armPowerOff(op)
}

func (a *nodeActor) pressPowerButton() {
	if pb, ok := a.rt.run.(kind.PowerButton); ok {
		if err := pb.PressPowerButton(); err != nil {
			// The deadline forces it.
			a.log.Warn("could not press the power button", "err", err)
		}
	}
}

func (a *nodeActor) armPowerOff(op replay.Operation) {
	sys, self, id := a.sys, a.self, op.ID
	p := &pendingOff{id: id, deadline: *op.Deadline, timeout: time.Duration(op.TimeoutMS) * time.Millisecond}
	p.timer = time.AfterFunc(max(p.deadline.Sub(a.cfg.now()), 0), func() { sys.Root.Send(self, offDeadline{id}) })
	p.retry = time.AfterFunc(powerButtonRetry, func() { sys.Root.Send(self, offRetry{id}) })
	a.rt.off = p
}

// cancelPending stops a graceful wait's timers.
func (a *nodeActor) cancelPending() {
	if p := a.rt.off; p != nil {
		p.timer.Stop()
		p.retry.Stop()
		a.rt.off = nil
	}
}

func (a *nodeActor) retryPowerOff(id string) {
	p := a.rt.off
	if p == nil || p.id != id || a.rt.run == nil {
		return
	}
	a.pressPowerButton()
	sys, self := a.sys, a.self
	p.retry = time.AfterFunc(powerButtonRetry, func() { sys.Root.Send(self, offRetry{id}) })
}

// offEnded ends a graceful wait: the process exited (forced false), or
// the deadline came (forced true). What follows depends on the operation.
func (a *nodeActor) offEnded(id string, forced bool) {
	p, op := a.rt.off, a.state.InFlight()
	if p == nil || p.id != id || op == nil || op.ID != id {
		return
	}
	a.cancelPending()
	defer a.answerWaiters()
	if err := a.afterPowerOff(*op, forced, p.timeout); err != nil {
		a.log.Error("could not record the end of an operation", "op", op.Op, "id", op.ID, "err", err)
	}
}

func (a *nodeActor) afterPowerOff(op replay.Operation, forced bool, timeout time.Duration) error {
	mode, how := kind.StopWait, "the guest powered off"
	if forced {
		mode, how = kind.StopKill, fmt.Sprintf("the guest did not power off within %v, so it was forced", timeout)
	}
	if Op(op.Op) == OpReboot && forced && a.drv.Info().Can(kind.CanReset) && a.rt.run != nil && !a.applies(op) {
		// Nova's soft reboot falls back to a hard one.
		if err := a.rt.run.Reset(a.view()); err == nil {
			return a.commit(reset(), endedWith(op.ID, how+": a hard reboot"))
		}
	}
	code := a.teardown(mode)
	stop := stopped(code)
	if forced {
		stop.Message = how
	}
	switch Op(op.Op) {
	case OpStop:
		evs, err := a.afterStop(op, stop)
		if err != nil {
			return a.commit(append(evs, endOf(op.ID, err))...)
		}
		return a.commit(append(evs, endedWith(op.ID, how))...)
	case OpResize, OpRevertResize:
		return a.applySize(op, Op(op.Op) == OpRevertResize, true, stop)
	}
	// A soft reboot: on again.
	if err := a.commit(stop); err != nil {
		return err
	}
	return a.opLaunch(op, false)
}

// resumeOperation settles the operation a restarted labd finds in flight:
// a graceful wait goes on for the adopted process until its deadline; any
// other operation ends by what is real now.
func (a *nodeActor) resumeOperation() {
	op := a.state.InFlight()
	if op == nil || a.rt.off != nil {
		return
	}
	defer a.answerWaiters()
	var err error
	switch {
	case op.Deadline != nil && a.rt.run != nil && a.state.Status == replay.NodeRunning:
		a.log.Info("resuming a graceful wait labd was in", "op", op.Op, "id", op.ID, "deadline", op.Deadline)
		a.powerOff(*op)
		return
	case Op(op.Op) == OpStop && a.rt.run != nil:
		err = a.opStopNow(*op)
	case Op(op.Op) == OpStop:
		err = a.commit(endedWith(op.ID, "the node stopped while labd was down"))
	default:
		err = a.commit(endOf(op.ID, fmt.Errorf("labd restarted while the operation was in flight; the node is %s", a.state.Status)))
	}
	if err != nil {
		a.log.Error("could not settle an operation in flight", "op", op.Op, "id", op.ID, "err", err)
	}
}

// interrupted ends the operation in flight because labd shuts down and
// stopped the node: a stop has what it asked for, anything else failed.
func (a *nodeActor) interrupted() {
	a.cancelPending()
	op := a.state.InFlight()
	if op == nil {
		return
	}
	end := events.Data(endOf(op.ID, fmt.Errorf("labd shut down while the operation was in flight")))
	if Op(op.Op) == OpStop {
		end = endedWith(op.ID, "labd shut down and stopped the node")
	}
	if err := a.commit(end); err != nil {
		a.log.Error("could not record the end of an operation", "op", op.Op, "err", err)
	}
	a.answerWaiters()
}

func newOpID() string { return uuid.NewString() }

// The events of the lifecycle.

func started(op replay.Operation) events.Data {
	return events.OperationStarted{Operation: op.Operation, State: op.State}
}

func endOf(id string, err error) events.OperationEnded {
	if err != nil {
		return events.OperationEnded{ID: id, State: events.OpFailure, Error: errorText(err)}
	}
	return events.OperationEnded{ID: id, State: events.OpSuccess}
}

func endedWith(id, msg string) events.Data {
	return events.OperationEnded{ID: id, State: events.OpSuccess, Message: msg}
}

func endRevoked(id, why string) events.Data {
	return events.OperationEnded{ID: id, State: events.OpRevoked, Message: why}
}

// endedRecord is the record of an operation that ended as it was
// accepted.
func endedRecord(op replay.Operation, err error) events.Data {
	end := endOf(op.ID, err)
	rec := op.Operation
	end.Record = &rec
	return end
}

func faulted(id string, err error) events.Data {
	end := endOf(id, err)
	end.Fault = true
	return end
}

func stopped(code int) events.NodeStopped {
	return events.NodeStopped{Reason: events.StopRequested, ExitCode: &code}
}

func startFailed(err error) events.Data { return events.NodeStartFailed{Error: err.Error()} }
func reset() events.Data                { return events.NodeReset{Cause: events.CauseRequested} }
func resumed() events.Data              { return events.NodeResumed{Cause: events.CauseRequested} }
func suspendedEv() events.Data          { return events.NodeSuspended{Cause: events.CauseRequested} }
func saved(code int) events.Data        { return events.NodeSaved{ExitCode: &code} }
func resizeConfirmed() events.Data      { return events.ResizeConfirmed{} }

func resized(props, prev json.RawMessage) events.Data {
	return events.NodeResized{Properties: props, Previous: prev}
}

func resizeReverted(prev json.RawMessage) events.Data {
	return events.ResizeReverted{Properties: prev}
}
