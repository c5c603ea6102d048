// Package eventstest is the conformance suite every events.Store
// implementation must pass. Each implementation's tests call Run with a
// constructor for a fresh, empty store.
package eventstest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"labd/events"
)

// Run runs the whole suite. open must return an empty store, private to
// the calling test.
func Run(t *testing.T, open func(t *testing.T) events.Store) {
	tests := []struct {
		name string
		fn   func(*testing.T, events.Store)
	}{
		{"AppendNewSubject", testAppendNewSubject},
		{"AppendExpectedSequence", testAppendExpectedSequence},
		{"ConflictWritesNothing", testConflictWritesNothing},
		{"BatchIsAtomic", testBatchIsAtomic},
		{"RetryIsIdempotent", testRetryIsIdempotent},
		{"BatchRetryIsIdempotent", testBatchRetryIsIdempotent},
		{"RoundTrip", testRoundTrip},
		{"LoadFiltersAndOrders", testLoadFiltersAndOrders},
		{"LoadFrom", testLoadFrom},
		{"LoadEmpty", testLoadEmpty},
		{"LoadStopsOnCallbackError", testLoadStopsOnCallbackError},
		{"FollowHistoryThenLive", testFollowHistoryThenLive},
		{"ConcurrentWritersLoseNothing", testConcurrentWritersLoseNothing},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, open(t))
		})
	}
}

var at = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

func created(pid, name string) events.Event {
	return events.New(at, pid, "", events.ProjectCreated{Name: name})
}

func port(pid string, p int) events.Event {
	return events.New(at, pid, "", events.UDPPortAllocated{Port: p})
}

func newID() string { return uuid.NewString() }

func appendOK(t *testing.T, s events.Store, subject string, expected uint64, evs ...events.Event) uint64 {
	t.Helper()
	seq, err := s.Append(t.Context(), subject, expected, newID(), evs...)
	if err != nil {
		t.Fatalf("Append(%s, %d): %v", subject, expected, err)
	}
	return seq
}

func loadAll(t *testing.T, s events.Store, filter string, from uint64) ([]events.Record, uint64) {
	t.Helper()
	var recs []events.Record
	through, err := s.Load(t.Context(), filter, from, func(r events.Record) error {
		recs = append(recs, r)
		return nil
	})
	if err != nil {
		t.Fatalf("Load(%s, %d): %v", filter, from, err)
	}
	return recs, through
}

func lastSeq(t *testing.T, s events.Store) uint64 {
	t.Helper()
	seq, err := s.LastSequence(t.Context())
	if err != nil {
		t.Fatalf("LastSequence: %v", err)
	}
	return seq
}

func testAppendNewSubject(t *testing.T, s events.Store) {
	pid := newID()
	subj := events.ProjectSubject("c1", pid)
	seq := appendOK(t, s, subj, 0, created(pid, "a"))
	if seq == 0 {
		t.Fatal("Append returned sequence 0")
	}
	// A second "create" with expectation 0 must fail: the subject exists.
	_, err := s.Append(t.Context(), subj, 0, newID(), created(pid, "b"))
	if !errors.Is(err, events.ErrConflict) {
		t.Fatalf("second Append with expected 0: got %v, want ErrConflict", err)
	}
	var ce *events.ConflictError
	if !errors.As(err, &ce) || ce.Actual != seq {
		t.Fatalf("conflict detail: %#v, want Actual=%d", ce, seq)
	}
}

func testAppendExpectedSequence(t *testing.T, s events.Store) {
	pid := newID()
	subj := events.ProjectSubject("c1", pid)
	s1 := appendOK(t, s, subj, 0, created(pid, "a"))
	s2 := appendOK(t, s, subj, s1, port(pid, 20000))
	if s2 <= s1 {
		t.Fatalf("sequences not increasing: %d then %d", s1, s2)
	}
	// Another subject does not disturb this one's expectation.
	other := newID()
	appendOK(t, s, events.ProjectSubject("c1", other), 0, created(other, "o"))
	appendOK(t, s, subj, s2, port(pid, 20001))
}

func testConflictWritesNothing(t *testing.T, s events.Store) {
	pid := newID()
	subj := events.ProjectSubject("c1", pid)
	s1 := appendOK(t, s, subj, 0, created(pid, "a"))
	appendOK(t, s, subj, s1, port(pid, 20000))
	before := lastSeq(t, s)
	if _, err := s.Append(t.Context(), subj, s1, newID(), port(pid, 20001)); !errors.Is(err, events.ErrConflict) {
		t.Fatalf("stale Append: got %v, want ErrConflict", err)
	}
	if after := lastSeq(t, s); after != before {
		t.Fatalf("a rejected append moved the stream from %d to %d", before, after)
	}
}

func testBatchIsAtomic(t *testing.T, s events.Store) {
	pid := newID()
	subj := events.ProjectSubject("c1", pid)
	last := appendOK(t, s, subj, 0, created(pid, "a"), port(pid, 1), port(pid, 2))
	recs, _ := loadAll(t, s, subj, 1)
	if len(recs) != 3 {
		t.Fatalf("batch of 3 stored %d events", len(recs))
	}
	for i, r := range recs {
		if want := last - uint64(2-i); r.Seq != want {
			t.Fatalf("batch event %d at sequence %d, want %d (contiguous)", i, r.Seq, want)
		}
	}
	// A stale batch writes none of its events.
	before := lastSeq(t, s)
	_, err := s.Append(t.Context(), subj, last-1, newID(), port(pid, 3), port(pid, 4))
	if !errors.Is(err, events.ErrConflict) {
		t.Fatalf("stale batch: got %v, want ErrConflict", err)
	}
	if after := lastSeq(t, s); after != before {
		t.Fatalf("a rejected batch moved the stream from %d to %d", before, after)
	}
}

func testRetryIsIdempotent(t *testing.T, s events.Store) {
	pid := newID()
	subj := events.ProjectSubject("c1", pid)
	cmd := newID()
	s1, err := s.Append(t.Context(), subj, 0, cmd, created(pid, "a"))
	if err != nil {
		t.Fatal(err)
	}
	// The same command again, as after a lost acknowledgement: same
	// answer, nothing written twice.
	s2, err := s.Append(t.Context(), subj, 0, cmd, created(pid, "a"))
	if err != nil {
		t.Fatalf("retry of a landed append: %v", err)
	}
	if s1 != s2 {
		t.Fatalf("retry returned sequence %d, first attempt %d", s2, s1)
	}
	if recs, _ := loadAll(t, s, subj, 1); len(recs) != 1 {
		t.Fatalf("retry stored the event %d times", len(recs))
	}
}

func testBatchRetryIsIdempotent(t *testing.T, s events.Store) {
	pid := newID()
	subj := events.ProjectSubject("c1", pid)
	cmd := newID()
	evs := []events.Event{created(pid, "a"), port(pid, 7)}
	s1, err := s.Append(t.Context(), subj, 0, cmd, evs...)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := s.Append(t.Context(), subj, 0, cmd, evs...)
	if err != nil {
		t.Fatalf("retry of a landed batch: %v", err)
	}
	if s1 != s2 {
		t.Fatalf("batch retry returned %d, first attempt %d", s2, s1)
	}
	if recs, _ := loadAll(t, s, subj, 1); len(recs) != 2 {
		t.Fatalf("batch retry stored %d events, want 2", len(recs))
	}
}

func testRoundTrip(t *testing.T, s events.Store) {
	pid, nid := newID(), newID()
	val := "v"
	evs := []events.Event{
		events.New(at, pid, "", events.ProjectCreated{Name: "p", Temporary: true, Variables: []events.Variable{{Name: "a", Value: &val}, {Name: "b"}}}),
		events.New(at, pid, "", events.ProjectUpdated{Name: "q"}),
		events.New(at, pid, "", events.UDPPortAllocated{Port: 20000}),
		events.New(at, pid, "", events.FileWritten{Path: "a/b.txt", Size: 3, MD5Sum: "900150983cd24fb0d6963f7d28e17f72"}),
		events.New(at, pid, "", events.EffectFailed{Effect: "mkdir", Error: "boom"}),
		events.New(at, pid, nid, events.ProjectClosed{}),
		events.New(at, pid, "", events.ProjectDeleted{}),
	}
	subj := events.ProjectSubject("c1", pid)
	cmd := newID()
	last, err := s.Append(t.Context(), subj, 0, cmd, evs...)
	if err != nil {
		t.Fatal(err)
	}
	recs, _ := loadAll(t, s, subj, 1)
	if len(recs) != len(evs) {
		t.Fatalf("loaded %d events, want %d", len(recs), len(evs))
	}
	for i, r := range recs {
		if !reflect.DeepEqual(r.Event, evs[i]) {
			t.Errorf("event %d:\n got %#v\nwant %#v", i, r.Event, evs[i])
		}
		if r.Subject != subj || r.MsgID != events.MsgID(cmd, i) {
			t.Errorf("event %d stored as %s %s", i, r.Subject, r.MsgID)
		}
		if r.Seq != last-uint64(len(evs)-1-i) {
			t.Errorf("event %d sequence %d", i, r.Seq)
		}
	}
}

func testLoadFiltersAndOrders(t *testing.T, s events.Store) {
	compute := "c" + newID()[:8]
	var want []uint64
	for i := range 20 {
		pid := newID()
		seq := appendOK(t, s, events.ProjectSubject(compute, pid), 0, created(pid, fmt.Sprint(i)))
		want = append(want, seq)
		// Noise from another compute, interleaved.
		other := newID()
		appendOK(t, s, events.ProjectSubject("other", other), 0, created(other, "x"))
	}
	recs, through := loadAll(t, s, events.ComputeFilter(compute), 1)
	if len(recs) != len(want) {
		t.Fatalf("loaded %d events of the compute, want %d", len(recs), len(want))
	}
	for i, r := range recs {
		if r.Seq != want[i] {
			t.Fatalf("event %d at sequence %d, want %d (stream order)", i, r.Seq, want[i])
		}
	}
	if last := lastSeq(t, s); through != last {
		t.Fatalf("Load returned through=%d, stream ends at %d", through, last)
	}
}

func testLoadFrom(t *testing.T, s events.Store) {
	pid := newID()
	subj := events.ProjectSubject("c1", pid)
	s1 := appendOK(t, s, subj, 0, created(pid, "a"))
	s2 := appendOK(t, s, subj, s1, port(pid, 1))
	s3 := appendOK(t, s, subj, s2, port(pid, 2))
	recs, _ := loadAll(t, s, subj, s2)
	if len(recs) != 2 || recs[0].Seq != s2 || recs[1].Seq != s3 {
		t.Fatalf("Load from %d: got %v", s2, seqs(recs))
	}
	recs, through := loadAll(t, s, subj, s3+1)
	if len(recs) != 0 || through != s3 {
		t.Fatalf("Load past the end: %v through %d", seqs(recs), through)
	}
}

func testLoadEmpty(t *testing.T, s events.Store) {
	// Nothing matches: Load must return, not wait for a first event.
	done := make(chan error, 1)
	go func() {
		_, err := s.Load(t.Context(), events.ComputeFilter("nobody"), 1, func(events.Record) error {
			return errors.New("unexpected record")
		})
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Load of an empty filter did not return")
	}
}

func testLoadStopsOnCallbackError(t *testing.T, s events.Store) {
	pid := newID()
	subj := events.ProjectSubject("c1", pid)
	appendOK(t, s, subj, 0, created(pid, "a"), port(pid, 1), port(pid, 2))
	stop := errors.New("stop")
	n := 0
	_, err := s.Load(t.Context(), subj, 1, func(events.Record) error {
		n++
		return stop
	})
	if !errors.Is(err, stop) || n != 1 {
		t.Fatalf("Load after a callback error: err=%v after %d calls", err, n)
	}
}

func testFollowHistoryThenLive(t *testing.T, s events.Store) {
	compute := "f" + newID()[:8]
	pid := newID()
	subj := events.ProjectSubject(compute, pid)
	s1 := appendOK(t, s, subj, 0, created(pid, "a"))
	s2 := appendOK(t, s, subj, s1, port(pid, 1))

	ctx, cancel := context.WithCancel(t.Context())
	got := make(chan uint64, 16)
	var wg sync.WaitGroup
	var ferr error
	wg.Go(func() {
		ferr = s.Follow(ctx, events.ComputeFilter(compute), s2, func(r events.Record) error {
			got <- r.Seq
			return nil
		})
	})
	expect := func(want uint64) {
		t.Helper()
		select {
		case seq := <-got:
			if seq != want {
				t.Fatalf("Follow delivered %d, want %d", seq, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("Follow did not deliver %d", want)
		}
	}
	expect(s2) // history from `from` on
	s3 := appendOK(t, s, subj, s2, port(pid, 2))
	expect(s3) // then live
	cancel()
	wg.Wait()
	if !errors.Is(ferr, context.Canceled) {
		t.Fatalf("Follow ended with %v, want context.Canceled", ferr)
	}
}

// testConcurrentWritersLoseNothing has writers race on one subject with a
// read-your-position, append, retry-on-conflict loop: every event must
// land exactly once.
func testConcurrentWritersLoseNothing(t *testing.T, s events.Store) {
	pid := newID()
	subj := events.ProjectSubject("c1", pid)
	first := appendOK(t, s, subj, 0, created(pid, "a"))
	const writers, each = 8, 10
	var mu sync.Mutex
	last := first
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := 0; i < each; {
				mu.Lock()
				exp := last
				mu.Unlock()
				seq, err := s.Append(t.Context(), subj, exp, newID(), port(pid, w*1000+i))
				switch {
				case err == nil:
					mu.Lock()
					if seq > last {
						last = seq
					}
					mu.Unlock()
					i++
				case errors.Is(err, events.ErrConflict):
					var ce *events.ConflictError
					if errors.As(err, &ce) {
						mu.Lock()
						if ce.Actual > last {
							last = ce.Actual
						}
						mu.Unlock()
					}
				default:
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	recs, _ := loadAll(t, s, subj, 1)
	seen := map[int]bool{}
	for _, r := range recs[1:] {
		p := r.Data.(events.UDPPortAllocated).Port
		if seen[p] {
			t.Fatalf("event for %d stored twice", p)
		}
		seen[p] = true
	}
	if len(seen) != writers*each {
		t.Fatalf("stored %d events, want %d", len(seen), writers*each)
	}
}

func seqs(recs []events.Record) []uint64 {
	out := make([]uint64, len(recs))
	for i, r := range recs {
		out[i] = r.Seq
	}
	return out
}
