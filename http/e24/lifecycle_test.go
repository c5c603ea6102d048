package e24_test

import (
	"bytes"
	"encoding/json"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"labd/actors/qemu"
	"labd/http/dialecttest"
	"labd/http/e24"
	"labd/replay"
)

// lastRecord is the machine's last operation record.
func lastRecord(t *testing.T, d *daemon, id string) replay.Operation {
	t.Helper()
	n, err := d.Client.Node(d.Project, id)
	if err != nil {
		t.Fatal(err)
	}
	return n.Operations[len(n.Operations)-1]
}

// A machine's life through signed calls, as e24cloud's clients make
// them: each call answers at once, and the state converges by polling.
func TestSignedLifecycle(t *testing.T) {
	d := startDaemon(t)
	c := &client{base: d.serve(t, e24.Config{Keys: map[string]e24.Key{"k1": {Secret: "s1", Project: d.Project}}}),
		key: "k1", secret: "s1"}

	env := c.must(t, "PUT", "/v2/virtual-machines", `{"create_vm": {"cpus": 1, "ram": 64, "name": "halt",
		"boot_type": "image", "os": "halt.img", "password": "pw-secret-1", "key_id": 7,
		"user_data": "#cloud-config secret-2", "zone_id": ""}}`)
	var created struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(env.VirtualMachine, &created); err != nil || created.ID == "" {
		t.Fatalf("create answered %s", env.VirtualMachine)
	}
	id := created.ID
	if vm, ok := c.get(t, id); !ok || (vm.State != "installing" && vm.State != "online") {
		t.Fatalf("just created: %+v, want installing (or online already)", vm)
	}
	vm := c.waitState(t, id, "online")
	if vm.Label != "halt" || vm.Cores != 1 || vm.RAM != 64 || !vm.Adm || vm.CostPerHour != 0 || vm.TransferUsed != 0 {
		t.Fatalf("created machine: %+v", vm)
	}
	imageID := uuid.NewSHA1(uuid.NameSpaceURL, []byte("labd-image:halt.img")).String()
	if vm.System != (named{ID: imageID, Name: "halt.img"}) || vm.Owner != (named{ID: d.Project, Name: "e24 lab"}) ||
		vm.Zone.Name != "e24-test" || vm.Zone.ID == "" {
		t.Fatalf("system %+v owner %+v zone %+v", vm.System, vm.Owner, vm.Zone)
	}
	if len(vm.StorageVolumes) != 1 || vm.StorageVolumes[0].Size != 1 || !vm.StorageVolumes[0].SystemDisk ||
		vm.StorageVolumes[0].ID == "" {
		t.Fatalf("storage volumes %+v, want the 512-byte image as one system disk of 1 GB", vm.StorageVolumes)
	}
	if vm.PublicInterface.Primary != "" || vm.PublicInterface.IPv4 == nil || vm.Networks == nil || vm.Groups == nil {
		t.Fatalf("interfaces: %+v networks %v groups %v, want empty lists", vm.PublicInterface, vm.Networks, vm.Groups)
	}
	// The secrets went nowhere.
	n, err := d.Client.Node(d.Project, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(n.Metadata) != 0 || bytes.Contains(n.Properties, []byte("secret")) {
		t.Fatalf("the node kept the caller's secrets: metadata %v properties %s", n.Metadata, n.Properties)
	}
	if list := c.must(t, "GET", "/v2/virtual-machines", "").VirtualMachines; len(list) != 1 || list[0].ID != id || list[0].State != "online" {
		t.Fatalf("list: %+v", list)
	}

	// A shutdown of a guest that ignores ACPI: online for wait_for (0.05
	// minutes, 3 s), then forced off.
	asked := time.Now()
	c.must(t, "POST", "/v2/virtual-machines/"+id+"/shutdown", `{"wait_for": 0.05}`)
	if vm, _ := c.get(t, id); vm.State != "online" {
		t.Fatalf("shutting down: %s, want online while the guest is asked", vm.State)
	}
	c.waitState(t, id, "offline")
	if took := time.Since(asked); took < 3*time.Second || took > 15*time.Second {
		t.Fatalf("the shutdown took %v, want the 3 s of wait_for and then at once", took)
	}
	if rec := lastRecord(t, d, id); rec.Op != "stop" || rec.State != "SUCCESS" || !strings.Contains(rec.Message, "forced") {
		t.Fatalf("the shutdown's record: %+v", rec)
	}

	// Resize an offline machine: applied, nothing left to confirm.
	c.must(t, "POST", "/v2/virtual-machines/"+id+"/resize", `{"cores": 2, "ram": 128, "wait_for": 0.05}`)
	vm = c.waitFor(t, id, "resized", func(vm vmDoc) bool { return vm.Cores == 2 && vm.RAM == 128 })
	if vm.State != "offline" {
		t.Fatalf("resized: %s, want it offline still", vm.State)
	}
	if n, _ := d.Client.Node(d.Project, id); n.Resize != nil || n.Task != "" {
		t.Fatalf("after the resize: resize %+v task %q, want nothing pending", n.Resize, n.Task)
	}

	c.must(t, "POST", "/v2/virtual-machines/"+id+"/poweron", "")
	c.waitState(t, id, "online")
	if n, _ := d.Client.Node(d.Project, id); !strings.Contains(n.CommandLine, "-m 128M") || !strings.Contains(n.CommandLine, "cpus=2,") {
		t.Fatalf("the QEMU of the resized machine: %s", n.CommandLine)
	}

	// The console: VNC credentials that open a session, and only with
	// their password.
	con := c.must(t, "POST", "/v2/virtual-machines/"+id+"/console", "").Console
	if con == nil || con.Host != "127.0.0.1" || con.Port == 0 || con.Password == "" {
		t.Fatalf("console %+v", con)
	}
	addr := net.JoinHostPort(con.Host, strconv.Itoa(con.Port))
	if !dialecttest.VNCLogin(t, addr, con.Password) {
		t.Fatal("the VNC console refused its password")
	}
	if dialecttest.VNCLogin(t, addr, "wrong") {
		t.Fatal("the VNC console took a wrong password")
	}

	c.must(t, "POST", "/v2/virtual-machines/"+id+"/rename", `{"name": "renamed"}`)
	if vm, _ := c.get(t, id); vm.Label != "renamed" {
		t.Fatalf("label %q after the rename", vm.Label)
	}

	// reboot asks the guest, which ignores it: a reset after the
	// dialect's shutdown timeout, online all along.
	asked = time.Now()
	c.must(t, "POST", "/v2/virtual-machines/"+id+"/reboot", "")
	for {
		vm, _ := c.get(t, id)
		if vm.State != "online" {
			t.Fatalf("rebooting: %s, want online", vm.State)
		}
		if rec := lastRecord(t, d, id); !rec.InFlight() {
			if rec.Op != "reboot" || rec.State != "SUCCESS" || !strings.Contains(rec.Message, "hard reboot") {
				t.Fatalf("the reboot's record: %+v", rec)
			}
			break
		}
		if time.Since(asked) > 20*time.Second {
			t.Fatal("the reboot never ended")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if took := time.Since(asked); took < shutdownTimeout {
		t.Fatalf("the reboot took %v, want the %v timeout first", took, shutdownTimeout)
	}
	c.must(t, "POST", "/v2/virtual-machines/"+id+"/reset", "")
	c.waitFor(t, id, "reset", func(vmDoc) bool { return !lastRecord(t, d, id).InFlight() })
	if rec := lastRecord(t, d, id); rec.Op != "reboot" || !rec.Force || rec.State != "SUCCESS" {
		t.Fatalf("the reset's record: %+v", rec)
	}

	// poweroff: forced at once.
	asked = time.Now()
	c.must(t, "POST", "/v2/virtual-machines/"+id+"/poweroff", "")
	c.waitState(t, id, "offline")
	if took := time.Since(asked); took > shutdownTimeout {
		t.Fatalf("the poweroff took %v, want it at once", took)
	}

	c.must(t, "DELETE", "/v2/virtual-machines/"+id, `{"deleteResources": 1}`)
	if _, ok := c.get(t, id); ok {
		t.Fatal("the deleted machine is still served")
	}
	nodes, err := d.Client.Nodes(d.Project)
	if err != nil {
		t.Fatal(err)
	}
	if slices.ContainsFunc(nodes, func(n *replay.Node) bool { return n.ID == id }) {
		t.Fatal("the deleted machine's node is still there")
	}
}

// A running machine's resize: gracefully off for wait_for, resized, and
// on again.
func TestResizeRunning(t *testing.T) {
	d := startDaemon(t)
	c := &client{base: d.serve(t, e24.Config{Keys: map[string]e24.Key{"k1": {Secret: "s1", Project: d.Project}}}),
		key: "k1", secret: "s1"}
	id := c.create(t, "halt")
	c.waitState(t, id, "online")
	c.must(t, "POST", "/v2/virtual-machines/"+id+"/resize", `{"ram": 96, "wait_for": 0.02}`)
	if vm, _ := c.get(t, id); vm.State != "online" {
		t.Fatalf("resizing: %s, want online while the guest is asked", vm.State)
	}
	vm := c.waitFor(t, id, "resized and online", func(vm vmDoc) bool {
		return vm.RAM == 96 && vm.State == "online" && !lastRecord(t, d, id).InFlight()
	})
	if vm.Cores != 1 {
		t.Fatalf("cores %d, want 1 kept", vm.Cores)
	}
	if rec := lastRecord(t, d, id); rec.Op != "resize" || rec.State != "SUCCESS" {
		t.Fatalf("the resize's record: %+v", rec)
	}
	if n, _ := d.Client.Node(d.Project, id); n.Resize != nil {
		t.Fatalf("a resize waits to be confirmed: %+v", n.Resize)
	}
}

// boot_type cdrom: the store image is the CD, booted first.
func TestCreateCDROM(t *testing.T) {
	d := startDaemon(t)
	c := &client{base: d.serve(t, e24.Config{Keys: map[string]e24.Key{"k1": {Secret: "s1", Project: d.Project}}}),
		key: "k1", secret: "s1"}
	env := c.must(t, "PUT", "/v2/virtual-machines",
		`{"create_vm": {"cpus": 1, "ram": 64, "name": "iso", "boot_type": "cdrom", "cdrom": "halt.img", "compute_zone_id": "e24-test"}}`)
	var created struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(env.VirtualMachine, &created); err != nil {
		t.Fatal(err)
	}
	n, err := d.Client.Node(d.Project, created.ID)
	if err != nil {
		t.Fatal(err)
	}
	cfg := qemu.Decode(n.Properties)
	if cfg.CDROM != "halt.img" || cfg.BootPriority != "d" || cfg.HDA.Image != "" {
		t.Fatalf("cdrom %q boot %q hda %q", cfg.CDROM, cfg.BootPriority, cfg.HDA.Image)
	}
	vm := c.waitState(t, created.ID, "online")
	if vm.System.Name != "halt.img" || len(vm.StorageVolumes) != 0 {
		t.Fatalf("system %+v volumes %+v", vm.System, vm.StorageVolumes)
	}
	c.must(t, "DELETE", "/v2/virtual-machines/"+created.ID, "")
}
