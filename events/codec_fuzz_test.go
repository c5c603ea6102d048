package events_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	"labd/events"
)

const (
	sampleProject = "3c1be6f9-b4ba-4737-b209-63c47c23359f"
	sampleNode    = "8a2f4c1e-0d3b-4b6a-9e57-1f0c2d3e4a5b"
)

// samples holds one payload of every event type. A type added to the
// codec without a sample here fails TestCodecRoundTripsEveryType.
func samples() map[events.Type]events.Data {
	value := "10.0.0.1"
	exitCode := 139
	empty := ""
	deadline := time.Date(2026, 11, 22, 10, 1, 0, 0, time.UTC)
	return map[events.Type]events.Data{
		events.TypeProjectCreated: events.ProjectCreated{Name: "lab", Temporary: true,
			Variables: []events.Variable{{Name: "ip", Value: &value}, {Name: "unset"}, {Name: "empty", Value: &empty}}},
		events.TypeProjectUpdated:   events.ProjectUpdated{Name: "lab 2", Variables: []events.Variable{}},
		events.TypeProjectClosed:    events.ProjectClosed{},
		events.TypeProjectDeleted:   events.ProjectDeleted{},
		events.TypeUDPPortAllocated: events.UDPPortAllocated{Port: 20001},
		events.TypeFileWritten:      events.FileWritten{Path: "configs/r1.cfg", Size: 12, MD5Sum: "ad0234829205b9033196ba818f7a872b"},
		events.TypeEffectFailed:     events.EffectFailed{Effect: "create the project directory", Error: "mkdir: permission denied"},
		events.TypeNodeCreated: events.NodeCreated{Kind: "qemu", Name: "PC1", Console: 5000, ConsoleType: "telnet", MACID: 3,
			Properties: json.RawMessage(`{"ram":256}`)},
		events.TypeNodeUpdated: events.NodeUpdated{Name: "PC2", Console: 5001, ConsoleType: "none", Properties: json.RawMessage(`{"ram":512}`)},
		events.TypeNodeStarted: events.NodeStarted{PID: 4242, ProcStart: 987654, CommandLine: "vpcs -p 5001 -m 0",
			InternalConsole: 40001, Tunnels: []events.Tunnel{{Adapter: 0, Port: 0, NodePort: 20002, BridgePort: 20003}}, QMP: "/p/qmp.sock"},
		events.TypeNodeSuspended:   events.NodeSuspended{Cause: events.CauseRequested},
		events.TypeNodeResumed:     events.NodeResumed{Cause: events.CauseGuest},
		events.TypeNodeReset:       events.NodeReset{Cause: events.CauseRequested},
		events.TypeNodeAdopted:     events.NodeAdopted{PID: 4242, ProcStart: 987654},
		events.TypeNodeStopped:     events.NodeStopped{Reason: events.StopExited, ExitCode: &exitCode, Message: "segfault"},
		events.TypeNodeStartFailed: events.NodeStartFailed{Error: "vpcs: not found"},
		events.TypeNodeDeleted:     events.NodeDeleted{},
		events.TypeNodeClosed:      events.NodeClosed{},
		events.TypeNIOAdded: events.NIOAdded{Adapter: 0, Port: 0, NIO: events.NIO{Type: "nio_udp", LPort: 20000, RHost: "127.0.0.1", RPort: 20001,
			Filters: map[string][]any{"delay": {100.0, 10.0}, "bpf": {"icmp"}}, Suspend: true}},
		events.TypeNIOUpdated:     events.NIOUpdated{Adapter: 1, Port: 0, NIO: events.NIO{Type: "nio_udp", LPort: 20000, RHost: "localhost", RPort: 20001}},
		events.TypeNIORemoved:     events.NIORemoved{Adapter: 0, Port: 0},
		events.TypeCaptureStarted: events.CaptureStarted{Adapter: 0, Port: 0, File: "PC1_to_PC2.pcap", LinkType: "DLT_EN10MB"},
		events.TypeCaptureStopped: events.CaptureStopped{Adapter: 0, Port: 0},
		events.TypeOperationStarted: events.OperationStarted{State: events.OpStarted, Operation: events.Operation{
			ID: "op-1", Op: "stop", RequestID: "req-1", Task: "stopping", TimeoutMS: 60000, Deadline: &deadline,
			CPUs: 2, RAMMB: 128, Confirm: true, Apply: true, Freeze: true, CDImage: "rescue.iso", CDImageOnce: true}},
		events.TypeOperationEnded: events.OperationEnded{ID: "op-1", State: events.OpFailure, Message: "m", Error: "e", Fault: true,
			Record: &events.Operation{ID: "op-1", Op: "start"}},
		events.TypeNodeSaved:         events.NodeSaved{ExitCode: &exitCode},
		events.TypeNodeResized:       events.NodeResized{Properties: json.RawMessage(`{"ram":512}`), Previous: json.RawMessage(`{"ram":256}`)},
		events.TypeResizeConfirmed:   events.ResizeConfirmed{},
		events.TypeResizeReverted:    events.ResizeReverted{Properties: json.RawMessage(`{"ram":256}`)},
		events.TypeNodeDefined:       events.NodeDefined{CPUs: 2, RAMMB: 512},
		events.TypeDefinitionApplied: events.DefinitionApplied{Properties: json.RawMessage(`{"ram":512}`), Previous: json.RawMessage(`{"ram":256}`)},
		events.TypeNodeFrozen:        events.NodeFrozen{},
		events.TypeNodeUnfrozen:      events.NodeUnfrozen{},
	}
}

var sampleAt = time.Date(2026, 11, 22, 10, 0, 0, 123456789, time.UTC)

// sameEvent compares two events, their times by instant.
func sameEvent(a, b events.Event) bool {
	if !a.At.Equal(b.At) {
		return false
	}
	a.At, b.At = time.Time{}, time.Time{}
	return reflect.DeepEqual(a, b)
}

func TestCodecRoundTripsEveryType(t *testing.T) {
	s := samples()
	types := events.Types()
	for _, typ := range types {
		if _, ok := s[typ]; !ok {
			t.Errorf("event type %q has no sample in this test: add one", typ)
		}
	}
	for typ := range s {
		if !slices.Contains(types, typ) {
			t.Errorf("sample of %q, which events.Types() does not list", typ)
		}
	}
	for typ, d := range s {
		t.Run(string(typ), func(t *testing.T) {
			if d.EventType() != typ {
				t.Fatalf("sample for %q is a %q payload", typ, d.EventType())
			}
			// Node events carry a node id; the project aggregate's none.
			for _, node := range []string{"", sampleNode} {
				ev := events.New(sampleAt, sampleProject, node, d)
				if ev.Type != typ || ev.Schema < 1 {
					t.Fatalf("New: type %q schema %d", ev.Type, ev.Schema)
				}
				b, err := events.Marshal(ev)
				if err != nil {
					t.Fatalf("Marshal: %v", err)
				}
				got, err := events.Unmarshal(b)
				if err != nil {
					t.Fatalf("Unmarshal(%s): %v", b, err)
				}
				if !sameEvent(got, ev) {
					t.Fatalf("round trip of %s:\n got %#v\nwant %#v", b, got, ev)
				}
				b2, err := events.Marshal(got)
				if err != nil || string(b2) != string(b) {
					t.Fatalf("second Marshal %s, %v; first %s", b2, err, b)
				}
			}
		})
	}
}

func FuzzUnmarshal(f *testing.F) {
	for _, d := range samples() {
		b, err := events.Marshal(events.New(sampleAt, sampleProject, "", d))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		``,
		`{}`,
		`null`,
		`[]`,
		`{"type":"project.created","schema":1,"at":"2026-11-22T10:00:00Z","project_id":"p","data":{"name":"a","variables":null}} trailing`,
		`{"type":"project.created","schema":1,"at":"2026-11-22T10:00:00+02:00","project_id":"p","data":{"name":"a","variables":[{"name":"v","value":null}]}}`,
		`{"type":"project.created","schema":2,"at":"2026-11-22T10:00:00Z","data":{"name":"a","variables":null}}`,
		`{"type":"project.created","schema":0,"at":"2026-11-22T10:00:00Z","data":{"name":"a","variables":null}}`,
		`{"type":"project.nope","schema":1,"at":"2026-11-22T10:00:00Z","data":{}}`,
		`{"type":"project.closed","schema":1,"at":"2026-11-22T10:00:00Z","data":null}`,
		`{"type":"project.closed","schema":1,"at":"2026-11-22T10:00:00Z","data":[]}`,
		`{"type":"project.closed","schema":1,"at":"2026-11-22T10:00:00Z","data":{"x":1}}`,
		`{"type":"project.closed","schema":1,"at":"2026-11-22T10:00:00Z","data":{},"extra":1}`,
		`{"type":"project.udp_port_allocated","schema":1,"at":"2026-11-22T10:00:00Z","data":{"port":1e3}}`,
		`{"type":"project.file_written","schema":1,"at":"not a time","data":{"path":"a","size":1,"md5sum":"x"}}`,
		`{"TYPE":"project.deleted","Schema":1,"AT":"2026-11-22T10:00:00.5Z","Node_ID":"n","data":{}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := events.Unmarshal(b)
		if err != nil {
			return
		}
		if ev.Data == nil || ev.Data.EventType() != ev.Type {
			t.Fatalf("Unmarshal(%q) = %#v: payload does not match the type", b, ev)
		}
		out, err := events.Marshal(ev)
		if err != nil {
			t.Fatalf("Unmarshal(%q) succeeded, but Marshal of its event %#v fails: %v", b, ev, err)
		}
		again, err := events.Unmarshal(out)
		if err != nil {
			t.Fatalf("Unmarshal(Marshal(Unmarshal(%q))) = %v; marshalled %s", b, err, out)
		}
		if !sameEvent(again, ev) {
			t.Fatalf("round trip of %q through %s:\n got %#v\nwant %#v", b, out, again, ev)
		}
	})
}

// TestUnmarshalThenMarshalAtYearBounds: an envelope Unmarshal accepts can
// be marshalled again. Its time may carry an offset that moves the instant
// out of the years 0..9999 in UTC, which Marshal (writing UTC) cannot
// encode: such a time must be refused by Unmarshal as malformed, or kept
// encodable.
func TestUnmarshalThenMarshalAtYearBounds(t *testing.T) {
	for _, at := range []string{"0000-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"} {
		b := []byte(`{"type":"project.closed","schema":1,"at":"` + at + `","data":{}}`)
		ev, err := events.Unmarshal(b)
		if err != nil {
			if !errors.Is(err, events.ErrMalformed) {
				t.Errorf("Unmarshal(%s): %v, want ErrMalformed", b, err)
			}
			continue
		}
		out, err := events.Marshal(ev)
		if err != nil {
			t.Errorf("Unmarshal(%s) succeeded, Marshal of the result fails: %v", b, err)
			continue
		}
		if again, err := events.Unmarshal(out); err != nil || !sameEvent(again, ev) {
			t.Errorf("round trip of %s through %s: %#v, %v", b, out, again, err)
		}
	}
}
