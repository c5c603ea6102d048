package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"labd/actors/actorstest"
	"labd/events"
	"labd/nio"
)

// How VPCS nodes behave under several clients, concurrent requests, slow
// and dying processes, and bad input: over HTTP, telnet and the
// notification streams, on real vpcs processes.

// httpResult is a reply read by a goroutine that must not fail the test
// itself.
type httpResult struct {
	status int
	body   []byte
	took   time.Duration
	err    error
}

// behaviourClient bounds every request of these tests: a hung daemon
// fails the test instead of blocking it.
var behaviourClient = &http.Client{Timeout: 30 * time.Second}

// sendRequest sends one request and reads the reply; it never touches t.
func sendRequest(method, url, body string) httpResult {
	start := time.Now()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return httpResult{err: err}
	}
	resp, err := behaviourClient.Do(req)
	if err != nil {
		return httpResult{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return httpResult{status: resp.StatusCode, body: b, took: time.Since(start), err: err}
}

// vpcsRun names the processes of one run of a node: the arguments of its
// command line after the program. They hold an internal console port and
// UDP ports chosen for that run (from the test's own range), so no other
// process has them.
type vpcsRun string

// runOf returns the run of a command line as labd reports it.
func runOf(t testing.TB, commandLine string) vpcsRun {
	t.Helper()
	f := strings.Fields(commandLine)
	if len(f) < 2 || !slices.Contains(f, "-p") {
		t.Fatalf("command line %q is not a VPCS one", commandLine)
	}
	return vpcsRun(strings.Join(f[1:], " "))
}

// processes returns the running vpcs processes of the run (a vpcs forks a
// child for its console, with the same command line). Zombies have no
// command line and are not counted.
func (r vpcsRun) processes() []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || len(b) == 0 {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if filepath.Base(args[0]) == "vpcs" && strings.Join(args[1:], " ") == string(r) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// waitGone waits until no process of the run is left.
func (r vpcsRun) waitGone(t testing.TB, within time.Duration) {
	t.Helper()
	eventually(t, within, func() error {
		if pids := r.processes(); len(pids) > 0 {
			return fmt.Errorf("vpcs processes %v of run %q are still running", pids, r)
		}
		return nil
	})
}

// vpcsReaper kills, when the test ends, whatever processes of the runs it
// watches are left, so that a failing test leaks nothing. Created before
// the daemon, it runs after the daemon has stopped.
type vpcsReaper struct {
	t    testing.TB
	mu   sync.Mutex
	runs []vpcsRun
}

func newVPCSReaper(t testing.TB) *vpcsReaper {
	r := &vpcsReaper{t: t}
	t.Cleanup(r.reap)
	return r
}

func (r *vpcsReaper) watch(run vpcsRun) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.runs = append(r.runs, run)
}

func (r *vpcsReaper) reap() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, run := range r.runs {
		for _, pid := range run.processes() {
			r.t.Logf("killing leftover vpcs %d (%s)", pid, run)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// ownPorts gives test i of this file console and UDP port ranges of its
// own, outside the defaults other daemons use: these tests run in
// parallel, and a port another daemon checked free but has not bound yet
// must not be handed out twice.
func ownPorts(i int) daemonOptions {
	return daemonOptions{
		consolePorts: nio.PortRange{First: 10100 + 100*i, Last: 10199 + 100*i},
		udpPorts:     nio.PortRange{First: 11000 + 200*i, Last: 11199 + 200*i},
	}
}

// getNodeV2 returns a node as GET .../vpcs/nodes/{id} shows it.
func (d *daemon) getNodeV2(t testing.TB, project string, n vpcsNode) map[string]any {
	t.Helper()
	return doRequest(t, "GET", d.URL+nodePath(project, n), "").expect(t, 200, "").object(t)
}

// runningRun returns the run of a started node, which must have
// processes, and tells the reaper about it.
func (d *daemon) runningRun(t testing.TB, project string, n vpcsNode, r *vpcsReaper) vpcsRun {
	t.Helper()
	o := d.getNodeV2(t, project, n)
	if o["status"] != "started" {
		t.Fatalf("node %s is %v, want started", n.ID, o["status"])
	}
	run := runOf(t, o["command_line"].(string))
	r.watch(run)
	if len(run.processes()) == 0 {
		t.Fatalf("node %s is started, but no process of %q runs", n.ID, run)
	}
	return run
}

// nodeHistory returns the events of one node aggregate.
func (d *daemon) nodeHistory(t testing.TB, project, node string) []events.Record {
	t.Helper()
	var recs []events.Record
	if _, err := d.Env.Store.Load(t.Context(), events.NodeSubject("test", project, node), 1, func(r events.Record) error {
		recs = append(recs, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return recs
}

// waitGreeted waits until the proxy has registered a console client: its
// telnet negotiation (IAC WILL ECHO first) has arrived. Output after that
// reaches the client live, not as the replay of recent output.
func waitGreeted(t testing.TB, c *console) {
	t.Helper()
	c.waitFor(0, "\xff\xfb\x01", 10*time.Second)
}

// waitShowIP waits until `show ip` output giving the address ip/24 appears
// after mark. The echo of a typed `ip` command does not match.
func waitShowIP(t testing.TB, c *console, mark int, ip string) {
	t.Helper()
	waitConsoleMatch(t, c, mark, regexp.MustCompile(`IP/MASK\s*:\s*`+regexp.QuoteMeta(ip)+`/24`))
}

// waitConsoleMatch waits until the console output after mark matches re.
func waitConsoleMatch(t testing.TB, c *console, mark int, re *regexp.Regexp) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !re.MatchString(c.output()[mark:]) {
		if time.Now().After(deadline) {
			t.Fatalf("console: nothing matching %s within 10s; got:\n%s", re, c.output()[mark:])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitShowName waits until `show ip` output naming the VPC name appears
// after mark. The echo of a typed `set pcname` does not match.
func waitShowName(t testing.TB, c *console, mark int, name string) {
	t.Helper()
	waitConsoleMatch(t, c, mark, regexp.MustCompile(`NAME\s*:\s*`+regexp.QuoteMeta(name)+`\[1\]`))
}

// rename sets the VPC's name and waits for the prompt, which takes the
// name: VPCS drops what is typed while it runs a command.
func rename(c *console, name string) {
	c.t.Helper()
	m := c.mark()
	c.send("set pcname " + name)
	c.waitFor(m, "\r"+name+"> ", 10*time.Second)
}

// TestTwoConsoleClientsShareTheConsole: two telnet clients on one VPCS
// console both see what either types; one leaving does not disturb the
// other; a client arriving later gets the console. And a console port
// asked for that another node holds gets the node another port, which the
// reply names (GNS3's rule).
func TestTwoConsoleClientsShareTheConsole(t *testing.T) {
	t.Parallel()
	reaper := newVPCSReaper(t)
	d := startDaemon(t, ownPorts(0))
	p := d.createProject("consoles")
	n := d.createVPCS(p, "PC1")
	d.startNode(p, n)
	d.runningRun(t, p, n, reaper)

	a, b := dialConsole(t, n.Console), dialConsole(t, n.Console)
	waitGreeted(t, a)
	waitGreeted(t, b)
	ma, mb := a.mark(), b.mark()
	a.setIP("10.0.0.5")
	a.command("show ip", 10*time.Second)
	waitShowIP(t, a, ma, "10.0.0.5")
	waitShowIP(t, b, mb, "10.0.0.5")

	// A leaves; B carries on alone. (Renaming is instant where a new
	// address takes VPCS seconds of duplicate checks.)
	a.close()
	mb = b.mark()
	rename(b, "Bob")
	b.send("show ip")
	waitShowName(t, b, mb, "Bob")

	// C arrives after A left, and gets the console; B sees C's work too.
	c := dialConsole(t, n.Console)
	waitGreeted(t, c)
	mc, mb := c.mark(), b.mark()
	rename(c, "Carol")
	c.send("show ip")
	waitShowName(t, c, mc, "Carol")
	waitShowName(t, b, mb, "Carol")

	// A console port already held: 201, another port, and the reply says
	// which.
	taken := n.Console
	got := map[int]bool{taken: true}
	for _, create := range []struct{ path, body string }{
		{"/v2/compute/projects/" + p + "/vpcs/nodes", fmt.Sprintf(`{"name": "PC2", "console": %d}`, taken)},
		{"/v1/projects/" + p + "/vpcs/vms", fmt.Sprintf(`{"name": "PC3", "console": %d}`, taken)},
	} {
		o := d.do("POST", create.path, create.body).expect(t, 201, "").object(t)
		port, ok := o["console"].(float64)
		if !ok || port < 1 || got[int(port)] {
			t.Fatalf("POST %s asking for console %d (taken): console %v, want another free port; ports so far %v",
				create.path, taken, o["console"], got)
		}
		got[int(port)] = true
	}
	if o := d.getNodeV2(t, p, n); o["console"] != float64(taken) {
		t.Fatalf("the node holding console %d now has %v", taken, o["console"])
	}
	// The first node's console still works on its port.
	mb = b.mark()
	b.send("show ip")
	waitShowName(t, b, mb, "Carol")
}

// TestConcurrentStartStopGetOnOneNode: a burst of starts, stops and GETs
// on one node never fails, the node's mailbox applies the lifecycle
// requests one at a time (its history alternates started / stopped, never
// two processes), the node ends in the state its last applied request
// left, and a stopped node leaves no process behind.
func TestConcurrentStartStopGetOnOneNode(t *testing.T) {
	t.Parallel()
	reaper := newVPCSReaper(t)
	d := startDaemon(t, ownPorts(1))
	p := d.createProject("race")
	n := d.createVPCS(p, "PC1")
	base := d.URL + nodePath(p, n)

	const requests = 20
	ops := make([]string, requests)
	results := make([]httpResult, requests)
	gate := make(chan struct{})
	var wg sync.WaitGroup
	for i := range requests {
		ops[i] = [...]string{"start", "stop", "get"}[i%3]
		wg.Go(func() {
			<-gate
			switch ops[i] {
			case "start":
				results[i] = sendRequest("POST", base+"/start", "")
			case "stop":
				results[i] = sendRequest("POST", base+"/stop", "")
			default:
				results[i] = sendRequest("GET", base, "")
			}
		})
	}
	close(gate)
	wg.Wait()

	for i, r := range results {
		if r.err != nil {
			t.Fatalf("request %d (%s): %v", i, ops[i], r.err)
		}
		want := map[string]int{"start": 200, "stop": 204, "get": 200}[ops[i]]
		if r.status != want {
			t.Fatalf("request %d (%s): status %d, want %d; body %s", i, ops[i], r.status, want, r.body)
		}
		if ops[i] == "stop" {
			continue
		}
		var o map[string]any
		if err := json.Unmarshal(r.body, &o); err != nil {
			t.Fatalf("request %d (%s): body %q: %v", i, ops[i], r.body, err)
		}
		// A start answers with the node as the start left it.
		if ops[i] == "start" && o["status"] != "started" {
			t.Fatalf("start %d answered a node %v", i, o["status"])
		}
		if s := o["status"]; s != "started" && s != "stopped" {
			t.Fatalf("GET %d: status %v", i, s)
		}
	}

	// The history is the order the mailbox applied them in.
	var lifecycle []events.Type
	var runs []vpcsRun
	for _, rec := range d.nodeHistory(t, p, n.ID) {
		switch rec.Type {
		case events.TypeNodeStarted:
			started, ok := rec.Data.(events.NodeStarted)
			if !ok {
				t.Fatalf("a %s event holds %T", rec.Type, rec.Data)
			}
			run := runOf(t, started.CommandLine)
			reaper.watch(run)
			runs = append(runs, run)
			lifecycle = append(lifecycle, rec.Type)
		case events.TypeNodeStopped, events.TypeNodeStartFailed:
			lifecycle = append(lifecycle, rec.Type)
		}
	}
	if len(lifecycle) == 0 {
		t.Fatal("no start was applied")
	}
	for i, typ := range lifecycle {
		want := events.TypeNodeStarted
		if i%2 == 1 {
			want = events.TypeNodeStopped
		}
		if typ != want {
			t.Fatalf("lifecycle events %v: event %d is %s, want %s (starts and stops must alternate)", lifecycle, i, typ, want)
		}
	}
	t.Logf("the mailbox applied %d lifecycle changes: %v", len(lifecycle), lifecycle)

	// The node is as the last applied change left it, with the processes
	// of that run only.
	last := lifecycle[len(lifecycle)-1]
	wantStatus := map[events.Type]string{events.TypeNodeStarted: "started", events.TypeNodeStopped: "stopped"}[last]
	if got := d.getNodeV2(t, p, n)["status"]; got != wantStatus {
		t.Fatalf("after the burst the node is %v; its last lifecycle event is %s", got, last)
	}
	for i, run := range runs {
		if i == len(runs)-1 && last == events.TypeNodeStarted {
			if len(run.processes()) == 0 {
				t.Fatalf("the node is started but no process of its run %q is", run)
			}
			continue
		}
		run.waitGone(t, 3*time.Second)
	}

	// One final stop, then one final start: each is applied and shows.
	d.do("POST", nodePath(p, n)+"/stop", "").expect(t, 204, "")
	if got := d.getNodeV2(t, p, n)["status"]; got != "stopped" {
		t.Fatalf("after the final stop the node is %v", got)
	}
	for _, run := range runs {
		run.waitGone(t, 3*time.Second)
	}
	d.startNode(p, n)
	d.runningRun(t, p, n, reaper)
}

// slowVPCS returns the absolute path of testdata/slow-vpcs, a real vpcs
// that does not end on SIGTERM.
func slowVPCS(t testing.TB) string {
	t.Helper()
	path, err := filepath.Abs(filepath.Join("..", "..", "testdata", "slow-vpcs"))
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm()&0o111 == 0 {
		t.Fatalf("fixture %s must exist and be executable: %v %v", path, fi, err)
	}
	return actorstest.Executable(t, path)
}

// sigtermPending reports whether one of pids has a SIGTERM pending (the
// slow VPCS blocks it, so a stop's SIGTERM stays there).
func sigtermPending(pids []int) bool {
	const sigtermBit = 1 << (syscall.SIGTERM - 1)
	for _, pid := range pids {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
		if err != nil {
			continue
		}
		for line := range strings.SplitSeq(string(b), "\n") {
			if mask, ok := strings.CutPrefix(line, "ShdPnd:"); ok {
				if v, err := strconv.ParseUint(strings.TrimSpace(mask), 16, 64); err == nil && v&sigtermBit != 0 {
					return true
				}
			}
		}
	}
	return false
}

// TestGetDuringSlowStopReturnsAtOnce: while a stop waits out the grace of
// a process that does not end on SIGTERM, GETs of the node answer at once from
// its snapshot; the stop then kills the process, answers 204, and nothing
// of the node is left running.
func TestGetDuringSlowStopReturnsAtOnce(t *testing.T) {
	t.Parallel()
	reaper := newVPCSReaper(t)
	o := ownPorts(2)
	o.vpcsPath = slowVPCS(t)
	d := startDaemon(t, o)
	p := d.createProject("slow")
	n := d.createVPCS(p, "PC1")
	d.startNode(p, n)
	run := d.runningRun(t, p, n, reaper)
	pids := run.processes()

	stopped := make(chan httpResult, 1)
	go func() { stopped <- sendRequest("POST", d.URL+nodePath(p, n)+"/stop", "") }()
	// The stop is under way once its SIGTERM is pending in the process.
	eventually(t, 5*time.Second, func() error {
		if !sigtermPending(pids) {
			return fmt.Errorf("no SIGTERM pending in %v", pids)
		}
		return nil
	})

	// GETs (v2 and v1) while the stop runs: each answers at once.
	const bound = time.Second // the grace is 3 s
	var gets int
	var slowest time.Duration
	var stop httpResult
	for waiting := true; waiting; {
		for _, path := range []string{nodePath(p, n), "/v1/projects/" + p + "/vpcs/vms/" + n.ID} {
			r := sendRequest("GET", d.URL+path, "")
			if r.err != nil || r.status != 200 {
				t.Fatalf("GET %s during the stop: %d %s %v", path, r.status, r.body, r.err)
			}
			if r.took > bound {
				t.Fatalf("GET %s during the stop took %v, want under %v", path, r.took, bound)
			}
			slowest = max(slowest, r.took)
			gets++
		}
		select {
		case stop = <-stopped:
			waiting = false
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Logf("%d GETs during the stop, the slowest took %v", gets, slowest)
	if gets < 4 {
		t.Fatalf("only %d GETs were made while the stop ran: the process did not hold the stop up", gets)
	}

	if stop.err != nil || stop.status != 204 {
		t.Fatalf("stop: %d %s %v", stop.status, stop.body, stop.err)
	}
	if stop.took < 2500*time.Millisecond {
		t.Fatalf("the stop took %v: it did not wait the 3 s grace for a process deaf to SIGTERM", stop.took)
	}
	t.Logf("the stop took %v", stop.took)
	if got := d.getNodeV2(t, p, n)["status"]; got != "stopped" {
		t.Fatalf("after the stop the node is %v", got)
	}
	// The kill after the grace must end the node's every process, the
	// console child vpcs forks included.
	run.waitGone(t, 3*time.Second)
}

// TestVPCSKilledFromOutside: a vpcs killed by someone else leaves its
// node stopped, says so on both notification streams (log.error naming
// VPCS, then the node stopped), and the node starts again.
func TestVPCSKilledFromOutside(t *testing.T) {
	t.Parallel()
	reaper := newVPCSReaper(t)
	d := startDaemon(t, ownPorts(3))
	p := d.createProject("killed")
	n := d.createVPCS(p, "PC1")
	d.startNode(p, n)
	run := d.runningRun(t, p, n, reaper)
	d.settle()
	ws := dialWS(t, d, "", nil)
	stream := openStream(t, d.URL+"/v1/projects/"+p+"/notifications")

	for _, pid := range run.processes() {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill %d: %v", pid, err)
		}
	}

	eventually(t, 5*time.Second, func() error {
		if s := d.getNodeV2(t, p, n)["status"]; s != "stopped" {
			return fmt.Errorf("the node is %v", s)
		}
		return nil
	})
	hist := d.nodeHistory(t, p, n.ID)
	if st, ok := hist[len(hist)-1].Data.(events.NodeStopped); !ok || st.Reason != events.StopExited {
		t.Fatalf("the node's last event is %s %+v, want a stop of reason %q", hist[len(hist)-1].Type, hist[len(hist)-1].Data, events.StopExited)
	}

	// v2: log.error naming VPCS, and node.updated showing the node stopped.
	var logError, updated bool
	deadline := time.Now().Add(5 * time.Second)
	for !logError || !updated {
		m := ws.event(time.Until(deadline))
		switch {
		case m.Action == "log.error":
			if msg, _ := m.Event["message"].(string); !strings.Contains(msg, "VPCS") || m.ProjectID != p {
				t.Fatalf("v2 log.error %+v: want a message naming VPCS, of project %s", m, p)
			}
			logError = true
		case m.Action == "node.updated" && m.Event["node_id"] == n.ID && m.Event["status"] == "stopped":
			if !logError {
				t.Fatalf("v2 node.updated (stopped) came before the log.error")
			}
			updated = true
		}
	}
	// v1: log.error and vm.stopped.
	logError, updated = false, false
	for !logError || !updated {
		m := stream.event(time.Until(deadline))
		switch {
		case m.Action == "log.error":
			if msg, _ := m.Event["message"].(string); !strings.Contains(msg, "VPCS") {
				t.Fatalf("v1 log.error %+v: want a message naming VPCS", m)
			}
			logError = true
		case m.Action == "vm.stopped" && m.Event["vm_id"] == n.ID && m.Event["status"] == "stopped":
			updated = true
		}
	}
	run.waitGone(t, 3*time.Second)

	// It starts again, with processes of its own (the killed ones are
	// gone).
	d.startNode(p, n)
	again := d.runningRun(t, p, n, reaper)
	d.do("POST", nodePath(p, n)+"/stop", "").expect(t, 204, "")
	again.waitGone(t, 3*time.Second)
}

// nodeBadCase is one request a node route must refuse.
type nodeBadCase struct {
	name   string
	method string
	path   string
	body   string
	status int    // 0: any 4xx
	msg    string // when set, the exact message
}

// treeOf lists the files under the daemon's data directory but the event
// store, with their sizes.
func treeOf(t testing.TB, d *daemon) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(d.DataDir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(d.DataDir, path)
		if e.IsDir() && rel == "nats" {
			return filepath.SkipDir
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		out = append(out, fmt.Sprintf("%s %v %d", rel, info.Mode().Type(), info.Size()))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestNodeBadInputChangesNothing sends malformed and impossible requests
// to the node routes of both API versions: each is refused with a 4xx in
// GNS3's error shape, and nothing changes: no event, the node as it was,
// no file written.
func TestNodeBadInputChangesNothing(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, ownPorts(4))
	p := d.createProject("bad input")
	n := d.createVPCS(p, "victim")
	lport, rport := d.udpPort(p), d.udpPort(p)
	d.do("POST", nodePath(p, n)+"/adapters/0/ports/0/nio", nioBody(lport, rport, "")).expect(t, 201, "")

	const unknown = "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"
	udp := func(extra string) string { return nioBody(lport, rport, extra) }
	var cases []nodeBadCase
	add := func(name, method, path, body string, status int, msg string) {
		cases = append(cases, nodeBadCase{name, method, path, body, status, msg})
	}
	for _, api := range []struct {
		name, collection, projects string
	}{
		{"v1", "/v1/projects/" + p + "/vpcs/vms", "/v1/projects/"},
		{"v2", "/v2/compute/projects/" + p + "/vpcs/nodes", "/v2/compute/projects/"},
	} {
		v, node := api.name, api.collection+"/"+n.ID
		port := node + "/adapters/0/ports/0"

		// Unknown nodes and projects: 404.
		other := api.collection + "/" + unknown
		add(v+" get unknown node", "GET", other, "", 404, "")
		add(v+" update unknown node", "PUT", other, `{"name": "x"}`, 404, "")
		add(v+" delete unknown node", "DELETE", other, "", 404, "")
		add(v+" start unknown node", "POST", other+"/start", "", 404, "")
		add(v+" stop unknown node", "POST", other+"/stop", "", 404, "")
		add(v+" reload unknown node", "POST", other+"/reload", "", 404, "")
		add(v+" suspend unknown node", "POST", other+"/suspend", "", 404, "")
		add(v+" add nio to unknown node", "POST", other+"/adapters/0/ports/0/nio", udp(""), 404, "")
		add(v+" update nio of unknown node", "PUT", other+"/adapters/0/ports/0/nio", udp(""), 404, "")
		add(v+" delete nio of unknown node", "DELETE", other+"/adapters/0/ports/0/nio", "", 404, "")
		add(v+" capture unknown node", "POST", other+"/adapters/0/ports/0/start_capture", `{"capture_file_name": "u.pcap"}`, 404, "")
		add(v+" stop capture of unknown node", "POST", other+"/adapters/0/ports/0/stop_capture", "", 404, "")
		add(v+" get node of unknown project", "GET", api.projects+unknown+"/vpcs/"+map[string]string{"v1": "vms", "v2": "nodes"}[v]+"/"+n.ID, "", 404, "")

		// Malformed node ids: 400.
		for _, id := range []string{"xyz", n.ID[:35], n.ID + "0", "%7B" + n.ID[1:35] + "%7D"} {
			bad := api.collection + "/" + id
			add(v+" get id "+id, "GET", bad, "", 400, "")
			add(v+" update id "+id, "PUT", bad, `{"name": "x"}`, 400, "")
			add(v+" delete id "+id, "DELETE", bad, "", 400, "")
			add(v+" start id "+id, "POST", bad+"/start", "", 400, "")
			add(v+" stop id "+id, "POST", bad+"/stop", "", 400, "")
			add(v+" nio id "+id, "POST", bad+"/adapters/0/ports/0/nio", udp(""), 400, "")
			add(v+" capture id "+id, "POST", bad+"/adapters/0/ports/0/start_capture", `{"capture_file_name": "i.pcap"}`, 400, "")
		}

		// Malformed NIOs, to POST and PUT alike: 400.
		nios := []struct{ name, body string }{
			{"not JSON", `not json`},
			{"array", `[]`},
			{"truncated", `{"type": "nio_udp", "lport": 1`},
			{"lport string", fmt.Sprintf(`{"type": "nio_udp", "lport": "x", "rhost": "127.0.0.1", "rport": %d}`, rport)},
			{"lport float", fmt.Sprintf(`{"type": "nio_udp", "lport": 1.5, "rhost": "127.0.0.1", "rport": %d}`, rport)},
			{"rport missing", fmt.Sprintf(`{"type": "nio_udp", "lport": %d, "rhost": "127.0.0.1"}`, lport)},
			{"lport missing", fmt.Sprintf(`{"type": "nio_udp", "rhost": "127.0.0.1", "rport": %d}`, rport)},
			{"rhost missing", fmt.Sprintf(`{"type": "nio_udp", "lport": %d, "rport": %d}`, lport, rport)},
			{"type missing", fmt.Sprintf(`{"lport": %d, "rhost": "127.0.0.1", "rport": %d}`, lport, rport)},
			{"unknown member", udp(`, "bogus": 1`)},
			{"lport 0", nioBody(0, rport, "")},
			{"lport 70000", nioBody(70000, rport, "")},
			{"rport -1", nioBody(lport, -1, "")},
			{"rport 65536", nioBody(lport, 65536, "")},
			{"rhost empty", fmt.Sprintf(`{"type": "nio_udp", "lport": %d, "rhost": "", "rport": %d}`, lport, rport)},
			{"rhost number", fmt.Sprintf(`{"type": "nio_udp", "lport": %d, "rhost": 127, "rport": %d}`, lport, rport)},
			{"unknown type", fmt.Sprintf(`{"type": "nio_bogus", "lport": %d, "rhost": "127.0.0.1", "rport": %d}`, lport, rport)},
			{"type number", fmt.Sprintf(`{"type": 1, "lport": %d, "rhost": "127.0.0.1", "rport": %d}`, lport, rport)},
			{"udp with tap_device", udp(`, "tap_device": "tap0"`)},
			{"suspend string", udp(`, "suspend": "yes"`)},
			{"filters array", udp(`, "filters": [1]`)},
			{"filters null", udp(`, "filters": null`)},
			{"filter arguments not an array", udp(`, "filters": {"packet_loss": 5}`)},
			{"unknown filter type", udp(`, "filters": {"bogus": [1]}`)},
			{"packet_loss 101", udp(`, "filters": {"packet_loss": [101]}`)},
			{"packet_loss -1", udp(`, "filters": {"packet_loss": [-1]}`)},
			{"packet_loss two values", udp(`, "filters": {"packet_loss": [1, 2]}`)},
			{"corrupt 200", udp(`, "filters": {"corrupt": [200]}`)},
			{"frequency_drop float", udp(`, "filters": {"frequency_drop": [1.5]}`)},
			{"delay three values", udp(`, "filters": {"delay": [1, 2, 3]}`)},
			{"delay word", udp(`, "filters": {"delay": ["soon"]}`)},
			{"bpf syntax", udp(`, "filters": {"bpf": ["icmp and and"]}`)},
			{"bpf number", udp(`, "filters": {"bpf": [5]}`)},
			{"bad filter beside a good one", udp(`, "filters": {"delay": [10], "packet_loss": [101]}`)},
		}
		for _, method := range []string{"POST", "PUT"} {
			for _, b := range nios {
				add(fmt.Sprintf("%s %s nio %s", v, method, b.name), method, port+"/nio", b.body, 400, "")
			}
			// Types of GNS3's schema labd does not run: 409, GNS3's words.
			for _, typ := range []string{"nio_tap", "nio_ethernet", "nio_generic_ethernet", "nio_linux_ethernet",
				"nio_unix", "nio_vde", "nio_nat", "nio_null", "nio_vmnet"} {
				body := `{"type": "` + typ + `"}`
				switch typ {
				case "nio_tap":
					body = `{"type": "nio_tap", "tap_device": "tap0"}`
				case "nio_unix":
					body = `{"type": "nio_unix", "local_file": "/tmp/a", "remote_file": "/tmp/b"}`
				}
				add(fmt.Sprintf("%s %s %s", v, method, typ), method, port+"/nio", body, 409, "NIO of type "+typ+" is not supported")
			}
		}

		// Ports the node does not have.
		for _, ap := range []string{"1/ports/0", "0/ports/3", "99999999999/ports/0", "0/ports/99999999999", "1/ports/1"} {
			where := node + "/adapters/" + ap
			add(v+" add nio on adapters/"+ap, "POST", where+"/nio", udp(""), 0, "")
			add(v+" update nio on adapters/"+ap, "PUT", where+"/nio", udp(""), 0, "")
			add(v+" delete nio on adapters/"+ap, "DELETE", where+"/nio", "", 0, "")
			add(v+" capture on adapters/"+ap, "POST", where+"/start_capture", `{"capture_file_name": "p.pcap"}`, 0, "")
			add(v+" stop capture on adapters/"+ap, "POST", where+"/stop_capture", "", 0, "")
		}
		add(v+" nio on adapters/-1", "POST", node+"/adapters/-1/ports/0/nio", udp(""), 0, "")

		// Capture file names that are not plain names, and bad link types.
		for _, name := range []string{"../x.pcap", "a/b.pcap", "..", "", ".", ".hidden", "..\\x.pcap", "/tmp/abs.pcap", "../../../../x.pcap"} {
			add(v+" capture name "+quote(name), "POST", port+"/start_capture", `{"capture_file_name": `+quote(name)+`}`, 400, "")
		}
		add(v+" capture name missing", "POST", port+"/start_capture", `{}`, 400, "")
		add(v+" capture name number", "POST", port+"/start_capture", `{"capture_file_name": 5}`, 400, "")
		add(v+" capture no body", "POST", port+"/start_capture", ``, 400, "")
		add(v+" capture unknown member", "POST", port+"/start_capture", `{"capture_file_name": "m.pcap", "x": 1}`, 400, "")
		add(v+" capture bad link type", "POST", port+"/start_capture", `{"capture_file_name": "ok.pcap", "data_link_type": "DLT_BOGUS"}`, 400, "")
		add(v+" capture link type number", "POST", port+"/start_capture", `{"capture_file_name": "ok.pcap", "data_link_type": 1}`, 400, "")
		add(v+" stop capture unknown member", "POST", port+"/stop_capture", `{"x": 1}`, 400, "")

		// Node create and update: console range and type, names.
		for _, c := range []string{"0", "65536", "-1", `"abc"`, "1.5", "true"} {
			add(v+" create console "+c, "POST", api.collection, `{"name": "n", "console": `+c+`}`, 400, "")
			add(v+" update console "+c, "PUT", node, `{"console": `+c+`}`, 400, "")
		}
		add(v+" create name empty", "POST", api.collection, `{"name": ""}`, 400, "")
		add(v+" create name missing", "POST", api.collection, `{}`, 400, "")
		add(v+" create name number", "POST", api.collection, `{"name": 7}`, 400, "")
		add(v+" create unknown member", "POST", api.collection, `{"name": "n", "bogus": 1}`, 400, "")
		add(v+" update name empty", "PUT", node, `{"name": ""}`, 400, "")
		add(v+" update not JSON", "PUT", node, `name=x`, 400, "")
		add(v+" start with a body member", "POST", node+"/start", `{"x": 1}`, 400, "")
	}
	v2c := "/v2/compute/projects/" + p + "/vpcs/nodes"
	add("v2 create console_type vnc", "POST", v2c, `{"name": "n", "console_type": "vnc"}`, 400, "")
	add("v2 create console_type number", "POST", v2c, `{"name": "n", "console_type": 1}`, 400, "")
	add("v2 create node_id xyz", "POST", v2c, `{"name": "n", "node_id": "xyz"}`, 400, "")
	add("v2 update console_type vnc", "PUT", v2c+"/"+n.ID, `{"console_type": "vnc"}`, 400, "")
	add("v2 update console_type null", "PUT", v2c+"/"+n.ID, `{"console_type": null}`, 400, "")
	add("v2 duplicate to xyz", "POST", v2c+"/"+n.ID+"/duplicate", `{"destination_node_id": "xyz"}`, 400, "")
	add("v2 duplicate unknown node", "POST", v2c+"/"+unknown+"/duplicate", `{"destination_node_id": "`+n.ID+`"}`, 404, "")
	add("v2 console reset unknown node", "POST", v2c+"/"+unknown+"/console/reset", "", 404, "")
	v1c := "/v1/projects/" + p + "/vpcs/vms"
	add("v1 create console_type (not in v1)", "POST", v1c, `{"name": "n", "console_type": "telnet"}`, 400, "")
	add("v1 create vm_id xyz", "POST", v1c, `{"name": "n", "vm_id": "xyz"}`, 400, "")
	add("v1 update console_type (not in v1)", "PUT", v1c+"/"+n.ID, `{"console_type": "telnet"}`, 400, "")

	getBoth := func(t *testing.T) string {
		return string(doRequest(t, "GET", d.URL+nodePath(p, n), "").expect(t, 200, "").Body) +
			string(doRequest(t, "GET", d.URL+v1c+"/"+n.ID, "").expect(t, 200, "").Body)
	}
	seqOf := func(t *testing.T) uint64 {
		seq, err := d.Env.Store.LastSequence(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return seq
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			seq, views, tree := seqOf(t), getBoth(t), treeOf(t, d)
			snap, err := d.Client.Node(p, n.ID)
			if err != nil {
				t.Fatal(err)
			}
			r := doRequest(t, tc.method, d.URL+tc.path, tc.body)
			if tc.status != 0 && r.Status != tc.status || r.Status < 400 || r.Status > 499 {
				want := "a 4xx"
				if tc.status != 0 {
					want = strconv.Itoa(tc.status)
				}
				t.Fatalf("%s %s %s: status %d, want %s; body %s", tc.method, tc.path, tc.body, r.Status, want, r.Body)
			}
			var reply struct {
				Message *string `json:"message"`
				Status  int     `json:"status"`
			}
			if err := json.NewDecoder(bytes.NewReader(r.Body)).Decode(&reply); err != nil || reply.Message == nil || *reply.Message == "" {
				t.Fatalf("reply %q: want a JSON object with a message (%v)", r.Body, err)
			}
			if tc.msg != "" && *reply.Message != tc.msg {
				t.Fatalf("message %q, want %q", *reply.Message, tc.msg)
			}
			if got := seqOf(t); got != seq {
				t.Fatalf("the refused request appended events: last sequence %d, was %d", got, seq)
			}
			if got := getBoth(t); got != views {
				t.Fatalf("the node changed:\n%s\nwas\n%s", got, views)
			}
			after, err := d.Client.Node(p, n.ID)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(after, snap) {
				t.Fatalf("the node's state changed:\n%+v\nwas\n%+v", after, snap)
			}
			if got := treeOf(t, d); !slices.Equal(got, tree) {
				t.Fatalf("files changed:\n%v\nwas\n%v", got, tree)
			}
		})
	}
	t.Logf("%d bad requests refused", len(cases))
	if t.Failed() {
		return
	}

	// In the same spirit, what must work does: a NIO update echoes its
	// filters; captures cannot be stopped when none runs nor started twice.
	port := nodePath(p, n) + "/adapters/0/ports/0"
	seq := d.lastSeq()
	echo := d.do("PUT", port+"/nio", udp(`, "filters": {"packet_loss": [10], "delay": [50, 5], "bpf": ["icmp"]}, "suspend": true`)).
		expect(t, 201, "").object(t)
	want := map[string]any{
		"type": "nio_udp", "lport": float64(lport), "rhost": "127.0.0.1", "rport": float64(rport), "suspend": true,
		"filters": map[string]any{"packet_loss": []any{10.0}, "delay": []any{50.0, 5.0}, "bpf": []any{"icmp"}},
	}
	if !reflect.DeepEqual(echo, want) {
		t.Fatalf("PUT nio echoed %v, want %v", echo, want)
	}
	if got := d.lastSeq(); got != seq+1 {
		t.Fatalf("the NIO update appended %d events, want 1", got-seq)
	}
	captures := d.Client.CapturesDir(p)
	for _, path := range []string{port, v1c + "/" + n.ID + "/adapters/0/ports/0"} {
		r := d.do("POST", path+"/stop_capture", "")
		if r.Status != 409 {
			t.Fatalf("stop_capture with none running: %d %s, want 409", r.Status, r.Body)
		}
	}
	first := d.do("POST", port+"/start_capture", `{"capture_file_name": "one.pcap"}`).expect(t, 200, "").object(t)
	if first["pcap_file_path"] != filepath.Join(captures, "one.pcap") {
		t.Fatalf("pcap_file_path %v, want %s", first["pcap_file_path"], filepath.Join(captures, "one.pcap"))
	}
	if _, err := os.Stat(filepath.Join(captures, "one.pcap")); err != nil {
		t.Fatalf("the capture file: %v", err)
	}
	seq = d.lastSeq()
	for _, path := range []string{port, v1c + "/" + n.ID + "/adapters/0/ports/0"} {
		r := d.do("POST", path+"/start_capture", `{"capture_file_name": "two.pcap"}`)
		if r.Status != 409 {
			t.Fatalf("a second start_capture: %d %s, want 409", r.Status, r.Body)
		}
	}
	if _, err := os.Stat(filepath.Join(captures, "two.pcap")); err == nil {
		t.Fatal("a refused second capture created its file")
	}
	if got := d.lastSeq(); got != seq {
		t.Fatalf("refused captures appended %d events", got-seq)
	}
	d.do("POST", port+"/stop_capture", "").expect(t, 204, "")
	if r := d.do("POST", port+"/stop_capture", ""); r.Status != 409 {
		t.Fatalf("stop_capture after the stop: %d %s, want 409", r.Status, r.Body)
	}
}
