package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"labd/actors/actorstest"
	"labd/actors/qemu/qemutest"
)

// The crash test of issue 5: a lab of two VPCS and a QEMU guest pinging
// each other through labd's links survives a kill -9 of labd. The next labd
// adopts the very same processes, the pings resume within 5 s without any
// node restarting, and every GET answers as before the crash. The same
// holds across a graceful stop with --keep-nodes (a daemon upgrade).
func TestCrashAdoptsALabAndItsTraffic(t *testing.T) {
	for _, tc := range []struct {
		name  string
		flags []string
		stop  func(*daemonProc)
	}{
		{"kill -9", nil, func(d *daemonProc) { d.cmd.Process.Kill() }},
		{"SIGTERM --keep-nodes", []string{"--keep-nodes"}, func(d *daemonProc) { d.cmd.Process.Signal(syscall.SIGTERM) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			// Last: the nodes a --keep-nodes labd leaves behind.
			t.Cleanup(func() { killProcessesUnder(dir) })
			d := startLabd(t, dir, tc.flags...)
			lab := buildPingingLab(t, d)

			before := lab.snapshot(t, d.URL)
			pids := lab.processes(t)
			for _, pid := range pids {
				if os.Geteuid() == 0 && actorstest.UID(t, pid) == 0 {
					t.Fatalf("node process %d runs as root", pid)
				}
			}
			lastSeq := lab.guest.lastSeqs()
			t.Logf("before: pids %v, last ping replies %v", pids, lastSeq)

			stopped := time.Now()
			tc.stop(d)
			d.wait(30 * time.Second)

			d2 := startLabd(t, dir, tc.flags...)
			restarted := time.Now()
			t.Logf("labd serves again %v after it was stopped", restarted.Sub(stopped).Round(time.Millisecond))
			if after := lab.snapshot(t, d2.URL); !slices.EqualFunc(after, before, equalJSON) {
				t.Fatalf("GETs after the restart differ:\n%v\nbefore:\n%v", after, before)
			}
			if got := lab.processes(t); !slices.Equal(got, pids) {
				t.Fatalf("node processes %v after the restart, %v before: not adopted", got, pids)
			}
			guest := dialGuestConsole(t, lab.guestConsole)
			for _, peer := range []string{"10.1.0.1", "10.2.0.1"} {
				guest.waitReply(t, peer, lastSeq[peer], restarted.Add(5*time.Second))
			}
			t.Logf("pings resumed %v after labd served again", time.Since(restarted).Round(time.Millisecond))
			if got := lab.processes(t); !slices.Equal(got, pids) {
				t.Fatalf("node processes %v after the pings resumed, want %v", got, pids)
			}
		})
	}
}

// pingingLab is a guest with two NICs, each linked to a VPCS; the guest
// pings both.
type pingingLab struct {
	project      string
	nodes        []string // URLs of the VPCS, VPCS, QEMU nodes
	dirs         []string
	guestConsole int
	guest        *guestConsole
}

func buildPingingLab(t *testing.T, d *daemonProc) *pingingLab {
	t.Helper()
	kernel, initrd := qemutest.Guest(t)
	for name, path := range map[string]string{"vmlinuz": kernel, "initrd.img": initrd} {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		mustCall(t, "POST", d.URL+"/v2/compute/qemu/images/"+name, string(b), 204)
	}
	lab := &pingingLab{}
	var p map[string]any
	json.Unmarshal(mustCall(t, "POST", d.URL+"/v2/compute/projects", `{"name":"crash"}`, 201), &p)
	lab.project = p["project_id"].(string)
	base := d.URL + "/v2/compute/projects/" + lab.project
	create := func(kind, body string) (string, map[string]any) {
		var n map[string]any
		json.Unmarshal(mustCall(t, "POST", base+"/"+kind+"/nodes", body, 201), &n)
		url := base + "/" + kind + "/nodes/" + n["node_id"].(string)
		lab.nodes = append(lab.nodes, url)
		lab.dirs = append(lab.dirs, n["node_directory"].(string))
		return url, n
	}
	pc1, _ := create("vpcs", `{"name":"PC1","startup_script":"ip 10.1.0.1/24"}`)
	pc2, _ := create("vpcs", `{"name":"PC2","startup_script":"ip 10.2.0.1/24"}`)
	q, qn := create("qemu", `{"name":"Guest","ram":128,"adapters":2,"kernel_image":"vmlinuz","initrd":"initrd.img",
		"kernel_command_line":"console=ttyS0 quiet labd.ip=10.1.0.2/24"}`)
	lab.guestConsole = int(qn["console"].(float64))
	udp := func() int {
		var o map[string]any
		json.Unmarshal(mustCall(t, "POST", base+"/ports/udp", "", 201), &o)
		return int(o["udp_port"].(float64))
	}
	link := func(a, b string, adapter int) {
		pa, pb := udp(), udp()
		nio := func(l, r int) string {
			return fmt.Sprintf(`{"type":"nio_udp","lport":%d,"rhost":"127.0.0.1","rport":%d}`, l, r)
		}
		mustCall(t, "POST", a+"/adapters/0/ports/0/nio", nio(pa, pb), 201)
		mustCall(t, "POST", b+"/adapters/"+strconv.Itoa(adapter)+"/ports/0/nio", nio(pb, pa), 201)
	}
	link(pc1, q, 0)
	link(pc2, q, 1)
	for _, n := range lab.nodes {
		mustCall(t, "POST", n+"/start", "", 200)
	}
	lab.guest = dialGuestConsole(t, lab.guestConsole)
	lab.guest.waitFor(t, "labd-guest ready 10.1.0.2", time.Now().Add(2*time.Minute))
	lab.guest.send(t, "ip link set eth1 up; ip addr add 10.2.0.2/24 dev eth1; ping 10.1.0.1 & ping 10.2.0.1 &")
	for _, peer := range []string{"10.1.0.1", "10.2.0.1"} {
		lab.guest.waitReply(t, peer, -1, time.Now().Add(30*time.Second))
	}
	// A few more, so that the crash comes in the middle of a flow.
	time.Sleep(2 * time.Second)
	return lab
}

// snapshot returns the GET of every node of the lab.
func (l *pingingLab) snapshot(t *testing.T, daemonURL string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, n := range l.nodes {
		var o map[string]any
		getJSON(t, daemonURL+n[strings.Index(n, "/v2/"):], &o)
		out = append(out, o)
	}
	return out
}

// processes returns the pids of the processes working in the nodes'
// directories (VPCS forks a helper; QEMU is one process).
func (l *pingingLab) processes(t *testing.T) []int {
	t.Helper()
	var pids []int
	for _, dir := range l.dirs {
		pids = append(pids, processesIn(dir, false)...)
	}
	slices.Sort(pids)
	if len(pids) < 3 {
		t.Fatalf("only %d processes in the lab's node directories", len(pids))
	}
	return pids
}

func mustCall(t *testing.T, method, url, body string, want int) []byte {
	t.Helper()
	status, b, err := call(method, url, body)
	if err != nil || status != want {
		t.Fatalf("%s %s: %d %s %v; want %d", method, url, status, b, err, want)
	}
	return b
}

// guestConsole is a telnet client of the guest's console (labd's proxy).
type guestConsole struct {
	conn net.Conn
	mu   sync.Mutex
	buf  bytes.Buffer
}

func dialGuestConsole(t *testing.T, port int) *guestConsole {
	t.Helper()
	conn, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 10*time.Second)
	if err != nil {
		t.Fatalf("guest console: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &guestConsole{conn: conn}
	go func() {
		b := make([]byte, 4096)
		for {
			n, err := conn.Read(b)
			c.mu.Lock()
			c.buf.Write(b[:n])
			c.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return c
}

func (c *guestConsole) output() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

func (c *guestConsole) send(t *testing.T, line string) {
	t.Helper()
	if _, err := c.conn.Write([]byte(line + "\n")); err != nil {
		t.Fatal(err)
	}
}

func (c *guestConsole) waitFor(t *testing.T, want string, deadline time.Time) {
	t.Helper()
	for !strings.Contains(c.output(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q on the guest console; got:\n%s", want, c.output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var pingReply = regexp.MustCompile(`bytes from (10\.[12]\.0\.1): seq=(\d+)`)

// lastSeqs returns the sequence number of the last reply seen from each
// peer.
func (c *guestConsole) lastSeqs() map[string]int {
	last := map[string]int{}
	for _, m := range pingReply.FindAllStringSubmatch(c.output(), -1) {
		n, _ := strconv.Atoi(m[2])
		last[m[1]] = max(last[m[1]], n)
	}
	return last
}

// waitReply waits for a reply from peer with a sequence number above after.
func (c *guestConsole) waitReply(t *testing.T, peer string, after int, deadline time.Time) {
	t.Helper()
	for {
		if seq, ok := c.lastSeqs()[peer]; ok && seq > after {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no ping reply from %s after seq %d by the deadline; console:\n%s", peer, after, c.output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
