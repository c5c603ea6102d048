package actors

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"labd/actors/kind"
	"labd/events"
	"labd/nio/pcap"
)

// Crash recovery. A node's process runs in its own session, so it outlives
// a labd that crashes (or stops with --keep-nodes); its node.started event
// records what it takes to recognise it and take it over again. A node
// that runs inside labd (a switch) is rebuilt from its events.

// reconcileRecorded settles a run the history says goes on but this actor
// does not own: labd restarted, or a stop could not be recorded. A run
// that is still the recorded one is adopted; one that is gone, or cannot
// be taken over, is recorded as stopped, and stopped if need be: no node
// process runs unowned.
func (a *nodeActor) reconcileRecorded() {
	if !a.state.Running() || a.rt.run != nil {
		return
	}
	rec := recordOf(*a.state.Process)
	err := a.adopt(rec)
	if err == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	found := kind.KillRecorded(ctx, rec.PID, rec.ProcStart)
	cancel()
	kind.KillStragglers(a.dir())
	a.host().ReleaseTunnels(rec.Tunnels)
	msg := "labd restarted; the node's process was gone"
	if found {
		msg = fmt.Sprintf("labd restarted; the node's process could not be adopted (%v) and was stopped", err)
	} else if rec.PID == 0 {
		msg = fmt.Sprintf("labd restarted; the node could not be rebuilt (%v)", err)
	}
	a.log.Warn("a recorded node run was not adopted", "pid", rec.PID, "found", found, "err", err)
	if err := a.commit(events.NodeStopped{Reason: events.StopRestarted, Message: msg}); err != nil {
		a.log.Error("could not record the node's stop", "err", err)
	}
}

// adopt takes over the recorded run if it still goes on: its link ends
// are bound again on the recorded ports (so its links carry traffic
// again), its console proxy and control connection re-attached, and the
// adoption recorded. On failure nothing of the run is left open, and the
// process is left to the caller.
func (a *nodeActor) adopt(rec kind.Record) error {
	if a.drv == nil {
		return fmt.Errorf("this labd does not know node type %s", a.state.Kind)
	}
	run, err := a.drv.Adopt(a.host(), a.view(), rec)
	if err != nil {
		return err
	}
	// The console lazily: a busy process must not hold labd's startup.
	if err := a.serveRun(run, true); err != nil {
		run.Release()
		return err
	}
	if err := a.commit(events.NodeAdopted{PID: rec.PID, ProcStart: rec.ProcStart}); err != nil {
		// The history already says it runs; the record of who owns it
		// is what is missing.
		a.log.Error("could not record the adoption", "err", err)
	}
	if run.Process() != nil {
		a.log.Info("adopted the node's process", "pid", rec.PID)
	} else {
		a.log.Info("rebuilt the node inside labd")
	}
	return nil
}

// resumeCaptures reopens the captures the history says run but this
// actor has not open (labd restarted): frames are appended to their files.
func (a *nodeActor) resumeCaptures() {
	for _, l := range a.state.Links {
		key := kind.Port{Adapter: l.Adapter, Port: l.Port}
		if l.Capture == nil || a.rt.captures[key] != nil {
			continue
		}
		cp, err := pcap.Resume(filepath.Join(capturesDir(a.cfg, a.ref.ProjectID), l.Capture.File))
		if err != nil {
			a.log.Error("could not resume a capture", "adapter", l.Adapter, "port", l.Port, "err", err)
			continue
		}
		if a.rt.captures == nil {
			a.rt.captures = map[kind.Port]*pcap.Capture{}
		}
		a.rt.captures[key] = cp
		if e := a.end(key); e != nil {
			e.SetCapture(cp)
		}
	}
	a.publishLive()
}
