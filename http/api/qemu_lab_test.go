package api_test

import (
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"labd/events"
)

// The acceptance lab of QEMU nodes: the tiny guest (a Debian kernel and a
// busybox initramfs, actors/qemu/qemutest) in real QEMU processes, linked
// through labd's bridges, driven over HTTP and telnet only.

// TestQEMUGuestAndVPCSOnOneLink links a QEMU guest and a VPCS: they ping
// each other both ways through labd's bridges, a capture on the link shows
// the ICMP traffic, suspend stops the pings and resume brings them back,
// and a stop with on_close shutdown_signal powers the guest off cleanly
// (ACPI, the kernel's "Power down") well before the timeout.
func TestQEMUGuestAndVPCSOnOneLink(t *testing.T) {
	t.Parallel()
	o := ownPorts(10)
	o.qemuShutdownTimeout = 60 * time.Second
	d := startDaemon(t, o)
	d.uploadGuest(t)
	p := d.createProject("qemu-lab")
	q := d.createGuest(t, p, "Guest", "10.44.0.2/24", `,"on_close":"shutdown_signal"`)
	pc := d.createVPCS(p, "PC1")
	qa, va := d.udpPort(p), d.udpPort(p)
	d.do("POST", qemuPath(p, q)+"/adapters/0/ports/0/nio", nioBody(qa, va, "")).
		expect(t, 201, "/v2/compute/projects/{project_id}/qemu/nodes/{node_id}/adapters/{adapter_number:\\d+}/ports/{port_number:\\d+}/nio")
	d.do("POST", nodePath(p, pc)+"/adapters/0/ports/0/nio", nioBody(va, qa, "")).expect(t, 201, "")

	d.startNode(p, pc)
	vc := dialConsole(t, pc.Console)
	vc.setIP("10.44.0.1")
	booted := time.Now()
	gc := d.startGuest(t, p, q, "10.44.0.2")
	t.Logf("guest ready %v after its start", time.Since(booted).Round(time.Millisecond))

	capture := d.do("POST", qemuPath(p, q)+"/adapters/0/ports/0/start_capture", `{"capture_file_name":"qemu.pcap"}`).
		expect(t, 200, "").object(t)["pcap_file_path"].(string)
	if n, rtts := vc.ping("10.44.0.2", 3, 30*time.Second); n < 2 {
		t.Fatalf("VPCS -> guest: %d of 3 replies", n)
	} else {
		t.Logf("VPCS -> guest round trips %v", rtts)
	}
	out := gc.shell("ping -c 3 10.44.0.1", "packets received", 30*time.Second)
	if m := regexp.MustCompile(`(\d+) packets received`).FindStringSubmatch(out); m == nil || atoi(m[1]) < 2 {
		t.Fatalf("guest -> VPCS: %q", out)
	}
	d.do("POST", qemuPath(p, q)+"/adapters/0/ports/0/stop_capture", "").expect(t, 204, "")
	f, err := os.Open(capture)
	if err != nil {
		t.Fatal(err)
	}
	requests, replies := icmpCount(t, f, "10.44.0.1", "10.44.0.2")
	f.Close()
	if requests < 4 || replies < 4 {
		t.Fatalf("capture: %d echo requests and %d replies between the guest and the VPCS, want both ways", requests, replies)
	}

	d.do("POST", qemuPath(p, q)+"/suspend", "").expect(t, 204, "/v2/compute/projects/{project_id}/qemu/nodes/{node_id}/suspend")
	d.waitStatus(t, qemuPath(p, q), "suspended", 5*time.Second)
	if n, _ := vc.ping("10.44.0.2", 2, 30*time.Second); n != 0 {
		t.Fatalf("a suspended guest answered %d pings", n)
	}
	d.do("POST", qemuPath(p, q)+"/resume", "").expect(t, 204, "/v2/compute/projects/{project_id}/qemu/nodes/{node_id}/resume")
	d.waitStatus(t, qemuPath(p, q), "started", 5*time.Second)
	if n, _ := vc.ping("10.44.0.2", 3, 30*time.Second); n < 2 {
		t.Fatalf("after resume: %d of 3 replies", n)
	}

	run := d.lastStarted(t, p, q.ID)
	start := time.Now()
	d.do("POST", qemuPath(p, q)+"/stop", "").expect(t, 204, "")
	took := time.Since(start)
	t.Logf("shutdown_signal stop took %v", took.Round(time.Millisecond))
	if took > 45*time.Second {
		t.Fatalf("the stop took %v: the guest did not power off before the 60 s timeout", took)
	}
	gc.waitFor(0, "Power down", 5*time.Second)
	if st := d.lastStop(t, p, q.ID); st.Reason != events.StopRequested || st.ExitCode == nil || *st.ExitCode != 0 {
		t.Fatalf("stop recorded as %+v, want requested with exit code 0", st)
	}
	if err := syscall.Kill(run.PID, 0); err == nil {
		if st, _ := os.ReadFile("/proc/" + strconv.Itoa(run.PID) + "/stat"); !strings.Contains(string(st), ") Z") {
			t.Fatalf("QEMU (pid %d) still runs after the stop", run.PID)
		}
	}
}

// TestQEMUSaveVMStateResumes stops a guest with on_close save_vm_state and
// starts it again: it resumes from the saved state (a file written in its
// RAM-only root before the stop is still there, and it did not boot again).
func TestQEMUSaveVMStateResumes(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, ownPorts(11))
	d.uploadGuest(t)
	d.do("POST", "/v2/compute/qemu/img", `{"qemu_img":"qemu-img","path":"blank.qcow2","format":"qcow2","size":16}`).expect(t, 201, "")
	p := d.createProject("saved")
	q := d.createGuest(t, p, "Saver", "", `,"hda_disk_image":"blank.qcow2","on_close":"save_vm_state"`)
	gc := d.startGuest(t, p, q, "unconfigured")
	gc.shell("echo saved-$((40+2)) >/mark; echo written", "written\r\n", 10*time.Second)

	d.do("POST", qemuPath(p, q)+"/stop", "").expect(t, 204, "")
	overlay := d.getNodeV2Path(t, qemuPath(p, q))["node_directory"].(string) + "/hda_disk.qcow2"
	info, err := exec.Command("qemu-img", "snapshot", "-l", overlay).CombinedOutput()
	if err != nil || !strings.Contains(string(info), "GNS3_SAVED_STATE") {
		t.Fatalf("the linked clone %s has no saved state: %v\n%s", overlay, err, info)
	}

	o := d.do("POST", qemuPath(p, q)+"/start", "").expect(t, 200, "").object(t)
	if !strings.Contains(o["command_line"].(string), "-loadvm GNS3_SAVED_STATE") {
		t.Fatalf("the start does not restore the saved state: %s", o["command_line"])
	}
	c := dialConsole(t, q.Console)
	m := c.mark()
	out := c.shell("cat /mark", "saved-42", 30*time.Second)
	if strings.Contains(c.output()[m:], "labd-guest ready") {
		t.Fatalf("the guest booted again instead of resuming:\n%s", out)
	}
	d.do("POST", qemuPath(p, q)+"/stop", "").expect(t, 204, "")
}

// TestQEMUStopsByThemselves: a QEMU killed from outside, and a guest that
// powers itself off (QMP SHUTDOWN), both leave the node stopped with a
// log.error notification, and the history says which; a guest that
// reboots itself (QMP RESET) is recorded as such and keeps running.
func TestQEMUStopsByThemselves(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, ownPorts(12))
	d.uploadGuest(t)
	p := d.createProject("alone")
	q := d.createGuest(t, p, "Lonely", "", "")
	ws := dialWS(t, d, "", nil)

	d.startGuest(t, p, q, "unconfigured")
	run := d.lastStarted(t, p, q.ID)
	if err := syscall.Kill(run.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	d.waitStatus(t, qemuPath(p, q), "stopped", 10*time.Second)
	if st := d.lastStop(t, p, q.ID); st.Reason != events.StopExited || !strings.Contains(st.Message, "QEMU") {
		t.Fatalf("a killed QEMU was recorded as %+v", st)
	}
	waitLogError(t, ws, "QEMU process has stopped")

	gc := d.startGuest(t, p, q, "unconfigured")
	// A reboot from inside is QMP's RESET (guest): a node.reset, and the
	// same process boots the guest again.
	m := gc.mark()
	gc.send("reboot -f")
	gc.waitFor(m, "labd-guest ready", guestBoot)
	hist := d.nodeHistory(t, p, q.ID)
	if r, ok := hist[len(hist)-1].Data.(events.NodeReset); !ok || r.Cause != events.CauseGuest {
		t.Fatalf("after a guest reboot the node's last event is %s %+v, want node.reset by the guest", hist[len(hist)-1].Type, hist[len(hist)-1].Data)
	}
	if again := d.lastStarted(t, p, q.ID); again.PID == run.PID {
		t.Fatalf("pid %d was the killed one", again.PID)
	}
	gc.send("poweroff -f")
	d.waitStatus(t, qemuPath(p, q), "stopped", 30*time.Second)
	if st := d.lastStop(t, p, q.ID); st.Reason != events.StopGuestShutdown || st.ExitCode == nil || *st.ExitCode != 0 {
		t.Fatalf("a guest power-off was recorded as %+v", st)
	}
	waitLogError(t, ws, "powered itself off")
}

// waitLogError waits for a log.error notification whose message holds want.
func waitLogError(t *testing.T, ws *wsClient, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		m := ws.event(time.Until(deadline))
		if msg, _ := m.Event["message"].(string); m.Action == "log.error" && strings.Contains(msg, want) {
			return
		}
	}
}

// getNodeV2Path returns a node as its GET shows it.
func (d *daemon) getNodeV2Path(t testing.TB, path string) map[string]any {
	t.Helper()
	return doRequest(t, "GET", d.URL+path, "").expect(t, 200, "").object(t)
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// TestNodeRoutesServeTheirKindOnly: as in GNS3, where each node kind has its
// manager, a route of one kind does not reach a node of another.
func TestNodeRoutesServeTheirKindOnly(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, ownPorts(13))
	p := d.createProject("kinds")
	pc := d.createVPCS(p, "PC1")
	q := d.do("POST", "/v2/compute/projects/"+p+"/qemu/nodes", `{"name":"Q1"}`).expect(t, 201, "").object(t)
	qid := q["node_id"].(string)
	for _, path := range []string{
		"/v2/compute/projects/" + p + "/qemu/nodes/" + pc.ID,
		"/v1/projects/" + p + "/qemu/vms/" + pc.ID,
		"/v2/compute/projects/" + p + "/vpcs/nodes/" + qid,
		"/v1/projects/" + p + "/vpcs/vms/" + qid,
	} {
		d.do("GET", path, "").expect(t, 404, "")
		d.do("POST", path+"/start", "").expect(t, 404, "")
	}
	d.do("GET", "/v2/compute/projects/"+p+"/qemu/nodes/"+qid, "").expect(t, 200, "")
	d.do("GET", nodePath(p, pc), "").expect(t, 200, "")
	// A NIO type QEMU cannot use is refused in GNS3's words.
	r := d.do("POST", "/v2/compute/projects/"+p+"/qemu/nodes/"+qid+"/adapters/0/ports/0/nio", `{"type":"nio_tap","tap_device":"tap0"}`).
		expect(t, 409, "").object(t)
	if r["message"] != "NIO of type nio_tap is not supported" {
		t.Fatalf("nio_tap refused with %q", r["message"])
	}
}
