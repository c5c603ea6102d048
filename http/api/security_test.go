package api_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"labd/actors/actorstest"
	"labd/actors/qemu"
)

// The security acceptance of labd (SECURITY.md): what a client sends
// never becomes a program, a file outside its place or a privilege.

// qemuAttacks are options strings that would make QEMU run a program,
// touch a host file or socket, or leave labd's control, each with the
// option the 400 must name.
var qemuAttacks = map[string]string{
	`-incoming "exec:touch F"`:                             "-incoming",
	`-net nic -net tap,script=S`:                           "-net",
	`-chardev file,id=c,path=G -serial chardev:c`:          "-chardev",
	`-serial file:/tmp/labd-attack`:                        "-serial",
	`-serial pipe:/tmp/labd-attack`:                        "-serial",
	`-serial unix:/tmp/labd-attack,server=on,wait=off`:     "-serial",
	`-serial tcp:127.0.0.1:4444,server=on,wait=off`:        "-serial",
	`-serial exec:id`:                                      "-serial",
	`-pidfile /tmp/labd-attack`:                            "-pidfile",
	`-D /tmp/labd-attack`:                                  "-D",
	`-trace events=/etc/shadow`:                            "-trace",
	`-object memory-backend-file,id=m,size=8M,mem-path=/x`: "-object",
	`-add-fd fd=3,set=1`:                                   "-add-fd",
	`-mon chardev=c`:                                       "-mon",
	`-monitor unix:/tmp/labd-attack,server=on,wait=off`:    "-monitor",
	`-qmp tcp:0.0.0.0:4444,server=on,wait=off`:             "-qmp",
	`-fw_cfg name=opt/x,file=/etc/shadow`:                  "-fw_cfg",
	`-plugin /tmp/evil.so`:                                 "-plugin",
	`-sandbox off`:                                         "-sandbox",
	`-readconfig /tmp/qemu.cfg`:                            "-readconfig",
	`-daemonize`:                                           "-daemonize",
	`-runas root`:                                          "-runas",
	`-chroot /`:                                            "-chroot",
	`-L /tmp`:                                              "-L",
	`-bios /etc/shadow`:                                    "-bios",
	`-kernel /boot/vmlinuz`:                                "-kernel",
	`-drive file=/etc/shadow`:                              "-drive",
	`-hda /etc/shadow`:                                     "-hda",
	`-device loader,file=/etc/shadow`:                      "-device",
	`-device e1000,romfile=/etc/shadow`:                    "-device",
	`-smp 1 /etc/shadow`:                                   "/etc/shadow",
}

// TestQEMUAttacksChangeNothing: each attack is a 400 naming the option, at
// a create and at an update, on both API versions, with nothing recorded.
func TestQEMUAttacksChangeNothing(t *testing.T) {
	t.Parallel()
	needQEMUBinaries(t)
	d := startDaemon(t, ownPorts(30))
	p := d.createProject("attacks")
	v2c, v1c := "/v2/compute/projects/"+p+"/qemu/nodes", "/v1/projects/"+p+"/qemu/vms"
	victim := d.do("POST", v2c, `{"name": "victim"}`).expect(t, 201, "").object(t)["node_id"].(string)
	for options, names := range qemuAttacks {
		body := fmt.Sprintf(`{"name": "evil", "options": %s}`, quote(options))
		for _, req := range []struct{ method, path string }{
			{"POST", v2c}, {"POST", v1c}, {"PUT", v2c + "/" + victim}, {"PUT", v1c + "/" + victim},
		} {
			before := snapshotState(t, d, p)
			r := doRequest(t, req.method, d.URL+req.path, body)
			checkErrorReply(t, r, 400)
			if msg := r.object(t)["message"].(string); !strings.Contains(msg, names) {
				t.Errorf("%s %s with %s: message %q does not name %s", req.method, req.path, options, msg, names)
			}
			before.diff(t, snapshotState(t, d, p))
		}
	}
}

// TestRegistryOptionsCreateNodes: every options string of GNS3's official
// appliances creates a node (201), but the one holding -drive (400, as in
// GNS3).
func TestRegistryOptionsCreateNodes(t *testing.T) {
	t.Parallel()
	needQEMUBinaries(t)
	d := startDaemon(t, ownPorts(31))
	p := d.createProject("registry")
	f, err := os.Open(filepath.Join("..", "..", "testdata", "qemu-options-registry.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	created := 0
	for sc.Scan() {
		options := sc.Text()
		if options == "" || strings.HasPrefix(options, "#") {
			continue
		}
		r := d.do("POST", "/v2/compute/projects/"+p+"/qemu/nodes", fmt.Sprintf(`{"name": "n%d", "options": %s}`, created, quote(options)))
		if strings.Contains(options, "-drive") {
			checkErrorReply(t, r, 400)
			continue
		}
		r.expect(t, 201, "")
		if got := r.object(t)["options"]; got != options {
			t.Errorf("options read back %q, want %q", got, options)
		}
		created++
	}
	if created != 36 {
		t.Fatalf("%d registry strings created a node, want 36", created)
	}
}

// TestNodesRunSandboxedAndUnprivileged: a started QEMU's command line ends
// with the sandbox, and while labd is root, VPCS and QEMU run as the node
// user.
func TestNodesRunSandboxedAndUnprivileged(t *testing.T) {
	t.Parallel()
	needQEMUBinaries(t)
	if os.Geteuid() != 0 {
		t.Fatal("this test checks the node user, which needs the tests to run as root (as make test does here)")
	}
	d := startDaemon(t, ownPorts(32))
	p := d.createProject("unprivileged")
	q := d.do("POST", "/v2/compute/projects/"+p+"/qemu/nodes", `{"name": "q", "ram": 32, "options": "-nodefaults -smp 1"}`).
		expect(t, 201, "").object(t)["node_id"].(string)
	o := d.do("POST", "/v2/compute/projects/"+p+"/qemu/nodes/"+q+"/start", "").expect(t, 200, "").object(t)
	if line := o["command_line"].(string); !strings.HasSuffix(line, "-nodefaults -smp 1 -sandbox "+qemu.Sandbox) {
		t.Errorf("QEMU's command line does not end with the options and the sandbox:\n%s", line)
	}
	pc := d.createVPCS(p, "PC1")
	d.startNode(p, pc)
	for _, id := range []string{q, pc.ID} {
		pid := d.lastStarted(t, p, id).PID
		if uid := actorstest.UID(t, pid); uid == 0 {
			t.Errorf("node %s runs as root (pid %d)", id, pid)
		}
		st, err := os.Stat(filepath.Join(d.DataDir, "projects", p, "project-files", map[bool]string{true: "qemu", false: "vpcs"}[id == q], id))
		if err != nil {
			t.Fatal(err)
		}
		if uid := st.Sys().(*syscall.Stat_t).Uid; uid != uint32(actorstest.UID(t, pid)) {
			t.Errorf("node %s's directory belongs to uid %d, its process runs as %d", id, uid, actorstest.UID(t, pid))
		}
	}
}

// TestAllowedIncomingStillCannotSpawn: with -incoming allowed by the
// operator, exec: would run a shell command, and QEMU's sandbox stops it.
// The control run shows the same QEMU, without the sandbox, does run it.
func TestAllowedIncomingStillCannotSpawn(t *testing.T) {
	t.Parallel()
	needQEMUBinaries(t)
	policy, err := qemu.NewOptionPolicy("incoming")
	if err != nil {
		t.Fatal(err)
	}
	o := ownPorts(33)
	o.qemuOptions = policy
	d := startDaemon(t, o)
	target := t.TempDir()
	actorstest.Reachable(t, target)
	if err := os.Chmod(target, 0o777); err != nil {
		t.Fatal(err)
	}
	witness := filepath.Join(target, "F")
	p := d.createProject("incoming")
	body := fmt.Sprintf(`{"name": "q", "ram": 32, "options": %s}`, quote(`-incoming "exec:touch `+witness+`"`))
	q := d.do("POST", "/v2/compute/projects/"+p+"/qemu/nodes", body).expect(t, 201, "").object(t)["node_id"].(string)
	r := d.do("POST", "/v2/compute/projects/"+p+"/qemu/nodes/"+q+"/start", "")
	t.Logf("start: %d %.300s", r.Status, r.Body)
	// QEMU dies of SIGSYS when it forks for exec:; whether before or
	// after labd sees its QMP socket, the node ends up stopped.
	eventually(t, 30*time.Second, func() error {
		if _, err := os.Stat(witness); err == nil {
			t.Fatal("the sandboxed QEMU ran the -incoming exec: command")
		}
		o := d.do("GET", "/v2/compute/projects/"+p+"/qemu/nodes/"+q, "").expect(t, 200, "").object(t)
		if o["status"] != "stopped" {
			return fmt.Errorf("the node is %v, want stopped", o["status"])
		}
		return nil
	})

	// The control: the same QEMU and option, without the sandbox, does
	// run touch.
	bin, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-machine", "accel=tcg", "-m", "32", "-display", "none", "-nodefaults", "-net", "none",
		"-incoming", "exec:touch "+witness)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	eventually(t, 15*time.Second, func() error {
		if _, err := os.Stat(witness); err != nil {
			return fmt.Errorf("the unsandboxed QEMU did not run touch either: %v", err)
		}
		return nil
	})
}

// TestBodies: a client that writes a whole oversized body before reading
// reads the 413; invalid UTF-8 and control characters in names are 400.
func TestBodies(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, daemonOptions{})
	p := d.createProject("bodies")
	pc := d.createVPCS(p, "PC1")

	// Like Python's http.client: the whole body, then the reply.
	conn, err := net.Dial("tcp", strings.TrimPrefix(d.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := `{"name": "` + strings.Repeat("x", 8<<20) + `"}`
	if _, err := fmt.Fprintf(conn, "POST /v2/compute/projects HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		strings.TrimPrefix(d.URL, "http://"), len(body), body); err != nil {
		t.Fatalf("writing the 8 MiB body: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the reply after the 8 MiB body: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	checkErrorReply(t, &response{Status: resp.StatusCode, Header: resp.Header, Body: b}, 413)

	before := snapshotState(t, d, p)
	for _, c := range []badCase{
		{"project name with \\xff", "POST", "/v2/compute/projects", "{\"name\": \"a\xffb\"}", 400, nil},
		{"v1 project name with \\xff", "POST", "/v1/projects", "{\"name\": \"a\xffb\"}", 400, nil},
		{"\\xff in another member", "PUT", "/v2/compute/projects/" + p, "{\"variables\": [{\"name\": \"v\", \"value\": \"\xff\"}]}", 400, nil},
		{"lone surrogate escape", "POST", "/v2/compute/projects", `{"name": "a\ud800b"}`, 400, nil},
		{"low surrogate escape", "POST", "/v2/compute/projects", `{"name": "\udc00"}`, 400, nil},
		{"project name with NUL", "POST", "/v2/compute/projects", `{"name": "a\u0000b"}`, 400, nil},
		{"project rename with a newline", "PUT", "/v1/projects/" + p, `{"name": "a\nb"}`, 400, nil},
		{"node name with \\xff", "POST", "/v2/compute/projects/" + p + "/vpcs/nodes", "{\"name\": \"PC\xff\"}", 400, nil},
		{"node name with an escape", "POST", "/v2/compute/projects/" + p + "/vpcs/nodes", `{"name": "PC\u001b[2J"}`, 400, nil},
		{"node rename with a newline", "PUT", nodePath(p, pc), `{"name": "PC\nip 1.2.3.4"}`, 400, nil},
		{"node name with a C1 control", "POST", "/v2/compute/projects/" + p + "/qemu/nodes", `{"name": "Q\u0085"}`, 400, nil},
	} {
		r := doRequest(t, c.method, d.URL+c.path, c.body)
		checkErrorReply(t, r, c.status)
	}
	before.diff(t, snapshotState(t, d, p))
	// A surrogate pair is a character, and is kept.
	o := d.do("POST", "/v2/compute/projects", `{"name": "lab \ud83d\ude80"}`).expect(t, 201, "").object(t)
	if o["name"] != "lab 🚀" {
		t.Fatalf("name read back %q", o["name"])
	}
}

// TestAuthentication: with a user and password, every route wants them:
// none and wrong ones are 401 with GNS3's challenge, the right ones
// pass, on v1 and v2 routes, a console WebSocket and notification streams.
func TestAuthentication(t *testing.T) {
	t.Parallel()
	o := ownPorts(34)
	o.authUser, o.authPassword = "gns3", "s3cret"
	d := startDaemon(t, o)
	right := func(r *http.Request) { r.SetBasicAuth("gns3", "s3cret") }
	wrong := func(r *http.Request) { r.SetBasicAuth("gns3", "guess") }
	none := func(*http.Request) {}
	call := func(method, path, body string, auth func(*http.Request)) *response {
		t.Helper()
		req, err := http.NewRequest(method, d.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		auth(req)
		return send(t, req)
	}
	p := call("POST", "/v2/compute/projects", `{"name": "auth"}`, right).expect(t, 201, "").object(t)["project_id"].(string)
	n := call("POST", "/v2/compute/projects/"+p+"/vpcs/nodes", `{"name": "PC1"}`, right).expect(t, 201, "").object(t)
	pc := vpcsNode{ID: n["node_id"].(string), Console: int(n["console"].(float64))}
	call("POST", nodePath(p, pc)+"/start", "", right).expect(t, 200, "")

	for _, route := range []string{"/v1/version", "/v2/compute/version", "/v2/compute/projects/" + p, "/v1/projects/" + p} {
		for name, auth := range map[string]func(*http.Request){"none": none, "wrong": wrong} {
			r := call("GET", route, "", auth)
			checkErrorReply(t, r, 401)
			if got := r.Header.Get("WWW-Authenticate"); got != `Basic realm="GNS3 server"` {
				t.Errorf("GET %s, %s credentials: WWW-Authenticate %q", route, name, got)
			}
		}
		call("GET", route, "", right).expect(t, 200, "")
	}
	// A refused write changes nothing.
	before := d.lastSeq()
	checkErrorReply(t, call("POST", "/v2/compute/projects", `{"name": "sneaky"}`, wrong), 401)
	if d.lastSeq() != before {
		t.Fatal("a refused create was recorded")
	}

	// WebSockets: the console and the notifications.
	wsBase := "ws" + strings.TrimPrefix(d.URL, "http")
	for _, path := range []string{nodePath(p, pc) + "/console/ws", "/v2/compute/notifications/ws"} {
		for name, header := range map[string]http.Header{
			"none":  nil,
			"wrong": {"Authorization": {"Basic Z25zMzpndWVzcw=="}},
		} {
			_, resp, err := websocket.Dial(t.Context(), wsBase+path, &websocket.DialOptions{HTTPHeader: header})
			if err == nil || resp == nil || resp.StatusCode != 401 {
				t.Errorf("%s with %s credentials: %v %v", path, name, err, resp)
			}
		}
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		c, _, err := websocket.Dial(ctx, wsBase+path, &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Basic Z25zMzpzM2NyZXQ="}}})
		if err != nil {
			cancel()
			t.Fatalf("%s with the right credentials: %v", path, err)
		}
		if _, msg, err := c.Read(ctx); err != nil || len(msg) == 0 {
			t.Errorf("%s: nothing read: %v", path, err)
		}
		c.CloseNow()
		cancel()
	}
	// The v1 notification stream.
	for name, auth := range map[string]func(*http.Request){"none": none, "wrong": wrong} {
		if r := call("GET", "/v1/projects/"+p+"/notifications", "", auth); r.Status != 401 {
			t.Errorf("v1 notifications, %s credentials: %d", name, r.Status)
		}
	}
	req, _ := http.NewRequestWithContext(t.Context(), "GET", d.URL+"/v1/projects/"+p+"/notifications", nil)
	right(req)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(line, `"ping"`) {
		t.Fatalf("v1 notifications with the right credentials: %d %q %v", resp.StatusCode, line, err)
	}
}

// TestBrowserDefences: a page of another site, or of a rebound name,
// cannot use the API; clients without an Origin, and the API's own
// origin, can.
func TestBrowserDefences(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, daemonOptions{})
	p := d.createProject("browser")
	addr := strings.TrimPrefix(d.URL, "http://")
	post := func(header map[string]string) *response {
		t.Helper()
		req, _ := http.NewRequest("POST", d.URL+"/v2/compute/projects", strings.NewReader(`{"name": "from a page"}`))
		// text/plain: a "simple" request a page may send without asking.
		req.Header.Set("Content-Type", "text/plain")
		for k, v := range header {
			if k == "Host" {
				req.Host = v
			} else {
				req.Header.Set(k, v)
			}
		}
		return send(t, req)
	}
	before := snapshotState(t, d, p)
	for name, h := range map[string]map[string]string{
		"another site":         {"Origin": "http://evil.example"},
		"another loopback app": {"Origin": "http://127.0.0.1:1"},
		"a rebound name":       {"Host": "evil.example:" + strings.Split(addr, ":")[1]},
		"a rebound page":       {"Host": "evil.example", "Origin": "http://evil.example"},
	} {
		r := post(h)
		checkErrorReply(t, r, 403)
		if r.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("%s: CORS header on a refusal", name)
		}
	}
	before.diff(t, snapshotState(t, d, p))
	post(nil).expect(t, 201, "")
	r := post(map[string]string{"Origin": "http://" + addr}).expect(t, 201, "")
	if r.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Error("CORS header for the API's own origin")
	}
	// A WebSocket from another site is refused too.
	_, resp, err := websocket.Dial(t.Context(), "ws://"+addr+"/v2/compute/notifications/ws",
		&websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"http://evil.example"}}})
	if err == nil || resp == nil || resp.StatusCode != 403 {
		t.Fatalf("a WebSocket from another site: %v %v", err, resp)
	}
}
