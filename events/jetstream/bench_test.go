package jetstream_test

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"labd/events"
	"labd/events/jetstream/jstest"
	"labd/replay"
)

// The benchmarks of this file run on a real embedded JetStream on
// b.TempDir(), in process (nats.InProcessServer), as labd runs by default.
// BENCHMARKS.md at the repository root has the numbers and the machine.

// benchSyncModes are the two durability settings of the embedded server:
// labd's default (fsync after every write) and nats-server's own default
// (fsync every two minutes; a killed process still loses nothing).
var benchSyncModes = []struct {
	name string
	opts jstest.Options
}{
	{"sync=always", jstest.Options{SyncAlways: true}},
	{"sync=interval", jstest.Options{}},
}

// BenchmarkAppend measures Store.Append of one event with its optimistic
// concurrency expectation, as a command that emits one event does. One op
// is one Append; ns/op is the mean latency of one append done one after the
// other (no concurrency).
func BenchmarkAppend(b *testing.B) {
	for _, m := range benchSyncModes {
		b.Run(m.name, func(b *testing.B) { benchAppend(b, m.opts, 1) })
	}
}

// BenchmarkAppendBatch measures Store.Append of an atomic batch of five
// events (one command that emits several events). One op is one batch.
func BenchmarkAppendBatch(b *testing.B) {
	for _, m := range benchSyncModes {
		b.Run(m.name, func(b *testing.B) { benchAppend(b, m.opts, 5) })
	}
}

func benchAppend(b *testing.B, opts jstest.Options, batch int) {
	env := jstest.Start(b, opts)
	ctx := b.Context()
	pid := uuid.NewString()
	subj := events.ProjectSubject("bench", pid)
	at := time.Now()
	last, err := env.Store.Append(ctx, subj, 0, uuid.NewString(), events.New(at, pid, "", events.ProjectCreated{Name: "bench"}))
	if err != nil {
		b.Fatal(err)
	}
	cmdPrefix := uuid.NewString() + "-"
	port := 20000
	evs := make([]events.Event, batch)
	lat := make([]time.Duration, 0, 1<<14)
	n := 0
	for b.Loop() {
		for i := range evs {
			evs[i] = benchProjectEvent(at, pid, n*batch+i, &port)
		}
		cmd := cmdPrefix + strconv.Itoa(n)
		t0 := time.Now()
		seq, err := env.Store.Append(ctx, subj, last, cmd, evs...)
		lat = append(lat, time.Since(t0))
		if err != nil {
			b.Fatalf("append %d: %v", n, err)
		}
		if seq != last+uint64(batch) {
			b.Fatalf("append %d: last sequence %d, want %d", n, seq, last+uint64(batch))
		}
		last = seq
		n++
	}
	reportLatency(b, lat)
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "events/s")
}

// benchProjectEvent returns the i-th event after the creation of a project:
// a mix of UDP port allocations (each port once), updates and file writes,
// all of which fold on an open project.
func benchProjectEvent(at time.Time, pid string, i int, port *int) events.Event {
	at = at.Add(time.Duration(i) * time.Millisecond)
	switch i % 10 {
	case 0, 1, 2, 3:
		*port++
		return events.New(at, pid, "", events.UDPPortAllocated{Port: *port})
	case 4, 5, 6:
		v := strconv.Itoa(i)
		return events.New(at, pid, "", events.ProjectUpdated{
			Name:      "bench-" + v,
			Variables: []events.Variable{{Name: "revision", Value: &v}},
		})
	default:
		return events.New(at, pid, "", events.FileWritten{
			Path: "project-files/vpcs/" + strconv.Itoa(i%7) + "/startup.vpc", Size: int64(100 + i%900),
			MD5Sum: "9e107d9d372bb6826bd81d3542a419d6",
		})
	}
}

// reportLatency reports the p50 and p99 of lat in microseconds.
func reportLatency(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(percentile(lat, 0.50))/1e3, "p50-µs")
	b.ReportMetric(float64(percentile(lat, 0.99))/1e3, "p99-µs")
}

// percentile returns the nearest-rank q-quantile of sorted.
func percentile(sorted []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// BenchmarkReplay measures replay.Rehydrate of a whole compute's history:
// the one bulk read and fold labd does at startup. One op is one
// Rehydrate; ns/op is the time of a full replay. The stream is seeded once
// per sub-benchmark, with the relaxed fsync (replay only reads).
func BenchmarkReplay(b *testing.B) {
	for _, c := range []struct {
		name     string
		projects int
		short    bool
	}{
		{"events=100k", 1_000, true},
		{"events=1M", 10_000, false},
	} {
		b.Run(c.name, func(b *testing.B) {
			if testing.Short() && !c.short {
				b.Skip("1M events takes about a minute to seed; skipped in -short mode")
			}
			env := jstest.Start(b, jstest.Options{})
			mine := seedReplay(b, env, c.projects, 100)
			runtime.GC() // do not charge the seeding's garbage to the replay
			ctx := b.Context()
			for b.Loop() {
				st, err := replay.Rehydrate(ctx, env.Store, "bench", nil)
				if err != nil {
					b.Fatal(err)
				}
				if len(st.Projects) != c.projects {
					b.Fatalf("rehydrated %d projects, want %d", len(st.Projects), c.projects)
				}
			}
			perOp := b.Elapsed().Seconds() / float64(b.N)
			b.ReportMetric(float64(mine)/perOp, "events/s")
		})
	}
}

// seedReplay publishes the history of projects projects of compute
// "bench", perProject events each (a project.created, then the mix of
// benchProjectEvent), interleaved by groups of 100 projects as concurrent
// labs would write them, plus one project.created of compute "other" every
// 1,000 events, which Rehydrate must filter out. Events are encoded with
// events.Marshal and carry the headers Store.Append sets, but they are
// published asynchronously, without expectations, to seed fast. It returns
// the number of "bench" events.
func seedReplay(b testing.TB, env *jstest.Env, projects, perProject int) int {
	b.Helper()
	start := time.Now()
	var (
		errMu    sync.Mutex
		firstErr error
	)
	js, err := jetstream.New(env.Conn, jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, m *nats.Msg, err error) {
		errMu.Lock()
		if firstErr == nil {
			firstErr = fmt.Errorf("%s: %w", m.Subject, err)
		}
		errMu.Unlock()
	}))
	if err != nil {
		b.Fatal(err)
	}
	published, stalls := 0, 0
	wait := func() {
		select {
		case <-js.PublishAsyncComplete():
		case <-time.After(2 * time.Minute):
			b.Fatalf("seeding: %d acks still pending after 2 minutes", js.PublishAsyncPending())
		}
		errMu.Lock()
		defer errMu.Unlock()
		if firstErr != nil {
			b.Fatalf("seeding: %v", firstErr)
		}
	}
	publish := func(compute string, ev events.Event) {
		body, err := events.Marshal(ev)
		if err != nil {
			b.Fatal(err)
		}
		m := nats.NewMsg(events.ProjectSubject(compute, ev.ProjectID))
		m.Data = body
		m.Header.Set(jetstream.MsgIDHeader, events.MsgID(uuid.NewString(), 0))
		m.Header.Set("Labd-Type", string(ev.Type))
		for {
			_, err := js.PublishMsgAsync(m)
			if err == nil {
				break
			}
			if !errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
				b.Fatalf("seeding: %v", err)
			}
			stalls++
		}
		published++
		if published%20_000 == 0 {
			wait()
		}
	}

	at := time.Now().Add(-time.Hour)
	port := 20000
	mine := 0
	const group = 100
	ids := make([]string, group)
	for g := 0; g < projects; g += group {
		ids = ids[:min(group, projects-g)]
		for i := range ids {
			ids[i] = uuid.NewString()
		}
		for j := range perProject {
			for _, pid := range ids {
				if j == 0 {
					publish("bench", events.New(at, pid, "", events.ProjectCreated{Name: "lab-" + pid[:8]}))
				} else {
					publish("bench", benchProjectEvent(at, pid, j, &port))
				}
				mine++
				if mine%1000 == 0 {
					other := uuid.NewString()
					publish("other", events.New(at, other, "", events.ProjectCreated{Name: "theirs"}))
				}
			}
		}
	}
	wait()
	last, err := env.Store.LastSequence(b.Context())
	if err != nil {
		b.Fatal(err)
	}
	if last != uint64(published) {
		b.Fatalf("seeding: stream ends at %d after %d publishes", last, published)
	}
	b.Logf("seeded %d events (%d of compute bench) in %v, %d stalled publishes retried",
		published, mine, time.Since(start).Round(time.Millisecond), stalls)
	return mine
}
