package replay_test

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"labd/events"
	"labd/replay"
)

const (
	nid  = "2b7f0a3e-6a8e-4d8e-9c71-3f6c1d2e4b5a"
	nid2 = "9e0c5d4b-3a2f-4e1d-8c7b-6a5f4e3d2c1b"
)

func nrec(seq uint64, project, node string, d events.Data) events.Record {
	return events.Record{
		Event:   events.New(t0.Add(time.Duration(seq)*time.Second), project, node, d),
		Seq:     seq,
		Subject: events.NodeSubject(compute, project, node),
	}
}

func started(tunnelPorts ...int) events.NodeStarted {
	return events.NodeStarted{PID: 42, ProcStart: 7, CommandLine: "vpcs -p 1",
		Tunnels: []events.Tunnel{{NodePort: tunnelPorts[0], BridgePort: tunnelPorts[1]}}}
}

func TestNodeLifecycle(t *testing.T) {
	nio := events.NIO{Type: "nio_udp", LPort: 20000, RHost: "127.0.0.1", RPort: 20001}
	code := 0
	s := fold(t,
		rec(1, pid, events.ProjectCreated{Name: "p"}),
		nrec(2, pid, nid, events.NodeCreated{Kind: "vpcs", Name: "PC1", Console: 5000, ConsoleType: "telnet"}),
		nrec(3, pid, nid, events.NIOAdded{Adapter: 0, Port: 0, NIO: nio}),
		nrec(4, pid, nid, events.CaptureStarted{Adapter: 0, Port: 0, File: "a.pcap", LinkType: "DLT_EN10MB"}),
		nrec(5, pid, nid, started(20010, 20011)),
		nrec(6, pid, nid, events.NodeUpdated{Name: "PC2", Console: 5001, ConsoleType: "telnet"}),
	)
	n := s.Nodes[replay.NodeKey(pid, nid)]
	if !n.Running() || n.Name != "PC2" || n.Console != 5001 || n.Version != 6 || n.CommandLine != "vpcs -p 1" {
		t.Fatalf("folded node %+v", n)
	}
	l, ok := n.Link(0, 0)
	if !ok || !reflect.DeepEqual(l.NIO, nio) || l.Capture == nil || l.Capture.File != "a.pcap" {
		t.Fatalf("link %+v %v", l, ok)
	}
	if got := slices.Sorted(slices.Values(s.UDPPorts())); !slices.Equal(got, []int{20010, 20011}) {
		t.Fatalf("UDP ports held %v, want the running node's tunnels", got)
	}
	if got := s.ConsolePorts(); !slices.Equal(got, []int{5001}) {
		t.Fatalf("console ports %v, want the renamed node's 5001", got)
	}
	if err := s.Apply(nrec(7, pid, nid, events.NodeStopped{Reason: events.StopExited, ExitCode: &code})); err != nil {
		t.Fatal(err)
	}
	if n := s.Nodes[replay.NodeKey(pid, nid)]; n.Running() || n.Status != replay.NodeStopped || n.LastStop.Reason != events.StopExited {
		t.Fatalf("after stop %+v", n)
	}
	if len(s.UDPPorts()) != 0 {
		t.Fatalf("a stopped node still holds %v", s.UDPPorts())
	}
	// Closing the project closes its node and frees its console port, and
	// the node can be created again with the same id.
	if err := s.Apply(rec(8, pid, events.ProjectClosed{})); err != nil {
		t.Fatal(err)
	}
	if n := s.Nodes[replay.NodeKey(pid, nid)]; n.Exists() || len(s.ConsolePorts()) != 0 {
		t.Fatalf("after project close: %+v, consoles %v", n, s.ConsolePorts())
	}
	for _, r := range []events.Record{
		rec(9, pid, events.ProjectCreated{Name: "p"}),
		nrec(10, pid, nid, events.NodeCreated{Kind: "vpcs", Name: "PC1", Console: 5000, ConsoleType: "telnet"}),
	} {
		if err := s.Apply(r); err != nil {
			t.Fatal(err)
		}
	}
}

func TestNodeFoldRefusesIllegalHistories(t *testing.T) {
	base := []events.Record{
		rec(1, pid, events.ProjectCreated{Name: "p"}),
		nrec(2, pid, nid, events.NodeCreated{Kind: "vpcs", Name: "PC1", Console: 5000, ConsoleType: "telnet"}),
	}
	nio := events.NIO{Type: "nio_udp", LPort: 1, RHost: "h", RPort: 2}
	for name, tc := range map[string]struct {
		rec  events.Record
		want string
	}{
		"node in a project that is not open": {nrec(3, pid2, nid2, events.NodeCreated{Kind: "vpcs", Name: "x"}), "not open"},
		"created twice":                      {nrec(3, pid, nid, events.NodeCreated{Kind: "vpcs", Name: "x"}), "already exists"},
		"stopped while stopped":              {nrec(3, pid, nid, events.NodeStopped{}), "not running"},
		"event on no node":                   {nrec(3, pid, nid2, events.NodeStarted{}), "does not exist"},
		"nio update on a free port":          {nrec(3, pid, nid, events.NIOUpdated{NIO: nio}), "has no NIO"},
		"capture on a free port":             {nrec(3, pid, nid, events.CaptureStarted{File: "a"}), "has no NIO"},
		"capture stopped while none runs":    {nrec(3, pid, nid, events.CaptureStopped{}), "not capturing"},
		"console held by another node":       {nrec(3, pid, nid2, events.NodeCreated{Kind: "vpcs", Name: "y", Console: 5000}), "console port 5000"},
		"project event on a node subject":    {nrec(3, pid, nid, events.ProjectUpdated{}), "not a node event"},
		"suspended while stopped":            {nrec(3, pid, nid, events.NodeSuspended{}), "not running"},
		"resumed while stopped":              {nrec(3, pid, nid, events.NodeResumed{}), "not suspended"},
		"reset while stopped":                {nrec(3, pid, nid, events.NodeReset{}), "not running"},
		"adopted while stopped":              {nrec(3, pid, nid, events.NodeAdopted{PID: 1}), "no such process"},
	} {
		t.Run(name, func(t *testing.T) {
			s := fold(t, base...)
			err := s.Apply(tc.rec)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Apply: %v, want an error about %q", err, tc.want)
			}
		})
	}
}

// A QEMU node's properties ride on its create and updates; suspend and
// resume move it between started and suspended, and a stop ends either.
func TestNodeSuspendResumeAndProperties(t *testing.T) {
	s := fold(t,
		rec(1, pid, events.ProjectCreated{Name: "p"}),
		nrec(2, pid, nid, events.NodeCreated{Kind: "qemu", Name: "Q1", Properties: json.RawMessage(`{"ram":256}`)}),
		nrec(3, pid, nid, events.NodeUpdated{Name: "Q2"}),
	)
	n := s.Nodes[replay.NodeKey(pid, nid)]
	if string(n.Properties) != `{"ram":256}` {
		t.Fatalf("an update without properties changed them: %s", n.Properties)
	}
	steps := []struct {
		d    events.Data
		want replay.NodeStatus
	}{
		{events.NodeUpdated{Name: "Q2", Properties: json.RawMessage(`{"ram":512}`)}, replay.NodeStopped},
		{events.NodeStarted{PID: 7}, replay.NodeRunning},
		{events.NodeAdopted{PID: 7}, replay.NodeRunning},
		{events.NodeSuspended{Cause: events.CauseRequested}, replay.NodePaused},
		{events.NodeResumed{Cause: events.CauseGuest}, replay.NodeRunning},
		{events.NodeReset{Cause: events.CauseGuest}, replay.NodeRunning},
		{events.NodeSuspended{Cause: events.CauseGuest}, replay.NodePaused},
		{events.NodeStopped{Reason: events.StopGuestShutdown}, replay.NodeStopped},
	}
	for i, st := range steps {
		if err := s.Apply(nrec(uint64(4+i), pid, nid, st.d)); err != nil {
			t.Fatalf("step %d (%T): %v", i, st.d, err)
		}
		if n := s.Nodes[replay.NodeKey(pid, nid)]; n.Status != st.want {
			t.Fatalf("after %T: status %s, want %s", st.d, n.Status, st.want)
		}
	}
	n = s.Nodes[replay.NodeKey(pid, nid)]
	if string(n.Properties) != `{"ram":512}` || n.Running() {
		t.Fatalf("final node %+v", n)
	}
	if err := s.Apply(nrec(20, pid, nid, events.NodeResumed{})); err == nil {
		t.Fatal("a resume of a stopped node was folded")
	}
}

func TestNodeEffectFailedIsARecord(t *testing.T) {
	s := fold(t,
		rec(1, pid, events.ProjectCreated{Name: "p"}),
		nrec(2, pid, nid, events.NodeCreated{Kind: "vpcs", Name: "PC1", Console: 5000, ConsoleType: "telnet"}),
		nrec(3, pid, nid, events.NodeDeleted{}),
		nrec(4, pid, nid, events.EffectFailed{Effect: "remove the node directory", Error: "busy"}),
	)
	if n := s.Nodes[replay.NodeKey(pid, nid)]; n.Exists() || n.Version != 4 {
		t.Fatalf("after a failed effect: %+v", n)
	}
	if err := s.Apply(nrec(5, pid, nid2, events.EffectFailed{})); err == nil {
		t.Fatal("a failed effect of a node with no history was folded")
	}
}
