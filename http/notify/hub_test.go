package notify_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"labd/events"
	"labd/events/jetstream/jstest"
	"labd/http/notify"
)

const compute = "hub-test"

type fixture struct {
	env  *jstest.Env
	hub  *notify.Hub
	last map[string]uint64 // aggregate versions, for appends
}

func start(t *testing.T, cfg notify.Config) *fixture {
	t.Helper()
	env := jstest.Start(t, jstest.Options{})
	return startOn(t, env, cfg)
}

func startOn(t *testing.T, env *jstest.Env, cfg notify.Config) *fixture {
	t.Helper()
	cfg.Store, cfg.ComputeID = env.Store, compute
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	hub := notify.New(cfg)
	if _, err := hub.Rehydrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { hub.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	return &fixture{env: env, hub: hub, last: map[string]uint64{}}
}

// append appends one event to project pid's aggregate and returns its
// sequence.
func (f *fixture) append(t *testing.T, pid string, d events.Data) uint64 {
	t.Helper()
	seq, err := f.env.Store.Append(t.Context(), events.ProjectSubject(compute, pid), f.last[pid], uuid.NewString(), events.New(time.Now(), pid, "", d))
	if err != nil {
		t.Fatal(err)
	}
	f.last[pid] = seq
	return seq
}

func (f *fixture) waitFor(t *testing.T, seq uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for f.hub.Position() < seq {
		if time.Now().After(deadline) {
			t.Fatalf("hub at %d, waiting for %d", f.hub.Position(), seq)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func receive(t *testing.T, s *notify.Sub, n int) []notify.Item {
	t.Helper()
	var out []notify.Item
	for len(out) < n {
		select {
		case it, ok := <-s.C:
			if !ok {
				t.Fatalf("subscription closed after %d items: %v", len(out), s.Err())
			}
			out = append(out, it)
		case <-time.After(5 * time.Second):
			t.Fatalf("received %d items, want %d", len(out), n)
		}
	}
	return out
}

// A subscriber that does not read is dropped once its queue is full; one
// that keeps up gets everything.
func TestSlowSubscriberIsDroppedOthersAreNot(t *testing.T) {
	f := start(t, notify.Config{Buffer: 3})
	slow, err := f.hub.Subscribe(t.Context(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	fast, err := f.hub.Subscribe(t.Context(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	pid := uuid.NewString()
	// In lockstep: the fast subscriber takes each item before the next
	// append, so it never holds more than one, while the slow one fills up.
	for i := range 10 {
		var d events.Data = events.UDPPortAllocated{Port: 1000 + i}
		if i == 0 {
			d = events.ProjectCreated{Name: "p"}
		}
		seq := f.append(t, pid, d)
		if it := receive(t, fast, 1)[0]; it.Seq != seq {
			t.Fatalf("fast subscriber got %d, want %d", it.Seq, seq)
		}
	}
	// The slow one holds exactly its buffer, then the close.
	n := 0
	for range slow.C {
		n++
	}
	if n != 3 || !errors.Is(slow.Err(), notify.ErrTooSlow) {
		t.Fatalf("slow subscriber: %d items then %v; want 3 then ErrTooSlow", n, slow.Err())
	}
}

// Backlogs from the ring and from a re-fold of the stream are the same
// items, each rendered with its project as it was right after the event.
func TestBacklogFromRingAndRefoldAgree(t *testing.T) {
	f := start(t, notify.Config{Ring: 4})
	pid := uuid.NewString()
	var seqs []uint64
	seqs = append(seqs, f.append(t, pid, events.ProjectCreated{Name: "v0"}))
	for i := 1; i <= 9; i++ {
		seqs = append(seqs, f.append(t, pid, events.ProjectUpdated{Name: fmt.Sprint("v", i)}))
	}
	f.waitFor(t, seqs[9])

	check := func(since uint64, items []notify.Item, first int) {
		t.Helper()
		if len(items) != 10-first {
			t.Fatalf("since %d: %d items, want %d", since, len(items), 10-first)
		}
		for i, it := range items {
			want := first + i
			if it.Seq != seqs[want] || it.Project == nil || it.Project.Name != fmt.Sprint("v", want) {
				t.Fatalf("since %d item %d: seq %d project %+v; want seq %d named v%d", since, i, it.Seq, it.Project, seqs[want], want)
			}
		}
	}
	fromRing, err := f.hub.Subscribe(t.Context(), &seqs[6], nil) // the ring holds the last 4
	if err != nil {
		t.Fatal(err)
	}
	check(seqs[6], fromRing.Backlog, 7)
	refolded, err := f.hub.Subscribe(t.Context(), &seqs[1], nil) // older than the ring
	if err != nil {
		t.Fatal(err)
	}
	check(seqs[1], refolded.Backlog, 2)
	zero := uint64(0)
	all, err := f.hub.Subscribe(t.Context(), &zero, nil)
	if err != nil {
		t.Fatal(err)
	}
	check(0, all.Backlog, 0)

	// Live items follow the backlog with no gap.
	next := f.append(t, pid, events.ProjectClosed{})
	for _, s := range []*notify.Sub{fromRing, refolded, all} {
		if it := receive(t, s, 1)[0]; it.Seq != next {
			t.Fatalf("live item %d, want %d", it.Seq, next)
		}
	}
}

// After a restart the ring is rebuilt from the history: a client that
// reconnects to the new daemon resumes exactly.
func TestRingSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	env := jstest.Start(t, jstest.Options{Dir: dir})
	f := startOn(t, env, notify.Config{})
	pid := uuid.NewString()
	a := f.append(t, pid, events.ProjectCreated{Name: "a"})
	b := f.append(t, pid, events.UDPPortAllocated{Port: 7})
	env.Stop()

	f2 := startOn(t, jstest.Start(t, jstest.Options{Dir: dir}), notify.Config{})
	s, err := f2.hub.Subscribe(t.Context(), &a, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Backlog) != 1 || s.Backlog[0].Seq != b {
		t.Fatalf("backlog after restart: %+v", s.Backlog)
	}
}

func TestSubscribeFilters(t *testing.T) {
	f := start(t, notify.Config{})
	mine, other := uuid.NewString(), uuid.NewString()
	s, err := f.hub.Subscribe(t.Context(), nil, func(it notify.Item) bool { return it.ProjectID == mine })
	if err != nil {
		t.Fatal(err)
	}
	f.append(t, other, events.ProjectCreated{Name: "o"})
	want := f.append(t, mine, events.ProjectCreated{Name: "m"})
	if it := receive(t, s, 1)[0]; it.Seq != want {
		t.Fatalf("filtered subscription got %d, want %d", it.Seq, want)
	}
}

func TestSubscribeFromTheFutureIsRefused(t *testing.T) {
	f := start(t, notify.Config{})
	seq := f.append(t, uuid.NewString(), events.ProjectCreated{Name: "p"})
	f.waitFor(t, seq)
	future := seq + 10
	if _, err := f.hub.Subscribe(t.Context(), &future, nil); !errors.Is(err, notify.ErrFuture) {
		t.Fatalf("since ahead of the stream: %v", err)
	}
}

func TestRunEndClosesSubscriptions(t *testing.T) {
	env := jstest.Start(t, jstest.Options{})
	hub := notify.New(notify.Config{Store: env.Store, ComputeID: compute, Logger: slog.New(slog.DiscardHandler)})
	if _, err := hub.Rehydrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { hub.Run(ctx); close(done) }()
	s, err := hub.Subscribe(t.Context(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	<-done
	if _, ok := <-s.C; ok || !errors.Is(s.Err(), notify.ErrClosed) {
		t.Fatalf("after Run ended: open=%v err=%v", ok, s.Err())
	}
	if _, err := hub.Subscribe(t.Context(), nil, nil); !errors.Is(err, notify.ErrClosed) {
		t.Fatalf("subscribe to a stopped hub: %v", err)
	}
}
