package replay_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"labd/events"
	"labd/events/jetstream/jstest"
	"labd/replay"
)

const (
	compute = "c1"
	pid     = "6c4bb8a4-9a62-4c1f-a8a5-3f2b0e9d1c11"
	pid2    = "0d1f9b7e-1e55-4a0e-9a8a-7b7cf6a0e2a2"
)

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

func rec(seq uint64, project string, d events.Data) events.Record {
	return events.Record{
		Event:   events.New(t0.Add(time.Duration(seq)*time.Second), project, "", d),
		Seq:     seq,
		Subject: events.ProjectSubject(compute, project),
	}
}

func fold(t *testing.T, recs ...events.Record) *replay.State {
	t.Helper()
	s := replay.New()
	for _, r := range recs {
		if err := s.Apply(r); err != nil {
			t.Fatalf("Apply(%d %s): %v", r.Seq, r.Type, err)
		}
	}
	return s
}

func TestProjectLifecycle(t *testing.T) {
	v := "1"
	s := fold(t,
		rec(1, pid, events.ProjectCreated{Name: "a", Temporary: true}),
		rec(2, pid, events.UDPPortAllocated{Port: 20001}),
		rec(3, pid, events.UDPPortAllocated{Port: 20000}),
		rec(4, pid, events.ProjectUpdated{Name: "b", Variables: []events.Variable{{Name: "x", Value: &v}}}),
		rec(5, pid, events.FileWritten{Path: "a.txt", Size: 1, MD5Sum: "x"}),
	)
	p := s.Projects[pid]
	want := &replay.Project{
		ID: pid, Name: "b", Variables: []events.Variable{{Name: "x", Value: &v}},
		Status: replay.StatusOpened, UDPPorts: []int{20000, 20001}, Version: 5,
		Opened: t0.Add(time.Second), Updated: t0.Add(5 * time.Second),
	}
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("folded project:\n got %+v\nwant %+v", p, want)
	}
	if s.Seq != 5 {
		t.Fatalf("state at %d, want 5", s.Seq)
	}

	// Closing releases the ports; creating again starts afresh but keeps
	// counting versions on the same aggregate.
	if err := s.Apply(rec(6, pid, events.ProjectClosed{})); err != nil {
		t.Fatal(err)
	}
	if p := s.Projects[pid]; p.Status != replay.StatusClosed || p.UDPPorts != nil || len(s.UDPPorts()) != 0 {
		t.Fatalf("after close: %+v, held %v", p, s.UDPPorts())
	}
	if err := s.Apply(rec(7, pid, events.ProjectCreated{Name: "again"})); err != nil {
		t.Fatal(err)
	}
	if p := s.Projects[pid]; !p.IsOpen() || p.Name != "again" || p.Version != 7 || p.Temporary {
		t.Fatalf("re-created: %+v", p)
	}
}

func TestIllegalTransitions(t *testing.T) {
	created := rec(1, pid, events.ProjectCreated{Name: "a"})
	closed := rec(2, pid, events.ProjectClosed{})
	tests := []struct {
		name    string
		history []events.Record
		next    events.Record
		want    string
	}{
		{"update before create", nil, rec(1, pid, events.ProjectUpdated{Name: "b"}), "not open"},
		{"create twice", []events.Record{created}, rec(2, pid, events.ProjectCreated{Name: "b"}), "already open"},
		{"close twice", []events.Record{created, closed}, rec(3, pid, events.ProjectClosed{}), "not open"},
		{"delete closed", []events.Record{created, closed}, rec(3, pid, events.ProjectDeleted{}), "not open"},
		{"port on closed", []events.Record{created, closed}, rec(3, pid, events.UDPPortAllocated{Port: 1}), "not open"},
		{"port twice", []events.Record{created, rec(2, pid, events.UDPPortAllocated{Port: 1})}, rec(3, pid, events.UDPPortAllocated{Port: 1}), "already held"},
		{"out of order", []events.Record{created, closed}, rec(2, pid, events.ProjectCreated{Name: "b"}), "out of order"},
		{"effect on nothing", nil, rec(1, pid, events.EffectFailed{Effect: "x"}), "no such project"},
		{"port held by another project", []events.Record{
			created, rec(2, pid, events.UDPPortAllocated{Port: 9}), rec(3, pid2, events.ProjectCreated{Name: "b"}),
		}, rec(4, pid2, events.UDPPortAllocated{Port: 9}), "held by project"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := fold(t, tc.history...)
			err := s.Apply(tc.next)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Apply: got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestApplyDoesNotModifyItsInput(t *testing.T) {
	p1, err := replay.ApplyProject(nil, rec(1, pid, events.ProjectCreated{Name: "a"}))
	if err != nil {
		t.Fatal(err)
	}
	p2, err := replay.ApplyProject(p1, rec(2, pid, events.UDPPortAllocated{Port: 5}))
	if err != nil {
		t.Fatal(err)
	}
	p3, err := replay.ApplyProject(p2, rec(3, pid, events.UDPPortAllocated{Port: 3}))
	if err != nil {
		t.Fatal(err)
	}
	if p1.Version != 1 || p1.UDPPorts != nil {
		t.Fatalf("p1 changed: %+v", p1)
	}
	if !reflect.DeepEqual(p2.UDPPorts, []int{5}) || p2.Version != 2 {
		t.Fatalf("p2 changed: %+v", p2)
	}
	if !reflect.DeepEqual(p3.UDPPorts, []int{3, 5}) {
		t.Fatalf("p3: %+v", p3)
	}
}

func TestCloneIsIndependent(t *testing.T) {
	s := fold(t, rec(1, pid, events.ProjectCreated{Name: "a"}))
	c := s.Clone()
	if err := c.Apply(rec(2, pid2, events.ProjectCreated{Name: "b"})); err != nil {
		t.Fatal(err)
	}
	if len(s.Projects) != 1 || s.Seq != 1 {
		t.Fatalf("the original moved with its clone: %d projects at %d", len(s.Projects), s.Seq)
	}
}

// Rehydrate folds a compute's history from a real store, ignoring other
// computes, and reports the stream position it reached.
func TestRehydrate(t *testing.T) {
	env := jstest.Start(t, jstest.Options{})
	ctx := t.Context()
	app := func(compute, project string, expected uint64, d events.Data) uint64 {
		t.Helper()
		seq, err := env.Store.Append(ctx, events.ProjectSubject(compute, project), expected, uuid.NewString(), events.New(t0, project, "", d))
		if err != nil {
			t.Fatal(err)
		}
		return seq
	}
	s1 := app(compute, pid, 0, events.ProjectCreated{Name: "mine"})
	app("other", pid2, 0, events.ProjectCreated{Name: "theirs"})
	s3 := app(compute, pid, s1, events.UDPPortAllocated{Port: 20000})
	last := app("other", pid, 0, events.ProjectCreated{Name: "theirs too"})

	st, err := replay.Rehydrate(ctx, env.Store, compute, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Projects) != 1 {
		t.Fatalf("rehydrated %d projects, want only this compute's one", len(st.Projects))
	}
	p := st.Projects[pid]
	if p.Name != "mine" || p.Version != s3 || !reflect.DeepEqual(p.UDPPorts, []int{20000}) {
		t.Fatalf("rehydrated %+v", p)
	}
	if st.Seq != last {
		t.Fatalf("rehydrated through %d, stream ends at %d", st.Seq, last)
	}
}
