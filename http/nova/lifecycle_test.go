package nova_test

import (
	"context"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/instanceactions"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/remoteconsoles"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"

	"labd/http/dialecttest"
	"labd/replay"
)

// want is what gophercloud decodes of a server at a step.
type want struct {
	status, vmState, taskState string
	power                      servers.PowerState
}

func check(t *testing.T, sc *gophercloud.ServiceClient, id, step string, w want) *servers.Server {
	t.Helper()
	s, err := servers.Get(t.Context(), sc, id).Extract()
	if err != nil {
		t.Fatalf("%s: get: %v", step, err)
	}
	if s.Status != w.status || s.VmState != w.vmState || s.TaskState != w.taskState || s.PowerState != w.power {
		t.Fatalf("%s: status %s, vm_state %s, task_state %q, power_state %v; want %s, %s, %q, %v",
			step, s.Status, s.VmState, s.TaskState, s.PowerState, w.status, w.vmState, w.taskState, w.power)
	}
	return s
}

// waitTask waits until the server is in a transitional state and returns
// when it was seen.
func waitTask(t *testing.T, sc *gophercloud.ServiceClient, id, status, task string) time.Time {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s, err := servers.Get(t.Context(), sc, id).Extract()
		if err != nil {
			t.Fatal(err)
		}
		if s.Status == status && s.TaskState == task {
			return time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server never was %s/%s: it is %s/%q", status, task, s.Status, s.TaskState)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitStatus(t *testing.T, sc *gophercloud.ServiceClient, id, status string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	if err := servers.WaitForStatus(ctx, sc, id, status); err != nil {
		s, _ := servers.Get(t.Context(), sc, id).Extract()
		t.Fatalf("waiting for %s: %v (the server: %+v)", status, err, s)
	}
}

// lastRecord is the server's last operation record.
func lastRecord(t *testing.T, d *daemon, id string) replay.Operation {
	t.Helper()
	n, err := d.Client.Node(d.Project, id)
	if err != nil {
		t.Fatal(err)
	}
	return n.Operations[len(n.Operations)-1]
}

var (
	active    = want{"ACTIVE", "active", "", servers.RUNNING}
	shutoff   = want{"SHUTOFF", "stopped", "", servers.SHUTDOWN}
	paused    = want{"PAUSED", "paused", "", servers.PAUSED}
	suspended = want{"SUSPENDED", "suspended", "", servers.SHUTDOWN}
	resized   = want{"VERIFY_RESIZE", "resized", "", servers.RUNNING}
)

// The gophercloud walk through a server's life: every step is
// Nova's call as gophercloud v2 makes it, and asserts the status,
// vm_state, task_state and power_state gophercloud decodes.
func TestGophercloudLifecycle(t *testing.T) {
	d := startDaemon(t, options{open: true})
	sc := d.compute(d.Project, "any-token")
	ctx := t.Context()

	created, err := servers.Create(ctx, sc, servers.CreateOpts{Name: "halt", ImageRef: "halt.img", FlavorRef: "42",
		Networks: "none", Metadata: map[string]string{"lab": "nova"}}, nil).Extract()
	if err != nil {
		t.Fatal(err)
	}
	id := created.ID
	waitStatus(t, sc, id, "ACTIVE")
	s := check(t, sc, id, "created", active)
	if s.Flavor["id"] != "42" || s.Image["id"] == nil || s.Metadata["lab"] != "nova" || s.Created.IsZero() {
		t.Fatalf("created server: flavor %v image %v metadata %v created %v", s.Flavor, s.Image, s.Metadata, s.Created)
	}

	// A graceful stop of a guest that ignores the power button: ACTIVE
	// and powering-off for the timeout, then forced.
	asked := time.Now()
	if err := servers.Stop(ctx, sc, id).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	waitTask(t, sc, id, "ACTIVE", "powering-off")
	waitStatus(t, sc, id, "SHUTOFF")
	if took := time.Since(asked); took < shutdownTimeout || took > shutdownTimeout+15*time.Second {
		t.Fatalf("the stop took %v, want the %v timeout and then at once", took, shutdownTimeout)
	}
	check(t, sc, id, "stopped", shutoff)
	if rec := lastRecord(t, d, id); rec.Op != "stop" || rec.State != "SUCCESS" || !strings.Contains(rec.Message, "forced") {
		t.Fatalf("the stop's record: %+v", rec)
	}

	if err := servers.Start(ctx, sc, id).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, sc, id, "ACTIVE")
	check(t, sc, id, "started", active)

	// SOFT: REBOOT while the guest is asked, then a hard reboot.
	if err := servers.Reboot(ctx, sc, id, servers.RebootOpts{Type: servers.SoftReboot}).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	waitTask(t, sc, id, "REBOOT", "rebooting")
	waitStatus(t, sc, id, "ACTIVE")
	check(t, sc, id, "soft rebooted", active)
	if rec := lastRecord(t, d, id); rec.Op != "reboot" || rec.State != "SUCCESS" || !strings.Contains(rec.Message, "hard reboot") {
		t.Fatalf("the soft reboot's record: %+v", rec)
	}
	if err := servers.Reboot(ctx, sc, id, servers.RebootOpts{Type: servers.HardReboot}).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, sc, id, "ACTIVE")
	check(t, sc, id, "hard rebooted", active)

	if err := servers.Pause(ctx, sc, id).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, sc, id, "PAUSED")
	check(t, sc, id, "paused", paused)
	if err := servers.Unpause(ctx, sc, id).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, sc, id, "ACTIVE")
	check(t, sc, id, "unpaused", active)

	// Suspend to disk: no process runs, and resume restores it.
	if err := servers.Suspend(ctx, sc, id).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, sc, id, "SUSPENDED")
	check(t, sc, id, "suspended", suspended)
	if n, _ := d.Client.Node(d.Project, id); n.Running() {
		t.Fatal("a server suspended to disk still has a process")
	}
	if err := servers.Resume(ctx, sc, id).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, sc, id, "ACTIVE")
	check(t, sc, id, "resumed", active)
	if n, _ := d.Client.Node(d.Project, id); !strings.Contains(n.CommandLine, "-loadvm") {
		t.Fatalf("the resumed QEMU did not load its saved state: %s", n.CommandLine)
	}

	// Resize then confirm: RESIZE, VERIFY_RESIZE with the new flavor,
	// then ACTIVE keeping it.
	if err := servers.Resize(ctx, sc, id, servers.ResizeOpts{FlavorRef: "84"}).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	waitTask(t, sc, id, "RESIZE", "resize_prep")
	waitStatus(t, sc, id, "VERIFY_RESIZE")
	if s := check(t, sc, id, "resized", resized); s.Flavor["id"] != "84" {
		t.Fatalf("resized to flavor %v, want 84", s.Flavor)
	}
	if err := servers.ConfirmResize(ctx, sc, id).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	if s := check(t, sc, id, "resize confirmed", active); s.Flavor["id"] != "84" {
		t.Fatalf("flavor %v after the confirm, want 84", s.Flavor)
	}
	// Resize then revert: the flavor before comes back.
	if err := servers.Resize(ctx, sc, id, servers.ResizeOpts{FlavorRef: "42"}).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, sc, id, "VERIFY_RESIZE")
	if err := servers.RevertResize(ctx, sc, id).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	waitTask(t, sc, id, "REVERT_RESIZE", "resize_reverting")
	waitStatus(t, sc, id, "ACTIVE")
	if s := check(t, sc, id, "resize reverted", active); s.Flavor["id"] != "84" {
		t.Fatalf("flavor %v after the revert, want 84 back", s.Flavor)
	}

	// The remote console: a real VNC server that takes the URL's
	// password, and only that one.
	rc, err := remoteconsoles.Create(ctx, sc, id, remoteconsoles.CreateOpts{Protocol: remoteconsoles.ConsoleProtocolVNC,
		Type: remoteconsoles.ConsoleTypeNoVNC}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(rc.URL)
	if err != nil || u.Scheme != "vnc" || u.Query().Get("VncPassword") == "" {
		t.Fatalf("console URL %q", rc.URL)
	}
	if !dialecttest.VNCLogin(t, u.Host, u.Query().Get("VncPassword")) {
		t.Fatal("the VNC console refused the password of its URL")
	}
	if dialecttest.VNCLogin(t, u.Host, "wrong") {
		t.Fatal("the VNC console took a wrong password")
	}

	// Instance actions: every request, newest first, by request id.
	pages, err := instanceactions.List(sc, id, nil).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	acts, err := instanceactions.ExtractInstanceActions(pages)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, a := range acts {
		names = append(names, a.Action)
	}
	for _, a := range []string{"start", "stop", "reboot", "pause", "unpause", "suspend", "resume", "resize", "confirmResize", "revertResize"} {
		if !slices.Contains(names, a) {
			t.Errorf("instance actions %v lack %s", names, a)
		}
	}
	if names[0] != "revertResize" {
		t.Errorf("instance actions %v are not newest first", names)
	}
	one, err := instanceactions.Get(ctx, sc, id, acts[0].RequestID).Extract()
	if err != nil || one.Action != "revertResize" || one.Events == nil || len(*one.Events) != 1 || (*one.Events)[0].Result != "Success" {
		t.Fatalf("instance action %s: %+v %v", acts[0].RequestID, one, err)
	}

	renamed, err := servers.Update(ctx, sc, id, servers.UpdateOpts{Name: "halted"}).Extract()
	if err != nil || renamed.Name != "halted" {
		t.Fatalf("rename: %+v %v", renamed, err)
	}
	if err := servers.Delete(ctx, sc, id).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	if _, err := servers.Get(ctx, sc, id).Extract(); !gophercloud.ResponseCodeIs(err, 404) {
		t.Fatalf("get after the delete: %v, want 404", err)
	}
	if _, err := d.Client.Node(d.Project, id); err == nil {
		t.Fatal("the node outlived its server's delete")
	}
}
