package actors

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"labd/actors/qemu/qmp"
	"labd/actors/vpcs"
	"labd/events"
	"labd/nio"
	"labd/nio/pcap"
)

// Crash recovery. A node's process runs in its own session, so it outlives
// a labd that crashes (or stops with --keep-nodes); its node.started event
// records what it takes to recognise it and take it over again.

// reconcileRecorded settles a process the history says runs but this actor
// does not own: labd restarted, or a stop could not be recorded. A process
// that is still the recorded one is adopted; one that is gone, or cannot be
// taken over, is recorded as stopped, and stopped if need be: no node
// process runs unowned.
func (a *nodeActor) reconcileRecorded() {
	if !a.state.Running() || a.rt.proc != nil {
		return
	}
	rec := *a.state.Process
	err := a.adopt(rec)
	if err == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	found := killRecorded(ctx, rec.PID, rec.ProcStart)
	cancel()
	killStragglers(a.dir())
	a.releaseTunnels(rec.Tunnels)
	msg := "labd restarted; the node's process was gone"
	if found {
		msg = fmt.Sprintf("labd restarted; the node's process could not be adopted (%v) and was stopped", err)
	}
	a.log.Warn("a recorded node process was not adopted", "pid", rec.PID, "found", found, "err", err)
	if err := a.commit(events.NodeStopped{Reason: events.StopRestarted, Message: msg}); err != nil {
		a.log.Error("could not record the node's stop", "err", err)
	}
}

// adopt takes over the recorded process if it still runs: its bridges are
// bound again on the recorded tunnel ports (so its links carry traffic
// again), its console proxy and QMP connection re-attached, and the
// adoption recorded. On failure nothing of the run is left open, and the
// process is left to the caller.
func (a *nodeActor) adopt(rec events.NodeStarted) (err error) {
	logName := vpcs.LogName
	if a.state.Kind == KindQEMU {
		logName = qemuLog
	}
	p, err := adoptProcess(rec.PID, rec.ProcStart, filepath.Join(a.dir(), logName))
	if err != nil {
		return err
	}
	rt := runtime{proc: p, internalConsole: rec.InternalConsole, tunnels: rec.Tunnels,
		bridges: map[[2]int]*nio.Bridge{}, captures: a.rt.captures}
	defer func() {
		if err != nil {
			a.rt.proc = nil
			p.release()
			a.detachRun(&rt)
		}
	}()
	if err := a.openBridges(&rt); err != nil {
		return err
	}
	if rec.QMP != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		client, err := qmp.Dial(ctx, "unix", rec.QMP)
		cancel()
		if err != nil {
			return fmt.Errorf("QMP: %w", err)
		}
		// The properties it started with are not recorded apart: a
		// reload restarts it only after a change made from now on.
		rt.qemu = &qemuRun{qmp: client, qmpPath: rec.QMP, props: a.state.Properties}
	}
	if a.state.ConsoleType == ConsoleTelnet && a.state.Console != 0 && rt.internalConsole != 0 {
		// Lazily: a busy process must not hold labd's startup.
		if rt.proxy, err = a.openConsole(p, rt.internalConsole, a.state.Console, true); err != nil {
			return err
		}
	}
	a.watch(&rt)
	a.rt = rt
	a.publishLive()
	if err := a.commit(events.NodeAdopted{PID: rec.PID, ProcStart: rec.ProcStart}); err != nil {
		// The history already says it runs; the record of who owns it
		// is what is missing.
		a.log.Error("could not record the adoption", "err", err)
	}
	a.log.Info("adopted the node's process", "pid", rec.PID)
	return nil
}

// detachRun closes what labd holds of a run (console proxy, bridges, QMP
// connection) and leaves the process running and the ports held: for a
// process another labd will adopt.
func (a *nodeActor) detachRun(rt *runtime) {
	if rt.proxy != nil {
		_ = rt.proxy.Close()
		rt.proxy = nil
	}
	for key, br := range rt.bridges {
		_ = br.Close()
		delete(rt.bridges, key)
	}
	if rt.qemu != nil && rt.qemu.qmp != nil {
		_ = rt.qemu.qmp.Close() // the socket stays, for the next labd
	}
	rt.qemu = nil
}

// release leaves the node's process running for the next labd to adopt
// (labd stops with --keep-nodes).
func (a *nodeActor) release() {
	a.rt.proc.release()
	a.detachRun(&a.rt)
	a.rt.proc = nil
	a.publishLive()
}

// resumeCaptures reopens the captures the history says run but this
// actor has not open (labd restarted): frames are appended to their files.
func (a *nodeActor) resumeCaptures() {
	for _, l := range a.state.Links {
		key := [2]int{l.Adapter, l.Port}
		if l.Capture == nil || a.rt.captures[key] != nil {
			continue
		}
		cp, err := pcap.Resume(filepath.Join(capturesDir(a.cfg, a.ref.ProjectID), l.Capture.File))
		if err != nil {
			a.log.Error("could not resume a capture", "adapter", l.Adapter, "port", l.Port, "err", err)
			continue
		}
		if a.rt.captures == nil {
			a.rt.captures = map[[2]int]*pcap.Capture{}
		}
		a.rt.captures[key] = cp
		if br := a.rt.bridges[key]; br != nil {
			br.SetCapture(cp)
		}
	}
	a.publishLive()
}
