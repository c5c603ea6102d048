package danube_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"labd/actors"
	"labd/actors/qemu"
	"labd/http/danube"
	"labd/http/dialecttest"
	"labd/nio"
	"labd/replay"
)

const apiKey = "k-3f9a"

// daemon is labd's actors and its Danube dialect on real parts.
type daemon struct {
	*dialecttest.Daemon
	URL     string
	Project string
}

func startDaemon(t *testing.T) *daemon {
	t.Helper()
	base := dialecttest.Start(t, dialecttest.Options{ComputeID: "danube-test",
		UDP: nio.PortRange{First: 19000, Last: 19999}, Consoles: nio.PortRange{First: 7200, Last: 7299}})
	d := &daemon{Daemon: base, Project: uuid.NewString()}
	if _, _, err := d.Client.CreateProject(t.Context(), actors.CreateProject{ProjectID: d.Project, Name: "danube"}); err != nil {
		t.Fatal(err)
	}
	h := danube.New(danube.Config{Client: d.Client, Images: d.Images, Version: "4.6",
		Keys:      map[string]danube.Key{apiKey: {ID: 7, User: "alice", Project: d.Project}},
		KeepAlive: 100 * time.Millisecond, Logger: d.Log})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	d.URL = srv.URL
	return d
}

// vm creates a stopped QEMU VM of the test guest.
func (d *daemon) vm(t *testing.T, name string) *replay.Node {
	t.Helper()
	img, linked, ram, cpus := dialecttest.Image, true, 64, 1
	n, err := d.Client.CreateNode(t.Context(), actors.CreateNode{
		NodeRef: actors.NodeRef{ProjectID: d.Project, NodeID: uuid.NewString()}, Kind: qemu.Kind, Name: name,
		ConsoleType: actors.ConsoleVNC, SecureConsole: true,
		Props: &qemu.Patch{HDADiskImage: &img, LinkedClone: &linked, RAM: &ram, CPUs: &cpus},
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// reply is an answer of the API.
type reply struct {
	code   int
	header http.Header
	raw    string
	body   map[string]any
}

func (r reply) detail() string { s, _ := r.body["detail"].(string); return s }
func (r reply) status() string { s, _ := r.body["status"].(string); return s }
func (r reply) result() map[string]any {
	m, _ := r.body["result"].(map[string]any)
	return m
}

// call sends a request as the es tool does: ES-API-KEY, a JSON body.
func (d *daemon) call(t *testing.T, method, path, key, body string, header ...string) reply {
	t.Helper()
	req, err := http.NewRequest(method, d.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("ES-API-KEY", key)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, b := dialecttest.Send(t, req)
	r := reply{code: resp.StatusCode, header: resp.Header, raw: string(b)}
	_ = json.Unmarshal(b, &r.body)
	return r
}

func (d *daemon) put(t *testing.T, path, body string) reply {
	return d.call(t, "PUT", path, apiKey, body)
}
func (d *daemon) get(t *testing.T, path string) reply { return d.call(t, "GET", path, apiKey, "") }

// vmStatus is a VM's status as GET .../status gives it.
func (d *daemon) vmStatus(t *testing.T, h string) string {
	t.Helper()
	r := d.get(t, "/api/vm/"+h+"/status/")
	if r.code != 200 || r.status() != "SUCCESS" {
		t.Fatalf("GET status of %s: %d %s", h, r.code, r.raw)
	}
	return r.result()["status"].(string)
}

var taskIDRE = regexp.MustCompile(`^7e7d1-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}$`)

// task checks a task-creating answer: 201 PENDING with the task id in
// the body and the es_task_id header.
func task(t *testing.T, r reply) string {
	t.Helper()
	id, _ := r.body["task_id"].(string)
	if r.code != 201 || r.status() != "PENDING" || r.body["result"] != nil || !taskIDRE.MatchString(id) || r.header.Get("es_task_id") != id {
		t.Fatalf("want 201 PENDING with a task id, got %d %s (es_task_id %q)", r.code, r.raw, r.header.Get("es_task_id"))
	}
	return id
}

// wait polls a task's status until it is not pending, and returns the
// final answer.
func (d *daemon) wait(t *testing.T, id string) reply {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		r := d.get(t, "/api/task/"+id+"/status/")
		if r.code != 201 {
			return r
		}
		if r.status() != "PENDING" {
			t.Fatalf("a pending task's status: %s", r.raw)
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s never ended", id)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (d *daemon) succeeds(t *testing.T, id string) map[string]any {
	t.Helper()
	r := d.wait(t, id)
	if r.code != 200 || r.status() != "SUCCESS" || r.result()["returncode"] != 0.0 {
		t.Fatalf("task %s: want 200 SUCCESS, got %d %s", id, r.code, r.raw)
	}
	return r.result()
}

// unchanged asserts that a refused request answered code and detail and
// recorded nothing.
func (d *daemon) unchanged(t *testing.T, what string, r reply, code int, detail string, seq uint64) {
	t.Helper()
	if r.code != code || (detail != "" && r.detail() != detail) {
		t.Errorf("%s: want %d %q, got %d %s", what, code, detail, r.code, r.raw)
	}
	if now := d.LastSeq(t); now != seq {
		t.Errorf("%s: the stream moved from %d to %d", what, seq, now)
	}
}

func TestStartStopRebootAsDanube(t *testing.T) {
	d := startDaemon(t)
	n := d.vm(t, "web1.lab")

	// Start by hostname, poll the task, read the status.
	r := d.put(t, "/api/vm/web1.lab/status/start/", "")
	if r.header.Get("es_username") != "alice" || r.header.Get("es_version") != "4.6" {
		t.Errorf("headers: es_username %q, es_version %q", r.header.Get("es_username"), r.header.Get("es_version"))
	}
	id := task(t, r)
	if res := d.succeeds(t, id); res["message"] != "Successfully started VM web1.lab" {
		t.Errorf("start result: %v", res)
	}
	if st := d.vmStatus(t, "web1.lab"); st != "running" {
		t.Fatalf("after start: %s", st)
	}
	if st := d.vmStatus(t, n.ID); st != "running" { // by UUID too, without the slash
		t.Fatalf("by uuid: %s", st)
	}
	done := d.get(t, "/api/task/"+id+"/done")
	if done.code != 200 || done.body["done"] != true || done.body["task_id"] != id {
		t.Errorf("done: %d %s", done.code, done.raw)
	}

	// A stop with a timeout on a guest that ignores ACPI: stopping, then
	// forced at the timeout.
	seq0 := d.LastSeq(t)
	start := time.Now()
	id = task(t, d.put(t, "/api/vm/web1.lab/status/stop/", `{"timeout": 2}`))
	if st := d.vmStatus(t, "web1.lab"); st != "stopping" {
		t.Fatalf("during a graceful stop: %s", st)
	}
	seq := d.LastSeq(t)
	if seq == seq0 {
		t.Fatal("the stop recorded nothing")
	}
	d.unchanged(t, "stop while stopping", d.put(t, "/api/vm/web1.lab/status/stop/", ""), 423, "VM is already stopping; try to use force", seq)
	d.unchanged(t, "start while stopping", d.put(t, "/api/vm/web1.lab/status/start/", ""), 417, "Bad action", seq)
	d.unchanged(t, "reboot while stopping", d.put(t, "/api/vm/web1.lab/status/reboot/", ""), 417, "Bad action", seq)
	d.unchanged(t, "current while stopping", d.put(t, "/api/vm/web1.lab/status/current/", ""), 409, "VM has pending tasks", seq)
	if tl := d.get(t, "/api/task/"); tl.code != 200 || !strings.Contains(tl.raw, id) {
		t.Errorf("GET /task: %d %s", tl.code, tl.raw)
	}
	if det := d.get(t, "/api/task/"+id+"/"); det.code != 200 || det.result()["action"] != "stop" || det.result()["timeout"] != 2.0 {
		t.Errorf("task details: %d %s", det.code, det.raw)
	}
	res := d.succeeds(t, id)
	if el := time.Since(start); el < 2*time.Second {
		t.Errorf("the stop ended after %v, before its 2 s timeout", el)
	}
	if msg, _ := res["message"].(string); !strings.Contains(msg, "forced") {
		t.Errorf("stop result: %v", res)
	}
	if st := d.vmStatus(t, "web1.lab"); st != "stopped" {
		t.Fatalf("after the stop: %s", st)
	}
	seq = d.LastSeq(t)
	d.unchanged(t, "stop of a stopped VM", d.put(t, "/api/vm/web1.lab/status/stop/", ""), 417, "Bad action", seq)
	d.unchanged(t, "reboot of a stopped VM", d.put(t, "/api/vm/web1.lab/status/reboot/", ""), 417, "Bad action", seq)

	// ES-STREAM: es in one request: keep-alive spaces, the final code on
	// its own line, then the final body.
	r = d.call(t, "PUT", "/api/vm/web1.lab/status/start/", apiKey, "", "ES-STREAM", "es")
	if r.code != 201 || r.header.Get("es_stream") != "True" {
		t.Fatalf("ES-STREAM: %d, es_stream %q", r.code, r.header.Get("es_stream"))
	}
	body := strings.TrimLeft(r.raw, " ")
	code, final, ok := strings.Cut(body, "\n")
	var fe map[string]any
	if !ok || code != "200" || json.Unmarshal([]byte(final), &fe) != nil || fe["status"] != "SUCCESS" || fe["task_id"] != r.header.Get("es_task_id") {
		t.Fatalf("ES-STREAM: es body %q", r.raw)
	}
	if st := d.vmStatus(t, "web1.lab"); st != "running" {
		t.Fatalf("after a streamed start: %s", st)
	}

	// A pending define, applied by a reboot (update defaults to true).
	if r := d.put(t, "/api/vm/web1.lab/define/", `{"vcpus": 2, "ram": 128}`); r.code != 200 || r.result()["changed"] != true || r.result()["vcpus"] != 2.0 {
		t.Fatalf("PUT define: %d %s", r.code, r.raw)
	}
	if a := d.get(t, "/api/vm/web1.lab/define/?active=true"); a.result()["vcpus"] != 1.0 || a.result()["ram"] != 64.0 {
		t.Fatalf("the active definition changed before an update: %s", a.raw)
	}
	// A stopping reboot with a pending change: Danube's 409 for a VM with
	// a task in flight.
	id = task(t, d.put(t, "/api/vm/web1.lab/status/reboot/", `{"timeout": 1}`))
	seq = d.LastSeq(t)
	d.unchanged(t, "stop during a reboot", d.put(t, "/api/vm/web1.lab/status/stop/", `{"update": false}`), 409, "VM has pending tasks", seq)
	d.succeeds(t, id)
	a := d.get(t, "/api/vm/web1.lab/define/?active=true")
	if a.result()["vcpus"] != 2.0 || a.result()["ram"] != 128.0 || a.result()["changed"] != false {
		t.Fatalf("after the reboot, the active definition: %s", a.raw)
	}
	node, err := d.Client.Node(d.Project, n.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !node.Running() || !strings.Contains(node.CommandLine, "-m 128M") || !strings.Contains(node.CommandLine, "cpus=2") {
		t.Fatalf("the rebooted QEMU does not run the definition: running %v, %s", node.Running(), node.CommandLine)
	}
}

func TestRefusalsChangeNothing(t *testing.T) {
	d := startDaemon(t)
	d.vm(t, "db1")
	seq := d.LastSeq(t)
	d.unchanged(t, "no key", d.call(t, "PUT", "/api/vm/db1/status/start/", "", ""), 401, "Authentication credentials were not provided.", seq)
	d.unchanged(t, "bad key", d.call(t, "PUT", "/api/vm/db1/status/start/", "wrong", ""), 401, "Invalid API key", seq)
	d.unchanged(t, "unknown VM", d.put(t, "/api/vm/nope/status/start/", ""), 404, "VM not found", seq)
	d.unchanged(t, "unknown action", d.put(t, "/api/vm/db1/status/pause/", ""), 404, "Not found", seq)
	d.unchanged(t, "bad method", d.call(t, "DELETE", "/api/vm/db1/status/start/", apiKey, ""), 405, `Method "DELETE" not allowed.`, seq)
	d.unchanged(t, "malformed JSON", d.put(t, "/api/vm/db1/status/start/", `{"update": `), 400, "", seq)
	for _, body := range []string{`{"cdimage": "nope.iso"}`, `{"cdimage2": "x.iso", "cdimage": "halt.img"}`, `{"force": "maybe"}`,
		`{"timeout": "soon"}`, `{"timeout": 0}`, `{"colour": "blue"}`} {
		path := "/api/vm/db1/status/start/"
		if strings.Contains(body, "force") || strings.Contains(body, "timeout") || strings.Contains(body, "colour") {
			path = "/api/vm/db1/status/stop/"
		}
		if path == "/api/vm/db1/status/stop/" && d.vmStatus(t, "db1") != "running" {
			if _, err := d.Client.NodeDo(t.Context(), actors.StartNode{NodeRef: actors.NodeRef{ProjectID: d.Project, NodeID: d.vmID(t, "db1")}}); err != nil {
				t.Fatal(err)
			}
			seq = d.LastSeq(t)
		}
		r := d.put(t, path, body)
		d.unchanged(t, body, r, 400, "", seq)
		if r.status() != "FAILURE" || len(r.result()) == 0 {
			t.Errorf("%s: want a FAILURE with field errors, got %s", body, r.raw)
		}
	}
	d.unchanged(t, "define out of range", d.put(t, "/api/vm/db1/define/", `{"ram": 0}`), 400, "", seq)
	d.unchanged(t, "cancel of no task", d.put(t, "/api/task/7e7d1-00000000-0000-4000-8000/cancel/", ""), 406, "Task cannot be canceled", seq)
	d.unchanged(t, "status of no task", d.get(t, "/api/task/7e7d1-00000000-0000-4000-8000/status/"), 404, "Task does not exist (anymore)", seq)
}

func (d *daemon) vmID(t *testing.T, name string) string {
	t.Helper()
	nodes, err := d.Client.Nodes(d.Project)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if n.Name == name {
			return n.ID
		}
	}
	t.Fatalf("no VM %s", name)
	return ""
}

func TestFreezeCancelAndCDImage(t *testing.T) {
	d := startDaemon(t)
	d.vm(t, "app1")

	// Freeze a stopped VM: a dummy task, 200 at once; a frozen VM does
	// not start, by Danube or by GNS3.
	r := d.put(t, "/api/vm/app1/status/stop/", `{"freeze": true}`)
	if r.code != 200 || r.status() != "SUCCESS" || !strings.Contains(r.result()["message"].(string), "Changing status to frozen") {
		t.Fatalf("freeze: %d %s", r.code, r.raw)
	}
	if st := d.vmStatus(t, "app1"); st != "frozen" {
		t.Fatalf("after freeze: %s", st)
	}
	seq := d.LastSeq(t)
	d.unchanged(t, "start of a frozen VM", d.put(t, "/api/vm/app1/status/start/", ""), 417, "Bad action", seq)
	if _, err := d.Client.NodeDo(t.Context(), actors.StartNode{NodeRef: actors.NodeRef{ProjectID: d.Project, NodeID: d.vmID(t, "app1")}}); err == nil {
		t.Fatal("GNS3's start started a frozen VM")
	}
	if r := d.put(t, "/api/vm/app1/status/stop/", `{"unfreeze": true}`); r.code != 200 || d.vmStatus(t, "app1") != "stopped" {
		t.Fatalf("unfreeze: %d %s", r.code, r.raw)
	}

	// Start from a CD image, once.
	d.succeeds(t, task(t, d.put(t, "/api/vm/app1/status/start/", `{"cdimage": "halt.img"}`)))
	n, err := d.Client.Node(d.Project, d.vmID(t, "app1"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(n.CommandLine, "-cdrom ") || !strings.Contains(n.CommandLine, "once=d") {
		t.Fatalf("a cdimage start's command line: %s", n.CommandLine)
	}

	// Cancel a graceful stop: the task is REVOKED, the VM runs on. While
	// it stops, an update of a pending definition is Danube's 428.
	id := task(t, d.put(t, "/api/vm/app1/status/stop/", `{"timeout": 600}`))
	if r := d.put(t, "/api/vm/app1/define", `{"ram": 96}`); r.code != 200 {
		t.Fatalf("define while stopping: %d %s", r.code, r.raw)
	}
	seq = d.LastSeq(t)
	d.unchanged(t, "update while stopping", d.put(t, "/api/vm/app1/status/stop/", `{"force": true, "update": true}`), 428,
		"Cannot perform update while VM is stopping", seq)
	if st := d.get(t, "/api/task/"+id+"/state"); st.code != 201 || st.status() != "PENDING" {
		t.Fatalf("the /state alias of a pending task: %d %s", st.code, st.raw)
	}
	list := d.get(t, "/api/vm/status/")
	vms, _ := list.body["result"].([]any)
	if list.code != 200 || len(vms) != 1 || vms[0].(map[string]any)["hostname"] != "app1" || vms[0].(map[string]any)["status"] != "stopping" {
		t.Fatalf("GET /vm/status: %d %s", list.code, list.raw)
	}
	if tasks, _ := vms[0].(map[string]any)["tasks"].(map[string]any); tasks[id] == nil {
		t.Fatalf("GET /vm/status does not list the pending task %s: %s", id, list.raw)
	}
	c := d.put(t, "/api/task/"+id+"/cancel/", "")
	if c.code != 410 || c.status() != "REVOKED" {
		t.Fatalf("cancel: %d %s", c.code, c.raw)
	}
	if st := d.vmStatus(t, "app1"); st != "running" {
		t.Fatalf("after a cancelled stop: %s", st)
	}
	if r := d.wait(t, id); r.code != 410 {
		t.Fatalf("a cancelled task's status: %d %s", r.code, r.raw)
	}
	if c := d.put(t, "/api/task/"+id+"/cancel/", ""); c.code != 406 {
		t.Fatalf("cancel of an ended task: %d %s", c.code, c.raw)
	}
}

// TestDriftIsShownAndCorrected: labd records a process that ends at once
// (it watches it), so the drift Danube's users know comes from a signal
// labd is not told of: kill -STOP behind its back.
func TestDriftIsShownAndCorrected(t *testing.T) {
	d := startDaemon(t)
	d.vm(t, "cache1")
	d.succeeds(t, task(t, d.put(t, "/api/vm/cache1/status/start/", "")))
	n, err := d.Client.Node(d.Project, d.vmID(t, "cache1"))
	if err != nil {
		t.Fatal(err)
	}
	pid := n.Process.PID
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(pid, syscall.SIGCONT)
	waitProc(t, pid, 'T')

	seq := d.LastSeq(t)
	if st := d.vmStatus(t, "cache1"); st != "running" {
		t.Fatalf("the record after SIGSTOP: %s", st)
	}
	cur := d.get(t, "/api/vm/cache1/status/current/")
	if cur.code != 200 || cur.result()["status"] != "paused" || !strings.Contains(cur.result()["message"].(string), "SIGSTOP") {
		t.Fatalf("GET current: %d %s", cur.code, cur.raw)
	}
	if d.LastSeq(t) != seq {
		t.Fatal("GET current recorded something")
	}
	fix := d.put(t, "/api/vm/cache1/status/current/", "")
	if fix.code != 200 || fix.result()["status"] != "paused" || fix.result()["status_changed"] != true {
		t.Fatalf("PUT current: %d %s", fix.code, fix.raw)
	}
	if st := d.vmStatus(t, "cache1"); st != "paused" {
		t.Fatalf("the record after PUT current: %s", st)
	}
	if again := d.put(t, "/api/vm/cache1/status/current/", ""); again.result()["status_changed"] != false {
		t.Fatalf("a second PUT current changed something: %s", again.raw)
	}

	// Continued behind labd's back, corrected back.
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	waitProc(t, pid, 'S', 'R')
	if fix := d.put(t, "/api/vm/cache1/status/current/", ""); fix.result()["status"] != "running" || fix.result()["status_changed"] != true {
		t.Fatalf("PUT current after SIGCONT: %s", fix.raw)
	}

	// A kill -9 leaves no drift: labd records the exit by itself.
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for d.vmStatus(t, "cache1") != "stopped" {
		if time.Now().After(deadline) {
			t.Fatal("labd did not record the killed process")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitProc waits until /proc says the process is in one of states.
func waitProc(t *testing.T, pid int, states ...byte) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, err := readStat(pid)
		if err == nil {
			for _, s := range states {
				if b == s {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d never was in state %q", pid, states)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func readStat(pid int) (byte, error) {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	b := string(raw)
	i := strings.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0, io.ErrUnexpectedEOF
	}
	return b[i+2], nil
}

func TestParseKeys(t *testing.T) {
	pid := uuid.NewString()
	keys, err := danube.ParseKeys(strings.NewReader("# lab\n\nk1 " + pid + " alice\nk2 " + strings.ToUpper(pid) + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if k := keys["k1"]; k.User != "alice" || k.Project != pid || k.ID != 2 {
		t.Errorf("k1: %+v", k)
	}
	if k := keys["k2"]; k.User != "user3" || k.Project != pid || k.ID != 3 {
		t.Errorf("k2: %+v", k)
	}
	for _, bad := range []string{"", "# none\n", "k1\n", "k1 not-a-uuid\n", "k1 " + pid + " a b\n", "k1 " + pid + "\nk1 " + pid + "\n"} {
		if _, err := danube.ParseKeys(strings.NewReader(bad)); err == nil {
			t.Errorf("ParseKeys took %q", bad)
		}
	}
}
