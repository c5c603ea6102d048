package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"labd/actors"
	"labd/events/jetstream"
	"labd/events/jetstream/jstest"
	"labd/nio"
	"labd/replay"
)

// These tests run labd as serve runs it with --nats-url on a three-node
// JetStream cluster (jstest.StartCluster, in the test's process): the
// stream gets three replicas, and nodes are killed under it.

// clusterDaemon is labd but cmd on a NATS cluster.
type clusterDaemon struct {
	URL       string
	ComputeID string
	Store     *jetstream.Store
	Client    *actors.Client
}

// startClusterDaemon starts a daemon as serve does with --nats-url: a
// connection to every node of c (reconnecting forever), the stream with
// three replicas because the connection reports a cluster, then the
// daemon of the test harness on that store. udpPorts is its UDP range.
//
// With node >= 0 the daemon connects to that node first (and to the
// others only when it goes away); with -1 it connects as labd does, to a
// node picked at random.
func startClusterDaemon(t *testing.T, c *jstest.Cluster, computeID string, node int, udpPorts nio.PortRange) *clusterDaemon {
	t.Helper()
	nc := c.Connect("labd " + computeID)
	if node >= 0 {
		nc.Close()
		nc = c.ConnectTo(node, "labd "+computeID)
	}
	if nc.ConnectedClusterName() == "" {
		t.Fatal("the connection to the cluster reports no cluster name: labd would use one replica")
	}
	store, err := jetstream.Open(t.Context(), nc, jetstream.Config{Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, daemonOptions{store: store, computeID: computeID, udpPorts: udpPorts})
	return &clusterDaemon{URL: d.URL, ComputeID: computeID, Store: store, Client: d.Client}
}

// clusterHTTP bounds every request: a daemon that hangs fails the test.
var clusterHTTP = &http.Client{Timeout: 30 * time.Second}

// send sends one request and reads the reply; it never touches a
// testing.T, so workload goroutines can use it.
func (d *clusterDaemon) send(method, path, body string) (*response, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, d.URL+path, rd)
	if err != nil {
		return nil, err
	}
	resp, err := clusterHTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: reading the body: %w", method, path, err)
	}
	return &response{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// projectIDs lists the projects GET /v2/compute/projects reports.
func (d *clusterDaemon) projectIDs(t *testing.T) []string {
	t.Helper()
	r, err := d.send("GET", "/v2/compute/projects", "")
	if err != nil {
		t.Fatal(err)
	}
	r.expect(t, 200, "")
	var ids []string
	for _, p := range r.array(t) {
		ids = append(ids, p["project_id"].(string))
	}
	slices.Sort(ids)
	return ids
}

// rehydrate folds the compute's history afresh, as a restarted labd
// would: a connection and a store of its own.
func rehydrate(t *testing.T, c *jstest.Cluster, computeID string) *replay.State {
	t.Helper()
	st, err := jetstream.Open(t.Context(), c.Connect("replay "+computeID), jetstream.Config{Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	state, err := replay.Rehydrate(ctx, st, computeID, nil)
	if err != nil {
		t.Fatal(err)
	}
	return state
}

// openProjects returns the ids of the open projects of a state.
func openProjects(s *replay.State) []string {
	var ids []string
	for id, p := range s.Projects {
		if p.IsOpen() {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// retryClock records the 503 answers of a workload.
type retryClock struct {
	mu                sync.Mutex
	count             int
	first, last       time.Time
	slowest           time.Duration
	missingRetryAfter int
}

func (c *retryClock) observe(r *response, took time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.slowest = max(c.slowest, took)
	if r.Status != http.StatusServiceUnavailable {
		return
	}
	now := time.Now()
	if c.count == 0 {
		c.first = now
	}
	c.last = now
	c.count++
	if r.Header.Get("Retry-After") == "" {
		c.missingRetryAfter++
	}
}

// do sends a request as a client of labd should: a 503 is retried (after
// 100 ms, sooner than its Retry-After asks, to keep the test short) until
// another answer comes or within runs out. Any answer but want is an
// error.
func (d *clusterDaemon) do(clock *retryClock, within time.Duration, want int, method, path, body string) (*response, error) {
	deadline := time.Now().Add(within)
	for {
		start := time.Now()
		r, err := d.send(method, path, body)
		if err != nil {
			return nil, err
		}
		clock.observe(r, time.Since(start))
		switch {
		case r.Status == want:
			return r, nil
		case r.Status != http.StatusServiceUnavailable:
			return nil, fmt.Errorf("%s %s: status %d, want %d; body %s", method, path, r.Status, want, r.Body)
		case time.Now().After(deadline):
			return nil, fmt.Errorf("%s %s: still 503 after %v; body %s", method, path, within, r.Body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// clientEffects is what the acknowledged requests of one workload client
// did: its projects, the last variables value set on each, the UDP ports
// handed to each.
type clientEffects struct {
	projects []string
	value    map[string]string
	ports    map[string][]int
	acked    int
}

// runClusterClient sends n requests, pause apart: a project creation
// every tenth, and between them variables updates and UDP port
// allocations on its projects in turn. It stops at the first error; acked
// counts the 2xx answers as they come.
func runClusterClient(d *clusterDaemon, clock *retryClock, k, n int, pause time.Duration, acked func()) (clientEffects, error) {
	e := clientEffects{value: map[string]string{}, ports: map[string][]int{}}
	for i := range n {
		time.Sleep(pause)
		var err error
		switch {
		case i%10 == 0:
			id := uuid.NewString()
			_, err = d.do(clock, 30*time.Second, 201, "POST", "/v2/compute/projects",
				fmt.Sprintf(`{"name": "client %d project %d", "project_id": %q}`, k, i, id))
			if err == nil {
				e.projects = append(e.projects, id)
			}
		case i%2 == 1:
			id := e.projects[i%len(e.projects)]
			value := fmt.Sprintf("client %d request %d", k, i)
			_, err = d.do(clock, 30*time.Second, 200, "PUT", "/v2/compute/projects/"+id,
				fmt.Sprintf(`{"variables": [{"name": "last", "value": %q}]}`, value))
			if err == nil {
				e.value[id] = value
			}
		default:
			id := e.projects[i%len(e.projects)]
			var r *response
			r, err = d.do(clock, 30*time.Second, 201, "POST", "/v2/compute/projects/"+id+"/ports/udp", "{}")
			if err == nil {
				var body struct {
					Port int `json:"udp_port"`
				}
				if err = json.Unmarshal(r.Body, &body); err == nil {
					e.ports[id] = append(e.ports[id], body.Port)
				}
			}
		}
		if err != nil {
			return e, fmt.Errorf("client %d request %d: %w", k, i, err)
		}
		e.acked++
		acked()
	}
	return e, nil
}

// receive takes n values from ch, and reports whether it could within.
func receive(ch <-chan struct{}, n int, within time.Duration) bool {
	timeout := time.After(within)
	for range n {
		select {
		case <-ch:
		case <-timeout:
			return false
		}
	}
	return true
}

// variablesOf returns the value of variable "last" in a v2 project
// object, "" if it has none.
func variablesOf(p map[string]any) string {
	vars, _ := p["variables"].([]any)
	for _, v := range vars {
		if m, ok := v.(map[string]any); ok && m["name"] == "last" {
			s, _ := m["value"].(string)
			return s
		}
	}
	return ""
}

// Four clients send 100 requests each, creating projects, updating them
// and allocating UDP ports, while the stream's leader is killed: labd
// keeps serving (an answer during the election may be 503 with
// Retry-After, never another 5xx), and afterwards every acknowledged
// request's effect is there, both in what the daemon serves and in a
// fresh replay of the stream. A second daemon with another compute id
// on the same cluster sees only its own projects.
func TestClusterDaemonSurvivesLeaderKill(t *testing.T) {
	c := jstest.StartCluster(t, 3)
	// The worst case: the daemon's connection is on the node that leads
	// the stream, so both go at once. The stream is made first, to know
	// its leader.
	if _, err := jetstream.Open(t.Context(), c.Connect("setup"), jetstream.Config{Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	leader := c.StreamLeader(jetstream.DefaultStream)
	if leader < 0 {
		t.Fatal("no stream leader")
	}
	a := startClusterDaemon(t, c, "a", leader, freeUDPRange(t, 300))

	const clients, requests = 4, 100
	var (
		mu      sync.Mutex
		acked   int
		ackedCh = make(chan struct{}, clients*requests)
		clock   retryClock
		results = make([]clientEffects, clients)
		errs    = make([]error, clients)
		wg      sync.WaitGroup
	)
	countAck := func() {
		mu.Lock()
		acked++
		mu.Unlock()
		ackedCh <- struct{}{}
	}
	for k := range clients {
		wg.Go(func() { results[k], errs[k] = runClusterClient(a, &clock, k, requests, 10*time.Millisecond, countAck) })
	}

	// Kill the stream leader when half the requests are answered (the
	// clients pause 10 ms between requests, so that the workload lasts
	// over a second: the kill lands in the middle of it).
	if !receive(ackedCh, clients*requests/2, 30*time.Second) {
		wg.Wait()
		t.Fatalf("half the workload was not answered within 30s; errors %v", errs)
	}
	// Under load the leadership can move by itself: the kill is for
	// whichever node leads now.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if now := c.StreamLeader(a.Store.StreamName()); now >= 0 {
			if now != leader {
				t.Logf("the stream leader moved from node %d to %d before the kill", leader, now)
			}
			leader = now
			break
		}
		if time.Now().After(deadline) {
			wg.Wait()
			t.Fatal("no stream leader to kill")
		}
	}
	mu.Lock()
	ackedAtKill := acked
	mu.Unlock()
	killed := time.Now()
	c.Kill(leader)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	if ackedAtKill >= clients*requests {
		t.Fatalf("the leader was killed after the workload ended")
	}
	window := "no 503"
	if clock.count > 0 {
		window = fmt.Sprintf("%d answers 503, from +%v to +%v after the kill", clock.count,
			clock.first.Sub(killed).Round(time.Millisecond), clock.last.Sub(killed).Round(time.Millisecond))
	}
	t.Logf("stream leader node %d killed after %d of %d requests; %s; slowest answer %v; leader now node %d",
		leader, ackedAtKill, clients*requests, window, clock.slowest.Round(time.Millisecond), c.StreamLeader(a.Store.StreamName()))
	if clock.missingRetryAfter > 0 {
		t.Fatalf("%d answers 503 without a Retry-After header", clock.missingRetryAfter)
	}

	// Every acknowledged effect, as the daemon serves it.
	want := map[string]clientEffects{}
	var created []string
	for _, e := range results {
		for _, id := range e.projects {
			want[id] = e
			created = append(created, id)
		}
	}
	slices.Sort(created)
	if got := a.projectIDs(t); !slices.Equal(got, created) {
		t.Fatalf("daemon a lists %d projects, %d were created", len(got), len(created))
	}
	for _, id := range created {
		r, err := a.send("GET", "/v2/compute/projects/"+id, "")
		if err != nil {
			t.Fatal(err)
		}
		if got := variablesOf(r.expect(t, 200, "").object(t)); got != want[id].value[id] {
			t.Fatalf("project %s: variable last is %q, the last acknowledged update set %q", id, got, want[id].value[id])
		}
	}

	// And as a fresh replay of the stream folds it.
	state := rehydrate(t, c, "a")
	if got := openProjects(state); !slices.Equal(got, created) {
		t.Fatalf("the replay has %d open projects, %d were created", len(got), len(created))
	}
	ports := 0
	for _, id := range created {
		p := state.Projects[id]
		value := ""
		for _, v := range p.Variables {
			if v.Name == "last" && v.Value != nil {
				value = *v.Value
			}
		}
		if value != want[id].value[id] {
			t.Fatalf("replayed project %s: variable last is %q, the last acknowledged update set %q", id, value, want[id].value[id])
		}
		for _, port := range want[id].ports[id] {
			if !p.HoldsUDPPort(port) {
				t.Fatalf("replayed project %s does not hold UDP port %d, acknowledged to it (holds %v)", id, port, p.UDPPorts)
			}
			ports++
		}
	}
	t.Logf("%d projects and %d acknowledged UDP ports, all present in a replay through stream sequence %d", len(created), ports, state.Seq)

	// The killed node comes back; a second compute shares the cluster.
	c.Restart(leader)
	b := startClusterDaemon(t, c, "b", -1, freeUDPRange(t, 20))
	if got := b.projectIDs(t); len(got) != 0 {
		t.Fatalf("daemon b, with no history of its own, lists %d projects", len(got))
	}
	var mine []string
	for i := range 3 {
		id := uuid.NewString()
		if _, err := b.do(&clock, 30*time.Second, 201, "POST", "/v2/compute/projects", fmt.Sprintf(`{"name": "b%d", "project_id": %q}`, i, id)); err != nil {
			t.Fatal(err)
		}
		mine = append(mine, id)
	}
	slices.Sort(mine)
	if got := b.projectIDs(t); !slices.Equal(got, mine) {
		t.Fatalf("daemon b lists %v, want its own %v", got, mine)
	}
	r, err := b.send("GET", "/v2/compute/projects/"+created[0], "")
	if err != nil {
		t.Fatal(err)
	}
	r.expect(t, 404, "")
	if got := a.projectIDs(t); !slices.Equal(got, created) {
		t.Fatalf("after b's creations daemon a lists %d projects, want its %d", len(got), len(created))
	}
	if got := openProjects(rehydrate(t, c, "b")); !slices.Equal(got, mine) {
		t.Fatalf("a replay of compute b has %v, want %v", got, mine)
	}
	if got := openProjects(rehydrate(t, c, "a")); !slices.Equal(got, created) {
		t.Fatalf("a replay of compute a after b's creations has %d projects, want %d", len(got), len(created))
	}
}

// With two of three nodes down there is no quorum: a creation and an
// update answer 503 with Retry-After, while reads, served from the
// actors' snapshots, still answer 200. When a node comes back the
// creation goes through, and nothing acknowledged is lost.
func TestClusterDaemonWithoutQuorum(t *testing.T) {
	c := jstest.StartCluster(t, 3)
	d := startClusterDaemon(t, c, "a", -1, freeUDPRange(t, 10))
	var clock retryClock
	kept := uuid.NewString()
	if _, err := d.do(&clock, 10*time.Second, 201, "POST", "/v2/compute/projects", fmt.Sprintf(`{"name": "kept", "project_id": %q}`, kept)); err != nil {
		t.Fatal(err)
	}

	// Leave the stream leader alone: it takes the writes and cannot
	// commit them.
	survivor := c.StreamLeader(d.Store.StreamName())
	if survivor < 0 {
		t.Fatal("no stream leader")
	}
	var killed []int
	for i := range 3 {
		if i != survivor {
			c.Kill(i)
			killed = append(killed, i)
		}
	}
	lost := time.Now()

	// A creation and an update at once: both wait for the store, then
	// answer 503.
	added := uuid.NewString()
	writes := []struct{ method, path, body string }{
		{"POST", "/v2/compute/projects", fmt.Sprintf(`{"name": "added", "project_id": %q}`, added)},
		{"PUT", "/v2/compute/projects/" + kept, `{"variables": [{"name": "last", "value": "lost"}]}`},
	}
	replies := make([]*response, len(writes))
	took := make([]time.Duration, len(writes))
	errs := make([]error, len(writes))
	var wg sync.WaitGroup
	for i, w := range writes {
		wg.Go(func() {
			start := time.Now()
			replies[i], errs[i] = d.send(w.method, w.path, w.body)
			took[i] = time.Since(start)
		})
	}
	// Reads meanwhile, and after.
	for range 3 {
		if got := d.projectIDs(t); !slices.Equal(got, []string{kept}) {
			t.Fatalf("GET /v2/compute/projects without quorum: %v, want [%s]", got, kept)
		}
		r, err := d.send("GET", "/v2/compute/projects/"+kept, "")
		if err != nil {
			t.Fatal(err)
		}
		r.expect(t, 200, "")
		time.Sleep(100 * time.Millisecond)
	}
	wg.Wait()
	for i, w := range writes {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		r := replies[i]
		t.Logf("without quorum, %s %s: %d after %v", w.method, w.path, r.Status, took[i].Round(time.Millisecond))
		if r.Status != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" {
			t.Fatalf("%s %s without quorum: status %d, Retry-After %q, want 503 with Retry-After; body %s",
				w.method, w.path, r.Status, r.Header.Get("Retry-After"), r.Body)
		}
	}
	if got := d.projectIDs(t); !slices.Equal(got, []string{kept}) {
		t.Fatalf("GET /v2/compute/projects without quorum, after the refused writes: %v, want [%s]", got, kept)
	}

	// One node back: the survivor has a quorum again, and a new write
	// goes through.
	c.Restart(killed[0])
	restarted := time.Now()
	probe := uuid.NewString()
	if _, err := d.do(&clock, 40*time.Second, 201, "POST", "/v2/compute/projects", fmt.Sprintf(`{"name": "probe", "project_id": %q}`, probe)); err != nil {
		t.Fatal(err)
	}
	t.Logf("quorum lost for %v; a creation went through %v after a node came back",
		restarted.Sub(lost).Round(time.Millisecond), time.Since(restarted).Round(time.Millisecond))

	// The refused creation, retried once the restarted node has caught
	// up and the cluster has a meta leader again (without one, no
	// consumer can be created, so the actor cannot re-read its
	// aggregate: 503), answers 201: whether its first attempt landed
	// (the survivor had taken it) or not, the project exists once.
	untilCurrent(t, c, d.Store.StreamName(), survivor, killed[0])
	untilMetaLeader(t, c)
	t.Logf("stream current on both nodes and a meta leader %v after the restart", time.Since(restarted).Round(time.Millisecond))
	if _, err := d.do(&clock, 10*time.Second, 201, writes[0].method, writes[0].path, writes[0].body); err != nil {
		t.Fatal(err)
	}
	want := []string{kept, added, probe}
	slices.Sort(want)
	if got := d.projectIDs(t); !slices.Equal(got, want) {
		t.Fatalf("after the quorum came back daemon lists %v, want %v", got, want)
	}
	state := rehydrate(t, c, "a")
	if got := slices.Sorted(maps.Keys(state.Projects)); !slices.Equal(got, want) {
		t.Fatalf("after the quorum came back the replay has %v, want %v", got, want)
	}
}

// untilCurrent waits until each of nodes has caught up with the stream.
func untilCurrent(t *testing.T, c *jstest.Cluster, stream string, nodes ...int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for _, i := range nodes {
		for !c.StreamCurrent(i, stream) {
			if time.Now().After(deadline) {
				t.Fatalf("node %d has not caught up with the stream after 20s", i)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// untilMetaLeader waits until the cluster has a JetStream meta leader.
func untilMetaLeader(t *testing.T, c *jstest.Cluster) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for c.MetaLeader() < 0 {
		if time.Now().After(deadline) {
			t.Fatal("no JetStream meta leader after 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
