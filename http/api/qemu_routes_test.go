package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"labd/events"
	"labd/nio"
)

// The QEMU node routes of both API versions, on real qemu-system
// processes that boot no guest: every property reads back as it was set,
// bad input is refused and changes nothing, and start, stop, reload and
// duplicate answer as GNS3 does.

// qemuV2Members are the members of a QEMU node on /v2: the seed's start
// reply, plus the 2.2 properties a client sets (linked_clone, tpm...).
var qemuV2Members = []string{
	"adapter_type", "adapters", "bios_image", "bios_image_md5sum", "boot_priority",
	"cdrom_image", "cdrom_image_md5sum", "command_line", "console", "console_type",
	"cpu_throttling", "cpus", "create_config_disk", "custom_adapters",
	"hda_disk_image", "hda_disk_image_md5sum", "hda_disk_interface",
	"hdb_disk_image", "hdb_disk_image_md5sum", "hdb_disk_interface",
	"hdc_disk_image", "hdc_disk_image_md5sum", "hdc_disk_interface",
	"hdd_disk_image", "hdd_disk_image_md5sum", "hdd_disk_interface",
	"initrd", "initrd_md5sum", "kernel_command_line", "kernel_image", "kernel_image_md5sum",
	"legacy_networking", "linked_clone", "mac_address", "name", "node_directory", "node_id",
	"on_close", "options", "platform", "process_priority", "project_id", "qemu_path", "ram",
	"replicate_network_connection_state", "status", "tpm", "uefi", "usage",
}

// qemuV1Members are the members of a QEMU VM on /v1: those of the seed's
// create, get and update replies, plus status (which every VM of GNS3 1.5
// shows, as labd's v1 notifications do).
var qemuV1Members = []string{
	"acpi_shutdown", "adapter_type", "adapters", "boot_priority",
	"cdrom_image", "cdrom_image_md5sum", "console", "console_type", "cpu_throttling", "cpus",
	"hda_disk_image", "hda_disk_image_md5sum", "hda_disk_interface",
	"hdb_disk_image", "hdb_disk_image_md5sum", "hdb_disk_interface",
	"hdc_disk_image", "hdc_disk_image_md5sum", "hdc_disk_interface",
	"hdd_disk_image", "hdd_disk_image_md5sum", "hdd_disk_interface",
	"initrd", "initrd_md5sum", "kernel_command_line", "kernel_image", "kernel_image_md5sum",
	"legacy_networking", "mac_address", "name", "options", "platform", "process_priority",
	"project_id", "qemu_path", "ram", "status", "vm_directory", "vm_id",
}

// qemuSeedStartMembers are the members of the seed's v2 start reply
// (seeds/000_a22183306678c463.txt).
var qemuSeedStartMembers = []string{
	"adapter_type", "adapters", "bios_image", "bios_image_md5sum", "boot_priority",
	"cdrom_image", "cdrom_image_md5sum", "command_line", "console", "console_type",
	"cpu_throttling", "cpus",
	"hda_disk_image", "hda_disk_image_md5sum", "hda_disk_interface",
	"hdb_disk_image", "hdb_disk_image_md5sum", "hdb_disk_interface",
	"hdc_disk_image", "hdc_disk_image_md5sum", "hdc_disk_interface",
	"hdd_disk_image", "hdd_disk_image_md5sum", "hdd_disk_interface",
	"initrd", "initrd_md5sum", "kernel_command_line", "kernel_image", "kernel_image_md5sum",
	"legacy_networking", "mac_address", "name", "node_directory", "node_id", "on_close",
	"options", "platform", "process_priority", "project_id", "qemu_path", "ram", "status", "usage",
}

// vncConsoles is a console range for test i of this file inside 5900-10000,
// where VNC consoles take their ports (QEMU serves display port-5900):
// ownPorts' console ranges lie above it, and a VNC node could get none.
func vncConsoles(i int) nio.PortRange {
	return nio.PortRange{First: 9800 + 50*i, Last: 9849 + 50*i}
}

// qemuBinary returns the absolute path a bare QEMU binary name resolves
// to in PATH, as labd's Finder resolves it; the test fails without it.
func qemuBinary(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not installed (make deps installs it)", name)
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// putImages uploads one small image per name through the API, each with
// bytes of its own, and returns their MD5 sums by name.
func putImages(t *testing.T, d *daemon, names ...string) map[string]string {
	t.Helper()
	sums := map[string]string{}
	for _, name := range names {
		data := "labd test image " + name + "\n" + strings.Repeat(name, 64)
		d.do("POST", "/v2/compute/qemu/images/"+name, data).expect(t, 204, "")
		sums[name] = md5hex(data)
	}
	return sums
}

// jsonBody encodes a request body.
func jsonBody(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// asJSON returns v as it reads once encoded and decoded, the form reply
// members are compared in.
func asJSON(t testing.TB, v any) any {
	t.Helper()
	var out any
	if err := json.Unmarshal([]byte(jsonBody(t, v)), &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// withImages sets in want the image properties (by member name) and their
// checksums: the MD5 of the image's bytes, null for no image.
func withImages(want map[string]any, images, sums map[string]string) {
	for prop, name := range images {
		want[prop] = name
		want[prop+"_md5sum"] = nil
		if name != "" {
			want[prop+"_md5sum"] = sums[name]
		}
	}
}

// checkNodeJSON checks that o has exactly the members, each with want's
// value.
func checkNodeJSON(t testing.TB, what string, o map[string]any, members []string, want map[string]any) {
	t.Helper()
	keys(t, o, members...)
	if len(want) != len(members) {
		t.Fatalf("test bug: %d expected values for %d members", len(want), len(members))
	}
	var diffs []string
	for _, k := range members {
		w, ok := want[k]
		if !ok {
			t.Fatalf("test bug: no expected value for %q", k)
		}
		if got, w := o[k], asJSON(t, w); !reflect.DeepEqual(got, w) {
			diffs = append(diffs, fmt.Sprintf("%s = %#v, want %#v", k, got, w))
		}
	}
	if len(diffs) > 0 {
		t.Fatalf("%s:\n%s", what, strings.Join(diffs, "\n"))
	}
}

// qemuNodeDir is where labd keeps a QEMU node's files.
func qemuNodeDir(d *daemon, project, node string) string {
	return filepath.Join(d.DataDir, "projects", project, "project-files", "qemu", node)
}

// TestQEMUPropertiesRoundTripV2 creates a QEMU node on /v2 with every
// settable property off its default, then changes every one of them: the
// create and update replies and the GETs show each value as set (the binary
// resolved to its absolute path, the platform derived from it, the images'
// MD5 sums computed), in exactly the members of the v2 shape.
func TestQEMUPropertiesRoundTripV2(t *testing.T) {
	t.Parallel()
	needQEMUBinaries(t)
	x86, i386 := qemuBinary(t, "qemu-system-x86_64"), qemuBinary(t, "qemu-system-i386")
	o := ownPorts(20)
	o.consolePorts = vncConsoles(0)
	d := startDaemon(t, o)
	sums := putImages(t, d, "hda.qcow2", "disks/hdb.img", "hdc.img", "hdd.img", "bios.bin", "initrd.img", "vmlinuz",
		"hda2.qcow2", "hdb2.img", "hdd2.img", "cd.iso", "bios2.bin", "initrd2.img", "vmlinuz2")
	p := d.createProject("qemu v2 properties")
	const id = "5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d"
	collection := "/v2/compute/projects/" + p + "/qemu/nodes"
	node := collection + "/" + id
	const nodeRoute = "/v2/compute/projects/{project_id}/qemu/nodes/{node_id}"

	// Create: a platform and no qemu_path, so the platform names the
	// binary; an hdc image, so no CD-ROM (they are one drive).
	create := map[string]any{
		"node_id": id, "name": "R1", "console": 9811, "console_type": "vnc",
		"usage": "login admin / admin", "linked_clone": false, "platform": "i386",
		"hda_disk_interface": "sata", "hdb_disk_interface": "scsi", "hdc_disk_interface": "virtio", "hdd_disk_interface": "nvme",
		"kernel_command_line": "console=ttyS0 root=/dev/sda", "boot_priority": "dc",
		"ram": 512, "cpus": 2, "adapters": 4, "adapter_type": "virtio-net-pci", "mac_address": "0c:12:34:56:78:00",
		"legacy_networking": true, "replicate_network_connection_state": false,
		"tpm": true, "uefi": true, "create_config_disk": true,
		"on_close": "save_vm_state", "cpu_throttling": 50, "process_priority": "high",
		"options": "-nodefaults -vga std",
		"custom_adapters": []map[string]any{
			{"adapter_number": 1, "port_name": "eth1", "adapter_type": "e1000", "mac_address": "0c:00:00:00:01:01"},
			{"adapter_number": 3, "adapter_type": "rtl8139"},
		},
	}
	createImages := map[string]string{
		"hda_disk_image": "hda.qcow2", "hdb_disk_image": "disks/hdb.img", "hdc_disk_image": "hdc.img", "hdd_disk_image": "hdd.img",
		"bios_image": "bios.bin", "initrd": "initrd.img", "kernel_image": "vmlinuz",
	}
	for prop, name := range createImages {
		create[prop] = name
	}
	want := maps.Clone(create)
	withImages(want, createImages, sums)
	withImages(want, map[string]string{"cdrom_image": ""}, sums)
	maps.Copy(want, map[string]any{
		"qemu_path": i386, "project_id": p, "status": "stopped", "command_line": "",
		"node_directory": qemuNodeDir(d, p, id),
	})
	r := d.do("POST", collection, jsonBody(t, create)).expect(t, 201, "/v2/compute/projects/{project_id}/qemu/nodes")
	checkNodeJSON(t, "create reply", r.object(t), qemuV2Members, want)
	checkNodeJSON(t, "GET after the create", d.do("GET", node, "").expect(t, 200, nodeRoute).object(t), qemuV2Members, want)
	if st, err := os.Stat(qemuNodeDir(d, p, id)); err != nil || !st.IsDir() {
		t.Fatalf("the node directory: %v", err)
	}

	// Update every property: an absolute qemu_path (the platform follows
	// it), the hdc image cleared for a CD-ROM, every other image replaced.
	update := map[string]any{
		"name": "R1 renamed", "console": 9822, "console_type": "spice",
		"usage": "", "linked_clone": true, "qemu_path": x86,
		"hda_disk_interface": "ide", "hdb_disk_interface": "sd", "hdc_disk_interface": "mtd", "hdd_disk_interface": "pflash",
		"kernel_command_line": "quiet", "boot_priority": "nd",
		"ram": 768, "cpus": 4, "adapters": 8, "adapter_type": "rtl8139",
		"legacy_networking": false, "replicate_network_connection_state": true,
		"tpm": false, "uefi": false, "create_config_disk": false,
		"on_close": "shutdown_signal", "cpu_throttling": 200, "process_priority": "very low",
		"options": "-vga none -machine accel=tcg", "mac_address": "0c:ab:cd:ef:00:00",
		"custom_adapters": []map[string]any{{"adapter_number": 7, "adapter_type": "e1000e"}},
	}
	updateImages := map[string]string{
		"hda_disk_image": "hda2.qcow2", "hdb_disk_image": "hdb2.img", "hdc_disk_image": "", "hdd_disk_image": "hdd2.img",
		"cdrom_image": "cd.iso", "bios_image": "bios2.bin", "initrd": "initrd2.img", "kernel_image": "vmlinuz2",
	}
	for prop, name := range updateImages {
		update[prop] = name
	}
	maps.Copy(want, update)
	withImages(want, updateImages, sums)
	want["platform"] = "x86_64"
	r = d.do("PUT", node, jsonBody(t, update)).expect(t, 200, nodeRoute)
	checkNodeJSON(t, "update reply", r.object(t), qemuV2Members, want)
	got := d.do("GET", node, "").expect(t, 200, nodeRoute)
	checkNodeJSON(t, "GET after the update", got.object(t), qemuV2Members, want)

	// A CD-ROM and an hdc image are one drive: refused, nothing changed.
	seq := d.lastSeq()
	checkErrorReply(t, d.do("PUT", node, `{"hdc_disk_image": "hdc.img"}`), 400)
	if again := d.do("GET", node, "").expect(t, 200, ""); !bytes.Equal(again.Body, got.Body) || d.lastSeq() != seq {
		t.Fatalf("a refused hdc image beside the CD-ROM changed the node:\n%s\nwas\n%s", again.Body, got.Body)
	}

	// Clearing: platform "null" is no platform (the binary, and so the
	// platform, stay); an empty mac_address is GNS3's default one, derived
	// from the node id; an empty list and an empty name clear the custom
	// adapters and the CD-ROM.
	r = d.do("PUT", node, `{"platform": "null", "custom_adapters": [], "mac_address": "", "cdrom_image": ""}`).expect(t, 200, nodeRoute)
	o2 := r.object(t)
	if o2["platform"] != "x86_64" || o2["qemu_path"] != x86 || o2["cdrom_image"] != "" || o2["cdrom_image_md5sum"] != nil ||
		!reflect.DeepEqual(o2["custom_adapters"], []any{}) || o2["mac_address"] != "0c:4b:3c:2d:00:00" {
		t.Fatalf("after clearing: platform %v, qemu_path %v, cdrom %v (%v), custom_adapters %v, mac_address %v",
			o2["platform"], o2["qemu_path"], o2["cdrom_image"], o2["cdrom_image_md5sum"], o2["custom_adapters"], o2["mac_address"])
	}
}

// TestQEMUPropertiesRoundTripV1 does the same on /v1's qemu/vms: vm_id
// and vm_directory name the VM, acpi_shutdown is on_close shutdown_signal
// (and false power_off), and the members are the seed's.
func TestQEMUPropertiesRoundTripV1(t *testing.T) {
	t.Parallel()
	needQEMUBinaries(t)
	x86, i386 := qemuBinary(t, "qemu-system-x86_64"), qemuBinary(t, "qemu-system-i386")
	o := ownPorts(21)
	o.consolePorts = vncConsoles(1)
	d := startDaemon(t, o)
	sums := putImages(t, d, "v1-hda.qcow2", "v1-hdb.img", "v1-hdd.img", "v1-cd.iso", "v1-initrd.img", "v1-vmlinuz",
		"v1-hda2.qcow2", "v1-hdb2.img", "v1-hdc2.img", "v1-hdd2.img", "v1-initrd2.img", "v1-vmlinuz2")
	p := d.createProject("qemu v1 properties")
	const id = "0a1b2c3d-4e5f-4061-8273-94a5b6c7d8e9"
	collection := "/v1/projects/" + p + "/qemu/vms"
	vm := collection + "/" + id
	v2 := "/v2/compute/projects/" + p + "/qemu/nodes/" + id
	const vmRoute = "/v1/projects/{project_id}/qemu/vms/{vm_id}"

	create := map[string]any{
		"vm_id": id, "name": "VM1", "console": 9861, "console_type": "vnc",
		"qemu_path": "qemu-system-x86_64", "acpi_shutdown": true,
		"hda_disk_interface": "virtio", "hdb_disk_interface": "sata", "hdc_disk_interface": "scsi", "hdd_disk_interface": "ide",
		"kernel_command_line": "console=ttyS0", "boot_priority": "cn",
		"ram": 1024, "cpus": 3, "adapters": 6, "adapter_type": "i82559er", "mac_address": "0c:11:22:33:44:00",
		"legacy_networking": true, "cpu_throttling": 10, "process_priority": "realtime", "options": "-nographic",
	}
	createImages := map[string]string{
		"hda_disk_image": "v1-hda.qcow2", "hdb_disk_image": "v1-hdb.img", "hdc_disk_image": "", "hdd_disk_image": "v1-hdd.img",
		"cdrom_image": "v1-cd.iso", "initrd": "v1-initrd.img", "kernel_image": "v1-vmlinuz",
	}
	for prop, name := range createImages {
		if name != "" {
			create[prop] = name
		}
	}
	want := maps.Clone(create)
	withImages(want, createImages, sums)
	maps.Copy(want, map[string]any{
		"qemu_path": x86, "platform": "x86_64", "project_id": p, "status": "stopped",
		"vm_directory": qemuNodeDir(d, p, id),
	})
	r := d.do("POST", collection, jsonBody(t, create)).expect(t, 201, "/v1/projects/{project_id}/qemu/vms")
	checkNodeJSON(t, "create reply", r.object(t), qemuV1Members, want)
	checkNodeJSON(t, "GET after the create", d.do("GET", vm, "").expect(t, 200, vmRoute).object(t), qemuV1Members, want)
	if got := d.do("GET", v2, "").expect(t, 200, "").object(t)["on_close"]; got != "shutdown_signal" {
		t.Fatalf("acpi_shutdown true: on_close %v, want shutdown_signal", got)
	}

	// Update: a platform alone (it names its own binary), hdc for the
	// CD-ROM, acpi_shutdown off.
	update := map[string]any{
		"name": "VM1 renamed", "console": 9872, "console_type": "telnet",
		"platform": "i386", "acpi_shutdown": false,
		"hda_disk_interface": "ide", "hdb_disk_interface": "virtio", "hdc_disk_interface": "nvme", "hdd_disk_interface": "scsi",
		"kernel_command_line": "", "boot_priority": "d",
		"ram": 64, "cpus": 1, "adapters": 2, "adapter_type": "e1000", "mac_address": "0c:99:88:77:66:00",
		"legacy_networking": false, "cpu_throttling": 0, "process_priority": "normal", "options": "",
	}
	updateImages := map[string]string{
		"hda_disk_image": "v1-hda2.qcow2", "hdb_disk_image": "v1-hdb2.img", "hdc_disk_image": "v1-hdc2.img", "hdd_disk_image": "v1-hdd2.img",
		"cdrom_image": "", "initrd": "v1-initrd2.img", "kernel_image": "v1-vmlinuz2",
	}
	for prop, name := range updateImages {
		update[prop] = name
	}
	maps.Copy(want, update)
	withImages(want, updateImages, sums)
	want["qemu_path"] = i386
	r = d.do("PUT", vm, jsonBody(t, update)).expect(t, 200, vmRoute)
	checkNodeJSON(t, "update reply", r.object(t), qemuV1Members, want)
	checkNodeJSON(t, "GET after the update", d.do("GET", vm, "").expect(t, 200, vmRoute).object(t), qemuV1Members, want)
	if got := d.do("GET", v2, "").expect(t, 200, "").object(t)["on_close"]; got != "power_off" {
		t.Fatalf("acpi_shutdown false: on_close %v, want power_off", got)
	}
}

// fakeQEMU is a copy of /bin/true named qemu-system-x86_64, outside
// QEMU's search directories.
func fakeQEMU(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "qemu-system-x86_64")
	if err := os.WriteFile(path, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// platformWithoutBinary returns a platform of GNS3's list whose QEMU
// binary is not installed.
func platformWithoutBinary(t *testing.T) string {
	t.Helper()
	for _, arch := range []string{"tricore", "xtensaeb", "moxie", "cris", "unicore32", "arm"} {
		if _, err := exec.LookPath("qemu-system-" + arch); err != nil {
			return arch
		}
	}
	t.Fatal("every candidate platform has its QEMU binary installed: the test needs one that has none")
	return ""
}

// qemuBadCase is one request the QEMU routes must refuse.
type qemuBadCase struct {
	name, method, path, body string
	status                   int
	// image, when set, is the missing image a 409 must name in GNS3's
	// ImageMissingError shape.
	image string
}

// qemuBadMember is a member a QEMU create and update both refuse.
type qemuBadMember struct {
	name, member string
	status       int
}

// qemuBadMembers are the members a create and an update both refuse: fake
// is an executable named like QEMU outside the search directories,
// noBinary a platform with no QEMU binary installed.
func qemuBadMembers(fake, noBinary string) []qemuBadMember {
	return []qemuBadMember{
		// Enums.
		{"boot_priority x", `"boot_priority": "x"`, 400},
		{"on_close reboot", `"on_close": "reboot"`, 400},
		{"console_type rdp", `"console_type": "rdp"`, 400},
		{"console_type null", `"console_type": null`, 400},
		{"process_priority urgent", `"process_priority": "urgent"`, 400},
		{"platform z80", `"platform": "z80"`, 400},
		{"platform " + noBinary + " (no binary)", `"platform": ` + quote(noBinary), 400},
		{"hda_disk_interface usb", `"hda_disk_interface": "usb"`, 400},
		{"hdd_disk_interface empty", `"hdd_disk_interface": ""`, 400},
		{"adapter_type empty", `"adapter_type": ""`, 400},
		// Ranges.
		{"cpus 0", `"cpus": 0`, 400},
		{"cpus 256", `"cpus": 256`, 400},
		{"adapters 276", `"adapters": 276`, 400},
		{"adapters -1", `"adapters": -1`, 400},
		{"cpu_throttling 801", `"cpu_throttling": 801`, 400},
		{"cpu_throttling -1", `"cpu_throttling": -1`, 400},
		{"ram 0", `"ram": 0`, 400},
		{"ram -5", `"ram": -5`, 400},
		{"console 70000", `"console": 70000`, 400},
		{"console 0", `"console": 0`, 400},
		// Types.
		{"ram string", `"ram": "big"`, 400},
		{"ram huge", `"ram": 1e30`, 400},
		{"adapters float", `"adapters": 1.5`, 400},
		{"linked_clone string", `"linked_clone": "yes"`, 400},
		{"options number", `"options": 5`, 400},
		{"custom_adapters object", `"custom_adapters": {}`, 400},
		{"custom_adapters number string", `"custom_adapters": [{"adapter_number": "1"}]`, 400},
		{"custom_adapters unknown member", `"custom_adapters": [{"adapter_number": 0, "bogus": 1}]`, 400},
		{"name number", `"name": 7`, 400},
		{"unknown member", `"bogus": 1`, 400},
		// MAC addresses and custom adapters.
		{"mac five bytes", `"mac_address": "00:11:22:33:44"`, 400},
		{"mac not hex", `"mac_address": "0c:ab:cd:ef:01:zz"`, 400},
		{"mac dashes", `"mac_address": "0c-ab-cd-ef-01-00"`, 400},
		{"custom adapter bad mac", `"custom_adapters": [{"adapter_number": 0, "mac_address": "nope"}]`, 400},
		// Forbidden and unparsable options.
		{"options -drive", `"options": "-drive file=x"`, 400},
		{"options --netdev", `"options": "--netdev user,id=n0"`, 400},
		{"options -hda", `"options": "-vga std -hda x.img"`, 400},
		{"options -virtfs", `"options": "-virtfs local,path=/,mount_tag=host"`, 400},
		{"options -nic", `"options": "-nic none"`, 400},
		{"options -blockdev", `"options": "-blockdev driver=file,filename=/etc/passwd"`, 400},
		{"options -fsdev", `"options": "-fsdev local,id=f,path=/"`, 400},
		{"options -hdd=", `"options": "-hdd=x.img"`, 400},
		{"options quoted -drive", `"options": "'-drive' x"`, 400},
		{"options unterminated quote", `"options": "-name \"unterminated"`, 400},
		{"options trailing backslash", `"options": "-name x\\"`, 400},
		// Executables that are not QEMU binaries of the search directories.
		{"qemu_path /bin/sh", `"qemu_path": "/bin/sh"`, 400},
		{"qemu_path sh", `"qemu_path": "sh"`, 400},
		{"qemu_path ../../bin/sh", `"qemu_path": "../../bin/sh"`, 400},
		{"qemu_path fake qemu", `"qemu_path": ` + quote(fake), 400},
		{"qemu_path relative", `"qemu_path": "bin/qemu-system-x86_64"`, 400},
		{"qemu_path missing dir", `"qemu_path": "/nonexistent/qemu-system-x86_64"`, 400},
		{"qemu_path not installed", `"qemu_path": "qemu-system-z80"`, 400},
		{"qemu_path qemu-img", `"qemu_path": "qemu-img"`, 400},
		{"qemu_path microvm", `"qemu_path": "/usr/bin/qemu-system-x86_64-microvm"`, 400},
		{"qemu_path empty", `"qemu_path": ""`, 400},
		// Image names that leave the store, and missing images.
		{"hda ../../../etc/passwd", `"hda_disk_image": "../../../etc/passwd"`, 400},
		{"hda /etc/passwd", `"hda_disk_image": "/etc/passwd"`, 400},
		{"bios /etc/passwd", `"bios_image": "/etc/passwd"`, 400},
		{"kernel hidden", `"kernel_image": ".hidden"`, 400},
		{"initrd backslash", `"initrd": "a\\b"`, 400},
		{"hdd NUL", `"hdd_disk_image": "a\u0000b"`, 400},
		{"hdb missing", `"hdb_disk_image": "nope.qcow2"`, 409},
		{"initrd missing", `"initrd": "missing/initrd.img"`, 409},
		{"kernel missing", `"kernel_image": "vmlinuz-none"`, 409},
	}
}

// TestQEMUBadInputChangesNothing sends bad creates and updates to the
// QEMU routes of both versions: each is refused with a 4xx in GNS3's error
// shape (a missing image as ImageMissingError, naming it), and nothing
// changes: no event, the existing node as it was, no file written.
func TestQEMUBadInputChangesNothing(t *testing.T) {
	t.Parallel()
	needQEMUBinaries(t)
	d := startDaemon(t, ownPorts(22))
	putImages(t, d, "victim-hda.qcow2", "victim-hdc.img", "ok.iso")
	p := d.createProject("qemu bad input")
	v2c, v1c := "/v2/compute/projects/"+p+"/qemu/nodes", "/v1/projects/"+p+"/qemu/vms"
	victim := d.do("POST", v2c, `{"name": "victim", "hda_disk_image": "victim-hda.qcow2", "hdc_disk_image": "victim-hdc.img", "adapters": 2}`).
		expect(t, 201, "").object(t)["node_id"].(string)
	lport, rport := d.udpPort(p), d.udpPort(p)
	d.do("POST", v2c+"/"+victim+"/adapters/1/ports/0/nio", nioBody(lport, rport, "")).expect(t, 201, "")
	pc := d.createVPCS(p, "PC1")
	const unknown = "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"

	var cases []qemuBadCase
	add := func(name, method, path, body string, status int, image string) {
		cases = append(cases, qemuBadCase{name, method, path, body, status, image})
	}
	images := map[string]string{"hdb missing": "nope.qcow2", "initrd missing": "missing/initrd.img", "kernel missing": "vmlinuz-none"}
	for _, api := range []struct{ v, collection, id string }{{"v1", v1c, "vm_id"}, {"v2", v2c, "node_id"}} {
		v, node := api.v, api.collection+"/"+victim
		for _, b := range qemuBadMembers(fakeQEMU(t), platformWithoutBinary(t)) {
			add(v+" create "+b.name, "POST", api.collection, `{"name": "n", `+b.member+`}`, b.status, images[b.name])
			add(v+" update "+b.name, "PUT", node, `{`+b.member+`}`, b.status, images[b.name])
		}
		for _, body := range []string{``, `not json`, `[]`, `{"ram": 512`, `{"ram": 512} {}`, `ram=512`} {
			add(v+" create body "+quote(body), "POST", api.collection, body, 400, "")
			add(v+" update body "+quote(body), "PUT", node, body, 400, "")
		}
		add(v+" create name missing", "POST", api.collection, `{"ram": 512}`, 400, "")
		add(v+" create name empty", "POST", api.collection, `{"name": ""}`, 400, "")
		add(v+" update name empty", "PUT", node, `{"name": ""}`, 400, "")
		add(v+" create "+api.id+" xyz", "POST", api.collection, `{"name": "n", "`+api.id+`": "xyz"}`, 400, "")
		add(v+" create "+api.id+" too long", "POST", api.collection, `{"name": "n", "`+api.id+`": "`+victim+`0"}`, 400, "")
		add(v+" create "+api.id+" number", "POST", api.collection, `{"name": "n", "`+api.id+`": 5}`, 400, "")
		add(v+" create existing "+api.id, "POST", api.collection, `{"name": "n", "`+api.id+`": "`+victim+`"}`, 409, "")
		add(v+" create cdrom beside hdc", "POST", api.collection, `{"name": "n", "cdrom_image": "ok.iso", "hdc_disk_image": "victim-hdc.img"}`, 400, "")
		add(v+" update cdrom beside hdc", "PUT", node, `{"cdrom_image": "ok.iso"}`, 400, "")
		add(v+" update adapters under a link", "PUT", node, `{"adapters": 1}`, 409, "")
		add(v+" update adapters 0 under a link", "PUT", node, `{"adapters": 0}`, 409, "")
		for _, id := range []string{"xyz", victim[:35], victim + "0", "%7B" + victim[1:35] + "%7D"} {
			add(v+" update id "+id, "PUT", api.collection+"/"+id, `{"ram": 512}`, 400, "")
		}
		add(v+" update unknown node", "PUT", api.collection+"/"+unknown, `{"ram": 512}`, 404, "")
		add(v+" update a VPCS node", "PUT", api.collection+"/"+pc.ID, `{"ram": 512}`, 404, "")
		add(v+" create in unknown project", "POST", strings.Replace(api.collection, p, unknown, 1), `{"name": "n"}`, 404, "")
		add(v+" create in project xyz", "POST", strings.Replace(api.collection, p, "xyz", 1), `{"name": "n"}`, 400, "")
	}
	add("v2 create acpi_shutdown", "POST", v2c, `{"name": "n", "acpi_shutdown": true}`, 400, "")
	add("v2 update acpi_shutdown", "PUT", v2c+"/"+victim, `{"acpi_shutdown": false}`, 400, "")
	add("v2 create vm_id", "POST", v2c, `{"name": "n", "vm_id": "`+unknown+`"}`, 400, "")
	add("v1 create node_id", "POST", v1c, `{"name": "n", "node_id": "`+unknown+`"}`, 400, "")
	add("v1 create acpi_shutdown string", "POST", v1c, `{"name": "n", "acpi_shutdown": "yes"}`, 400, "")
	add("v1 update acpi_shutdown string", "PUT", v1c+"/"+victim, `{"acpi_shutdown": "yes"}`, 400, "")
	add("v2 update node_id", "PUT", v2c+"/"+victim, `{"node_id": "`+victim+`"}`, 400, "")
	add("v1 update vm_id", "PUT", v1c+"/"+victim, `{"vm_id": "`+victim+`"}`, 400, "")

	views := func(t *testing.T) string {
		return string(doRequest(t, "GET", d.URL+v2c+"/"+victim, "").expect(t, 200, "").Body) +
			string(doRequest(t, "GET", d.URL+v1c+"/"+victim, "").expect(t, 200, "").Body)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			seq, before, tree := lastSeqOf(t, d), views(t), treeOf(t, d)
			snap, err := d.Client.Node(p, victim)
			if err != nil {
				t.Fatal(err)
			}
			r := doRequest(t, tc.method, d.URL+tc.path, tc.body)
			if r.Status != tc.status {
				t.Fatalf("%s %s %s: status %d, want %d; body %s", tc.method, tc.path, tc.body, r.Status, tc.status, r.Body)
			}
			reply := r.object(t)
			if tc.image != "" {
				keys(t, reply, "exception", "image", "message", "status")
				if reply["image"] != tc.image || reply["exception"] != "ImageMissingError" {
					t.Fatalf("reply %s: want image %q and exception ImageMissingError", r.Body, tc.image)
				}
			} else {
				keys(t, reply, "message", "status")
			}
			if msg, _ := reply["message"].(string); msg == "" || reply["status"] != float64(tc.status) {
				t.Fatalf("reply %s: want a message and status %d", r.Body, tc.status)
			}
			if got := lastSeqOf(t, d); got != seq {
				t.Fatalf("the refused request appended events: last sequence %d, was %d", got, seq)
			}
			if got := views(t); got != before {
				t.Fatalf("the node changed:\n%s\nwas\n%s", got, before)
			}
			after, err := d.Client.Node(p, victim)
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

	// The checks see a change: a good update is one event and shows.
	seq := d.lastSeq()
	o := d.do("PUT", v2c+"/"+victim, `{"ram": 300, "adapters": 3}`).expect(t, 200, "").object(t)
	if o["ram"] != 300.0 || o["adapters"] != 3.0 || d.lastSeq() != seq+1 {
		t.Fatalf("a good update: ram %v, adapters %v, %d events", o["ram"], o["adapters"], d.lastSeq()-seq)
	}
}

// processRuns reports whether pid is a live process (not a zombie).
func processRuns(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses.
	i := bytes.LastIndexByte(b, ')')
	return i > 0 && i+2 < len(b) && b[i+2] != 'Z' && b[i+2] != 'X'
}

// waitProcessGone waits until pid no longer runs.
func waitProcessGone(t testing.TB, pid int) {
	t.Helper()
	eventually(t, 10*time.Second, func() error {
		if processRuns(pid) {
			return fmt.Errorf("process %d still runs", pid)
		}
		return nil
	})
}

// countEvents counts the records of a type.
func countEvents(recs []events.Record, typ events.Type) int {
	n := 0
	for _, r := range recs {
		if r.Type == typ {
			n++
		}
	}
	return n
}

// requestedResets counts the node.reset events a request caused. The
// firmware resets the machine on its own too (SeaBIOS reboots hard after a
// warm reset): those are recorded as the guest's.
func requestedResets(recs []events.Record) int {
	n := 0
	for _, r := range recs {
		if reset, ok := r.Data.(events.NodeReset); ok && reset.Cause == events.CauseRequested {
			n++
		}
	}
	return n
}

// eventTypes lists the types of records, for failure messages.
func eventTypes(recs []events.Record) []events.Type {
	out := make([]events.Type, len(recs))
	for i, r := range recs {
		out[i] = r.Type
	}
	return out
}

// TestQEMUSeedStart replays the seed's v2 start of a QEMU node: a node
// created like the seed's ("PC TEST 1", no disk) starts with 200 and the
// node, which has every member of the seed's reply, started, with GNS3's
// defaults; a stop answers 204 and stops the process; on v1 a start
// answers 204 with no body.
func TestQEMUSeedStart(t *testing.T) {
	t.Parallel()
	needQEMUBinaries(t)
	x86 := qemuBinary(t, "qemu-system-x86_64")
	o := ownPorts(23)
	d := startDaemon(t, o)
	p := d.createProject("qemu seed")
	created := d.do("POST", "/v2/compute/projects/"+p+"/qemu/nodes", `{"name": "PC TEST 1", "qemu_path": "qemu-system-x86_64"}`).
		expect(t, 201, "").object(t)
	id := created["node_id"].(string)
	node := "/v2/compute/projects/" + p + "/qemu/nodes/" + id

	r := d.do("POST", node+"/start", `{}`).expect(t, 200, "/v2/compute/projects/{project_id}/qemu/nodes/{node_id}/start")
	started := r.object(t)
	for _, m := range qemuSeedStartMembers {
		if _, ok := started[m]; !ok {
			t.Errorf("the start reply lacks the seed's member %q", m)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	hex := strings.ReplaceAll(id, "-", "")
	want := map[string]any{
		"adapter_type": "e1000", "adapters": 1, "bios_image": "", "bios_image_md5sum": nil, "boot_priority": "c",
		"cdrom_image": "", "cdrom_image_md5sum": nil, "console_type": "telnet", "cpu_throttling": 0, "cpus": 1,
		"initrd": "", "initrd_md5sum": nil, "kernel_command_line": "", "kernel_image": "", "kernel_image_md5sum": nil,
		"legacy_networking": false, "name": "PC TEST 1", "node_directory": qemuNodeDir(d, p, id), "node_id": id,
		"on_close": "power_off", "options": "", "platform": "x86_64", "process_priority": "low", "project_id": p,
		"qemu_path": x86, "ram": 256, "status": "started", "usage": "",
		// GNS3 2.2's default MAC address of adapter 0 (gns3-compute.md §2.3).
		"mac_address": "0c:" + hex[2:4] + ":" + hex[4:6] + ":" + hex[6:8] + ":00:00",
	}
	for _, drive := range []string{"hda", "hdb", "hdc", "hdd"} {
		want[drive+"_disk_image"], want[drive+"_disk_image_md5sum"] = "", nil
		want[drive+"_disk_interface"] = "none" // GNS3 2.2's compute default
	}
	for k, w := range want {
		if got := started[k]; !reflect.DeepEqual(got, asJSON(t, w)) {
			t.Errorf("start reply: %s = %#v, want %#v", k, got, w)
		}
	}
	cl, _ := started["command_line"].(string)
	if !strings.HasPrefix(cl, x86+" ") || !strings.Contains(cl, "-name PC TEST 1") || !strings.Contains(cl, "-m 256M") {
		t.Errorf("start reply: command_line %q, want the QEMU command that runs", cl)
	}
	if c, ok := started["console"].(float64); !ok || !o.consolePorts.Contains(int(c)) {
		t.Errorf("start reply: console %v, want a port of %v", started["console"], o.consolePorts)
	}
	if t.Failed() {
		t.FailNow()
	}
	if got := d.do("GET", node, "").expect(t, 200, "").Body; !bytes.Equal(got, r.Body) {
		t.Fatalf("GET after the start:\n%s\nthe start replied\n%s", got, r.Body)
	}
	run := d.lastStarted(t, p, id)
	if run.CommandLine != cl || !processRuns(run.PID) {
		t.Fatalf("the recorded start %+v: want the reply's command line and a running QEMU", run)
	}

	stop := d.do("POST", node+"/stop", "").expect(t, 204, "/v2/compute/projects/{project_id}/qemu/nodes/{node_id}/stop")
	if len(stop.Body) != 0 {
		t.Fatalf("stop replied a body %q", stop.Body)
	}
	if s := d.do("GET", node, "").expect(t, 200, "").object(t)["status"]; s != "stopped" {
		t.Fatalf("after the stop the node is %v", s)
	}
	waitProcessGone(t, run.PID)

	// v1: 204 and no body, then the VM runs.
	vm := "/v1/projects/" + p + "/qemu/vms/" + id
	r = d.do("POST", vm+"/start", "").expect(t, 204, "/v1/projects/{project_id}/qemu/vms/{vm_id}/start")
	if len(r.Body) != 0 {
		t.Fatalf("v1 start replied a body %q", r.Body)
	}
	if s := d.do("GET", vm, "").expect(t, 200, "").object(t)["status"]; s != "started" {
		t.Fatalf("after the v1 start the VM is %v", s)
	}
	again := d.lastStarted(t, p, id)
	if again.PID == run.PID || !processRuns(again.PID) {
		t.Fatalf("the v1 start recorded %+v: want a new running QEMU", again)
	}
	d.do("POST", vm+"/stop", "").expect(t, 204, "/v1/projects/{project_id}/qemu/vms/{vm_id}/stop")
	if s := d.do("GET", vm, "").expect(t, 200, "").object(t)["status"]; s != "stopped" {
		t.Fatalf("after the v1 stop the VM is %v", s)
	}
	waitProcessGone(t, again.PID)
}

// TestQEMUReloadResetsOrRestarts: a reload of a running QEMU node whose
// properties are those it started with resets the machine (node.reset,
// the same process); after a change of its properties, a reload restarts
// it (a new process, with the new properties).
func TestQEMUReloadResetsOrRestarts(t *testing.T) {
	t.Parallel()
	needQEMUBinaries(t)
	d := startDaemon(t, ownPorts(24))
	p := d.createProject("qemu reload")
	id := d.do("POST", "/v2/compute/projects/"+p+"/qemu/nodes", `{"name": "reloader", "ram": 128}`).
		expect(t, 201, "").object(t)["node_id"].(string)
	node := "/v2/compute/projects/" + p + "/qemu/nodes/" + id
	const reloadRoute = "/v2/compute/projects/{project_id}/qemu/nodes/{node_id}/reload"
	d.do("POST", node+"/start", "").expect(t, 200, "")
	first := d.lastStarted(t, p, id)

	d.do("POST", node+"/reload", "").expect(t, 204, reloadRoute)
	hist := d.nodeHistory(t, p, id)
	if n := requestedResets(hist); n != 1 {
		t.Fatalf("after the reload the history has %d requested node.reset, want 1: %v", n, eventTypes(hist))
	}
	if n := countEvents(hist, events.TypeNodeStarted); n != 1 || d.lastStarted(t, p, id).PID != first.PID || !processRuns(first.PID) {
		t.Fatalf("the reset restarted QEMU: %d starts, pid %d was %d", n, d.lastStarted(t, p, id).PID, first.PID)
	}
	if s := d.do("GET", node, "").expect(t, 200, "").object(t)["status"]; s != "started" {
		t.Fatalf("after the reset the node is %v", s)
	}

	d.do("PUT", node, `{"ram": 160}`).expect(t, 200, "")
	d.do("POST", node+"/reload", "").expect(t, 204, reloadRoute)
	hist = d.nodeHistory(t, p, id)
	second := d.lastStarted(t, p, id)
	if n := countEvents(hist, events.TypeNodeStarted); n != 2 || second.PID == first.PID {
		t.Fatalf("a reload after a change: %d starts, pid %d (was %d), want a restart", n, second.PID, first.PID)
	}
	if requestedResets(hist) != 1 || countEvents(hist, events.TypeNodeStopped) != 1 {
		t.Fatalf("a reload after a change: %d requested resets and %d stops, want 1 each: %v",
			requestedResets(hist), countEvents(hist, events.TypeNodeStopped), eventTypes(hist))
	}
	if !strings.Contains(second.CommandLine, "-m 160M") {
		t.Fatalf("the restarted QEMU runs %q, not with the new ram", second.CommandLine)
	}
	waitProcessGone(t, first.PID)
	if !processRuns(second.PID) {
		t.Fatalf("the restarted QEMU (pid %d) does not run", second.PID)
	}
	if s := d.do("GET", node, "").expect(t, 200, "").object(t)["status"]; s != "started" {
		t.Fatalf("after the restart the node is %v", s)
	}

	d.do("POST", node+"/stop", "").expect(t, 204, "")
	waitProcessGone(t, second.PID)
}

// TestQEMUDuplicate duplicates a stopped QEMU node whose directory holds
// its linked clone (made by a start) into another QEMU node: 201 with the
// destination, whose directory then holds the same disk.
func TestQEMUDuplicate(t *testing.T) {
	t.Parallel()
	needQEMUBinaries(t)
	d := startDaemon(t, ownPorts(25))
	d.do("POST", "/v2/compute/qemu/img", `{"qemu_img": "qemu-img", "path": "dup-base.qcow2", "format": "qcow2", "size": 16}`).
		expect(t, 201, "")
	p := d.createProject("qemu duplicate")
	collection := "/v2/compute/projects/" + p + "/qemu/nodes"
	src := d.do("POST", collection, `{"name": "source", "hda_disk_image": "dup-base.qcow2"}`).expect(t, 201, "").object(t)["node_id"].(string)
	dst := d.do("POST", collection, `{"name": "copy"}`).expect(t, 201, "").object(t)["node_id"].(string)
	d.do("POST", collection+"/"+src+"/start", "").expect(t, 200, "")
	d.do("POST", collection+"/"+src+"/stop", "").expect(t, 204, "")
	overlay := filepath.Join(qemuNodeDir(d, p, src), "hda_disk.qcow2")
	disk, err := os.ReadFile(overlay)
	if err != nil {
		t.Fatalf("the start made no linked clone: %v", err)
	}
	if _, err := os.Stat(filepath.Join(qemuNodeDir(d, p, dst), "hda_disk.qcow2")); err == nil {
		t.Fatal("the destination has a disk before the duplicate")
	}

	o := d.do("POST", collection+"/"+src+"/duplicate", `{"destination_node_id": "`+dst+`"}`).
		expect(t, 201, "/v2/compute/projects/{project_id}/qemu/nodes/{node_id}/duplicate").object(t)
	if o["node_id"] != dst || o["name"] != "copy" {
		t.Fatalf("duplicate replied node %v (%v), want the destination %s", o["node_id"], o["name"], dst)
	}
	keys(t, o, qemuV2Members...)
	copied, err := os.ReadFile(filepath.Join(qemuNodeDir(d, p, dst), "hda_disk.qcow2"))
	if err != nil || !bytes.Equal(copied, disk) {
		t.Fatalf("the destination's hda_disk.qcow2 (%d bytes, %v) is not the source's (%d bytes)", len(copied), err, len(disk))
	}
	if again, err := os.ReadFile(overlay); err != nil || !bytes.Equal(again, disk) {
		t.Fatalf("the duplicate changed the source's disk: %v", err)
	}
}

// TestQEMUDuplicateIntoAnotherKindRefused: the QEMU duplicate route
// copies only into a QEMU node. GNS3's QEMU manager does not know a VPCS
// node, so a VPCS destination does not exist for it (404), and nothing is
// copied.
func TestQEMUDuplicateIntoAnotherKindRefused(t *testing.T) {
	t.Parallel()
	needQEMUBinaries(t)
	d := startDaemon(t, ownPorts(27))
	d.do("POST", "/v2/compute/qemu/img", `{"qemu_img": "qemu-img", "path": "kind-base.qcow2", "format": "qcow2", "size": 16}`).
		expect(t, 201, "")
	p := d.createProject("qemu duplicate kinds")
	collection := "/v2/compute/projects/" + p + "/qemu/nodes"
	src := d.do("POST", collection, `{"name": "source", "hda_disk_image": "kind-base.qcow2"}`).expect(t, 201, "").object(t)["node_id"].(string)
	d.do("POST", collection+"/"+src+"/start", "").expect(t, 200, "")
	d.do("POST", collection+"/"+src+"/stop", "").expect(t, 204, "")
	if _, err := os.Stat(filepath.Join(qemuNodeDir(d, p, src), "hda_disk.qcow2")); err != nil {
		t.Fatalf("the start made no linked clone: %v", err)
	}
	pc := d.createVPCS(p, "PC1")
	seq, tree := d.lastSeq(), treeOf(t, d)

	r := d.do("POST", collection+"/"+src+"/duplicate", `{"destination_node_id": "`+pc.ID+`"}`)
	checkErrorReply(t, r, 404)
	if got := treeOf(t, d); !slices.Equal(got, tree) || d.lastSeq() != seq {
		t.Fatalf("a duplicate into a VPCS node changed files:\n%v\nwas\n%v", got, tree)
	}
}

// TestQEMUPropertiesRoundTripImageReupload: an image uploaded again under
// the same name shows its new checksum, as in GNS3 (the upload drops the
// cached checksum, and a node's JSON reads it afresh): on GET, v2 and v1,
// and when a client sets the same name again.
func TestQEMUPropertiesRoundTripImageReupload(t *testing.T) {
	t.Parallel()
	needQEMUBinaries(t)
	d := startDaemon(t, ownPorts(26))
	first, second := putImages(t, d, "reupload.img")["reupload.img"], md5hex("other bytes")
	p := d.createProject("qemu image reupload")
	o := d.do("POST", "/v2/compute/projects/"+p+"/qemu/nodes", `{"name": "n", "hda_disk_image": "reupload.img"}`).
		expect(t, 201, "").object(t)
	if o["hda_disk_image_md5sum"] != first {
		t.Fatalf("hda_disk_image_md5sum %v, want %s", o["hda_disk_image_md5sum"], first)
	}
	node := "/v2/compute/projects/" + p + "/qemu/nodes/" + o["node_id"].(string)
	vm := "/v1/projects/" + p + "/qemu/vms/" + o["node_id"].(string)
	d.do("POST", "/v2/compute/qemu/images/reupload.img", "other bytes").expect(t, 204, "")
	for _, path := range []string{node, vm} {
		if got := d.do("GET", path, "").expect(t, 200, "").object(t)["hda_disk_image_md5sum"]; got != second {
			t.Errorf("GET %s after the image was uploaded again: hda_disk_image_md5sum %v, want %s (the new bytes'; %s was the old)",
				path, got, second, first)
		}
	}
	if got := d.do("PUT", node, `{"hda_disk_image": "reupload.img"}`).expect(t, 200, "").object(t)["hda_disk_image_md5sum"]; got != second {
		t.Errorf("PUT of the same image name after it was uploaded again: hda_disk_image_md5sum %v, want %s (%s was the old)", got, second, first)
	}
}
