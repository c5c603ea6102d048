package jetstream_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"labd/events"
	"labd/events/jetstream"
	"labd/events/jetstream/jstest"
)

// The tests of this file run the Store on a real three-node JetStream
// cluster in the test's process (jstest.StartCluster), connected as labd
// connects with --nats-url: every node's URL, reconnecting forever.

// openClusterStore opens the store as labd's serve does on a cluster: a
// connection that reports a cluster name gets three replicas.
func openClusterStore(t *testing.T, c *jstest.Cluster) (*nats.Conn, *jetstream.Store) {
	t.Helper()
	nc := c.Connect("labd test")
	if nc.ConnectedClusterName() == "" {
		t.Fatal("the connection reports no cluster name: labd would create the stream with one replica")
	}
	st, err := jetstream.Open(t.Context(), nc, jetstream.Config{Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	return nc, st
}

// projectEvent is an event of project p.
func projectEvent(p string, d events.Data) events.Event {
	return events.New(time.Now(), p, "", d)
}

// appendRetrying appends as a client of the store should: an
// ErrUnavailable answer is retried with the same command id and
// expectation until it succeeds or within runs out; any other error ends
// it. Each attempt has timeout.
func appendRetrying(st *jetstream.Store, within, timeout time.Duration, subject string, expected uint64, cmdID string, evs ...events.Event) (seq uint64, retries int, err error) {
	deadline := time.Now().Add(within)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		seq, err = st.Append(ctx, subject, expected, cmdID, evs...)
		cancel()
		if err == nil || !errors.Is(err, events.ErrUnavailable) || time.Now().After(deadline) {
			return seq, retries, err
		}
		retries++
		time.Sleep(50 * time.Millisecond)
	}
}

// loadAll returns every record of compute, by message id.
func loadAll(t *testing.T, st *jetstream.Store, compute string) map[string]events.Record {
	t.Helper()
	// Load needs the JetStream meta leader (it creates a consumer), which
	// may come back a few seconds after the stream's quorum does:
	// ErrUnavailable until then is retried.
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		recs := map[string]events.Record{}
		_, err := st.Load(ctx, events.ComputeFilter(compute), 1, func(r events.Record) error {
			if prev, ok := recs[r.MsgID]; ok {
				return fmt.Errorf("message id %s stored twice, at %d and %d", r.MsgID, prev.Seq, r.Seq)
			}
			recs[r.MsgID] = r
			return nil
		})
		cancel()
		switch {
		case err == nil:
			return recs
		case errors.Is(err, events.ErrUnavailable) && time.Now().Before(deadline):
			time.Sleep(200 * time.Millisecond)
		default:
			t.Fatal(err)
		}
	}
}

// On a cluster the stream is created with three replicas, each current.
func TestClusterStreamHasThreeReplicas(t *testing.T) {
	c := jstest.StartCluster(t, 3)
	nc, st := openClusterStore(t, c)
	if _, err := st.Append(t.Context(), events.ProjectSubject("c1", "p1"), 0, "cmd1", projectEvent("p1", events.ProjectCreated{Name: "a"})); err != nil {
		t.Fatal(err)
	}
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(t.Context(), st.StreamName())
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := stream.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if info.Config.Replicas != 3 {
			t.Fatalf("stream has %d replicas, want 3", info.Config.Replicas)
		}
		current := 0
		if info.Cluster != nil && info.Cluster.Leader != "" {
			current = 1
			for _, p := range info.Cluster.Replicas {
				if p.Current && !p.Offline {
					current++
				}
			}
		}
		if current == 3 {
			if got := c.StreamLeader(st.StreamName()); got < 0 {
				t.Fatalf("stream info names leader %s, but no node leads the stream", info.Cluster.Leader)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of 3 replicas current after 10s: %+v", current, info.Cluster)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// appended is one acknowledged append of the workload.
type appended struct {
	subject  string
	cmdID    string
	events   int
	seq      uint64
	start    time.Time
	duration time.Duration
}

// clusterWriter appends to its own projects until stop closes: a creation
// (one event) then an update and a port allocation (an atomic batch of
// two) per project, each retried through ErrUnavailable with the same
// command id. It sends each acknowledged append to acks; its first error
// other than ErrUnavailable ends it.
func clusterWriter(st *jetstream.Store, compute string, w int, stop <-chan struct{}, acks chan<- appended) (retries int, err error) {
	for p := 0; ; p++ {
		select {
		case <-stop:
			return retries, nil
		default:
		}
		project := fmt.Sprintf("w%dp%d", w, p)
		subject := events.ProjectSubject(compute, project)
		var expected uint64
		for i, evs := range [][]events.Event{
			{projectEvent(project, events.ProjectCreated{Name: project})},
			{projectEvent(project, events.ProjectUpdated{Name: project + "!"}), projectEvent(project, events.UDPPortAllocated{Port: 20000 + p})},
		} {
			// Message ids are deduplicated across the stream.
			cmdID := fmt.Sprintf("%s-%s-c%d", compute, project, i)
			start := time.Now()
			seq, n, err := appendRetrying(st, 30*time.Second, 2*time.Second, subject, expected, cmdID, evs...)
			retries += n
			if err != nil {
				return retries, fmt.Errorf("writer %d: %s: %w", w, cmdID, err)
			}
			acks <- appended{subject: subject, cmdID: cmdID, events: len(evs), seq: seq, start: start, duration: time.Since(start)}
			expected = seq
		}
	}
}

// The stream leader is shut down in the middle of a workload of four
// writers: after an election the writes go on, and afterwards the stream
// holds every acknowledged append, at the sequence it was acknowledged
// with, exactly once, and nothing else. The store's connection is first
// on the leader itself (it has to reconnect as well), then on a follower.
func TestClusterAppendsSurviveLeaderKill(t *testing.T) {
	c := jstest.StartCluster(t, 3)
	_, setup := openClusterStore(t, c)
	stream := setup.StreamName()
	for _, tc := range []struct {
		name     string
		onLeader bool
		compute  string
	}{
		{"connected to the leader", true, "c1"},
		{"connected to a follower", false, "c2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			leader := c.StreamLeader(stream)
			if leader < 0 {
				t.Fatal("no stream leader")
			}
			node := leader
			if !tc.onLeader {
				node = (leader + 1) % 3
			}
			st, err := jetstream.Open(t.Context(), c.ConnectTo(node, "labd test"), jetstream.Config{Replicas: 3})
			if err != nil {
				t.Fatal(err)
			}
			workloadThroughLeaderKill(t, c, st, tc.compute, leader)

			// The killed node comes back on its directory and catches up.
			c.Restart(leader)
			deadline := time.Now().Add(20 * time.Second)
			for !c.StreamCurrent(leader, stream) {
				if time.Now().After(deadline) {
					t.Fatalf("restarted node %d is not current on the stream after 20s", leader)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

// workloadThroughLeaderKill runs four writers on compute's subjects, kills
// the stream leader once 200 appends are acknowledged, waits for 200 more
// started after the kill, and checks the stream against the
// acknowledgements.
func workloadThroughLeaderKill(t *testing.T, c *jstest.Cluster, st *jetstream.Store, compute string, leader int) {
	const writers = 4
	stop := make(chan struct{})
	acks := make(chan appended, 1024)
	var wg sync.WaitGroup
	errs := make([]error, writers)
	retries := make([]int, writers)
	for w := range writers {
		wg.Go(func() { retries[w], errs[w] = clusterWriter(st, compute, w, stop, acks) })
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	var acked []appended
	collect := func(until func() bool, within time.Duration) bool {
		timeout := time.After(within)
		for !until() {
			select {
			case a := <-acks:
				acked = append(acked, a)
			case <-done:
				return false
			case <-timeout:
				return false
			}
		}
		return true
	}
	if !collect(func() bool { return len(acked) >= 200 }, 20*time.Second) {
		close(stop)
		<-done
		t.Fatalf("the workload did not get going: %d appends acknowledged; errors %v", len(acked), errs)
	}
	killed := time.Now()
	c.Kill(leader)
	killTook := time.Since(killed)
	electedc := make(chan time.Duration, 1)
	go func() { electedc <- untilStreamLeader(c, st.StreamName(), killed, 30*time.Second) }()
	before := len(acked)
	after := 0
	resumed := func() bool {
		if a := acked[len(acked)-1]; a.start.After(killed.Add(killTook)) {
			after++
		}
		return after >= 200
	}
	ok := collect(resumed, 30*time.Second)
	close(stop)
	for drained := false; !drained; {
		select {
		case a := <-acks:
			acked = append(acked, a)
		case <-done:
			drained = true
		}
	}
	for len(acks) > 0 {
		acked = append(acked, <-acks)
	}
	elected := <-electedc
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	if !ok {
		t.Fatalf("appends did not resume after the stream leader (node %d) was killed: %d acknowledged before, %d after", leader, before, len(acked)-before)
	}

	// What the failover cost: the election, the first acknowledgement
	// of an append started after the kill, and the slowest append.
	var firstAfter, slowest time.Duration
	for _, a := range acked {
		if end := a.start.Add(a.duration).Sub(killed); a.start.After(killed) && (firstAfter == 0 || end < firstAfter) {
			firstAfter = end
		}
		slowest = max(slowest, a.duration)
	}
	total := 0
	for _, n := range retries {
		total += n
	}
	t.Logf("%d appends acknowledged (%d before the kill); kill took %v; new leader (node %d) at +%v; first ack of an append started after the kill at +%v; slowest append %v; %d ErrUnavailable retries",
		len(acked), before, killTook.Round(time.Millisecond), c.StreamLeader(st.StreamName()), elected.Round(time.Millisecond),
		firstAfter.Round(time.Millisecond), slowest.Round(time.Millisecond), total)

	recs := loadAll(t, st, compute)
	stored := 0
	for _, a := range acked {
		for i := range a.events {
			id := events.MsgID(a.cmdID, i)
			r, ok := recs[id]
			if !ok {
				t.Fatalf("acknowledged event %s (sequence %d) is not in the stream", id, a.seq)
			}
			if want := a.seq - uint64(a.events-1-i); r.Seq != want || r.Subject != a.subject {
				t.Fatalf("event %s is at %s %d, acknowledged at %s %d", id, r.Subject, r.Seq, a.subject, want)
			}
			stored++
		}
	}
	if len(recs) != stored {
		t.Fatalf("the stream holds %d events of the workload, %d were acknowledged", len(recs), stored)
	}
}

// untilStreamLeader waits until a node leads the stream and returns the
// time since since; -1 if none does within.
func untilStreamLeader(c *jstest.Cluster, stream string, since time.Time, within time.Duration) time.Duration {
	for time.Since(since) < within {
		if c.StreamLeader(stream) >= 0 {
			return time.Since(since)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return -1
}

// killFollowers shuts down every node of a cluster of n but the stream's
// leader, so that the leader is left without a quorum.
func killFollowers(t *testing.T, c *jstest.Cluster, stream string, n int) (survivor int, killed []int) {
	t.Helper()
	survivor = c.StreamLeader(stream)
	if survivor < 0 {
		t.Fatal("no stream leader")
	}
	for i := range n {
		if i != survivor {
			c.Kill(i)
			killed = append(killed, i)
		}
	}
	return survivor, killed
}

// With two of three nodes down there is no quorum: an append fails with
// ErrUnavailable within its context's time (it is never refused as a
// conflict, which would tell the caller nothing was written); messages
// already stored can still be read with direct gets from the surviving
// replica, but not through a consumer, so Load fails with ErrUnavailable
// too. When one node comes back, writes work again, and every
// acknowledged event is there.
func TestClusterWithoutQuorum(t *testing.T) {
	c := jstest.StartCluster(t, 3)
	nc, st := openClusterStore(t, c)
	subj1, subj2 := events.ProjectSubject("c1", "p1"), events.ProjectSubject("c1", "p2")
	seq1, err := st.Append(t.Context(), subj1, 0, "p1-create", projectEvent("p1", events.ProjectCreated{Name: "a"}))
	if err != nil {
		t.Fatal(err)
	}
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(t.Context(), st.StreamName())
	if err != nil {
		t.Fatal(err)
	}

	survivor, killed := killFollowers(t, c, st.StreamName(), 3)
	lost := time.Now()

	// Writes: each attempt ends with ErrUnavailable once its context
	// expires (the surviving leader takes the message but cannot commit
	// it), plus the read-back of the subject.
	const attempt = 2 * time.Second
	for _, tc := range []struct{ name, project, subject, cmdID string }{
		{"first command", "p2", subj2, "p2-create"},
		{"retry of the same command", "p2", subj2, "p2-create"},
		{"another command on the same subject", "p2", subj2, "p2-create-again"},
		{"append to an aggregate with history", "p1", subj1, "p1-update"},
	} {
		expected := uint64(0)
		if tc.subject == subj1 {
			expected = seq1
		}
		ctx, cancel := context.WithTimeout(t.Context(), attempt)
		start := time.Now()
		_, err := st.Append(ctx, tc.subject, expected, tc.cmdID, projectEvent(tc.project, events.ProjectUpdated{Name: "b"}))
		took := time.Since(start)
		cancel()
		t.Logf("without quorum, %s: %v after %v", tc.name, err, took.Round(time.Millisecond))
		if !errors.Is(err, events.ErrUnavailable) {
			t.Errorf("without quorum, %s: got %v, want an error matching ErrUnavailable", tc.name, err)
		}
		if took > attempt+6*time.Second {
			t.Errorf("without quorum, %s: took %v, want the attempt's %v plus the bounded read-back", tc.name, took, attempt)
		}
	}

	// Reads: a direct get is answered by the surviving replica.
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	m, err := stream.GetLastMsgForSubject(ctx, subj1)
	cancel()
	if err != nil {
		t.Fatalf("direct get without quorum: %v", err)
	}
	if m.Sequence != seq1 || m.Header.Get(natsjs.MsgIDHeader) != events.MsgID("p1-create", 0) {
		t.Fatalf("direct get without quorum: sequence %d id %q, want %d %q", m.Sequence, m.Header.Get(natsjs.MsgIDHeader), seq1, events.MsgID("p1-create", 0))
	}
	// Load reads through an ordered consumer, which the JetStream meta
	// leader must create: there is none without a quorum.
	ctx, cancel = context.WithTimeout(t.Context(), attempt)
	start := time.Now()
	_, err = st.Load(ctx, events.ComputeFilter("c1"), 1, func(events.Record) error { return nil })
	cancel()
	t.Logf("without quorum, Load: %v after %v", err, time.Since(start).Round(time.Millisecond))
	if !errors.Is(err, events.ErrUnavailable) {
		t.Fatalf("Load without quorum: got %v, want an error matching ErrUnavailable", err)
	}

	// One node back: the survivor has a quorum again.
	c.Restart(killed[0])
	restarted := time.Now()
	subj3 := events.ProjectSubject("c1", "p3")
	seq3, retries, err := appendRetrying(st, 30*time.Second, attempt, subj3, 0, "p3-create", projectEvent("p3", events.ProjectCreated{Name: "c"}))
	if err != nil {
		t.Fatalf("append after node %d came back: %v", killed[0], err)
	}
	t.Logf("quorum lost for %v (survivor node %d); writes back %v after the restart (%d retries), leader node %d",
		restarted.Sub(lost).Round(time.Millisecond), survivor, time.Since(restarted).Round(time.Millisecond), retries, c.StreamLeader(st.StreamName()))

	recs := loadAll(t, st, "c1")
	if r, ok := recs[events.MsgID("p1-create", 0)]; !ok || r.Seq != seq1 {
		t.Fatalf("acknowledged p1-create: %+v, want it at %d", r, seq1)
	}
	if r, ok := recs[events.MsgID("p3-create", 0)]; !ok || r.Seq != seq3 {
		t.Fatalf("acknowledged p3-create: %+v, want it at %d", r, seq3)
	}
	// The appends that were not acknowledged may have landed once the
	// quorum came back, but the expectations still hold: at most one
	// creation of p2.
	n := 0
	for _, r := range recs {
		if r.Subject == subj2 {
			n++
		}
	}
	if n > 1 {
		t.Fatalf("%d events on %s, whose appends all expected it empty", n, subj2)
	}
}

// Load right after an acknowledged Append sees it, also while a restarted
// replica catches up. A direct get may be answered by any replica, and a
// replica may lag behind the leader that acknowledged the append: Load
// must not take its word for where the subject's history starts.
func TestClusterLoadSeesAcknowledgedAppends(t *testing.T) {
	c := jstest.StartCluster(t, 3)
	_, setup := openClusterStore(t, c)
	leader := c.StreamLeader(setup.StreamName())
	follower := (leader + 1) % 3
	// On the leader, so that the follower's death costs no reconnection.
	st, err := jetstream.Open(t.Context(), c.ConnectTo(leader, "labd test"), jetstream.Config{Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	c.Kill(follower)
	for i := range 2000 {
		p := fmt.Sprint("fill", i)
		if _, err := st.Append(t.Context(), events.ProjectSubject("c9", p), 0, "c9-"+p, projectEvent(p, events.ProjectCreated{Name: p})); err != nil {
			t.Fatal(err)
		}
	}
	c.Restart(follower)
	start := time.Now()
	const n = 100
	missed := 0
	for i := range n {
		p := fmt.Sprint("p", i)
		subj := events.ProjectSubject("c1", p)
		seq, err := st.Append(t.Context(), subj, 0, "c1-"+p, projectEvent(p, events.ProjectCreated{Name: p}))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		var got []uint64
		_, err = st.Load(ctx, subj, 1, func(r events.Record) error { got = append(got, r.Seq); return nil })
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0] != seq {
			missed++
		}
	}
	t.Logf("%d of %d loads missed the append acknowledged just before (%v)", missed, n, time.Since(start))
	if missed > 0 {
		t.Fatalf("%d of %d loads missed the append acknowledged just before them", missed, n)
	}
}
