package api_test

import (
	"crypto/md5"
	"encoding/hex"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"labd/nio"
)

// The seed (GNS3 1.5 API documentation, seeds/001_248ad491b422997e.txt)
// samples use the project id "ale920ca-338a-..." in some places and
// "a1e920ca-338a-..." in others: the former is a text-extraction artefact
// ("1" read as "l", which is not a hex digit and which GNS3 itself would
// refuse). The sessions below use the real id.
const seedProject = "a1e920ca-338a-4e9f-b363-aa607b09dd80"

// TestSeedV1ProjectSession replays the v1 sample sessions of the seed's
// project, network, file and version sections, with the fields and codes
// they document.
func TestSeedV1ProjectSession(t *testing.T) {
	d := startDaemon(t, daemonOptions{udpPorts: freeUDPRange(t, 8)})

	// GET /v1/version
	v := d.do("GET", "/v1/version", "").expect(t, 200, "/v1/version").object(t)
	keys(t, v, "local", "version")
	if v["version"] != testVersion {
		t.Fatalf("version %v", v["version"])
	}
	// POST /v1/version: same → 200 {"version"}, different → 409.
	same := d.do("POST", "/v1/version", `{"version": "`+testVersion+`"}`).expect(t, 200, "/v1/version").object(t)
	keys(t, same, "version")
	diff := d.do("POST", "/v1/version", `{"version": "1.4.0.dev9"}`).expect(t, 409, "/v1/version").object(t)
	keys(t, diff, "message", "status")
	if diff["status"] != 409.0 || !strings.Contains(diff["message"].(string), "1.4.0.dev9") {
		t.Fatalf("version mismatch body %v", diff)
	}

	// POST /v1/projects {"name": "test"} → 201 with the five documented members.
	p := d.do("POST", "/v1/projects", `{"name": "test", "project_id": "`+seedProject+`"}`).expect(t, 201, "/v1/projects").object(t)
	keys(t, p, "location", "name", "path", "project_id", "temporary")
	wantPath := filepath.Join(p["location"].(string), seedProject)
	if p["name"] != "test" || p["project_id"] != seedProject || p["temporary"] != false || p["path"] != wantPath {
		t.Fatalf("created %v", p)
	}
	if st, err := os.Stat(wantPath); err != nil || !st.IsDir() {
		t.Fatalf("project directory %s: %v", wantPath, err)
	}
	// The same id again: 409 "Project already created".
	d.do("POST", "/v1/projects", `{"name": "test", "project_id": "`+seedProject+`"}`).expect(t, 409, "/v1/projects")

	// GET /v1/projects and /v1/projects/{project_id}
	list := d.do("GET", "/v1/projects", "").expect(t, 200, "/v1/projects").array(t)
	if len(list) != 1 || !reflect.DeepEqual(list[0], p) {
		t.Fatalf("list %v", list)
	}
	got := d.do("GET", "/v1/projects/"+seedProject, "").expect(t, 200, "/v1/projects/{project_id}").object(t)
	if !reflect.DeepEqual(got, p) {
		t.Fatalf("get %v, created %v", got, p)
	}

	// PUT with a path elsewhere: 403 with GNS3's message, nothing changed.
	forbidden := d.do("PUT", "/v1/projects/"+seedProject,
		`{"name": "second_name", "path": "/private/var/folders/3s/T/pytest-54/test_update_path_project_non_l0"}`).
		expect(t, 403, "/v1/projects/{project_id}").object(t)
	if forbidden["message"] != "You are not allowed to modify the project directory location" || forbidden["status"] != 403.0 {
		t.Fatalf("403 body %v", forbidden)
	}
	if n := d.do("GET", "/v1/projects/"+seedProject, "").object(t)["name"]; n != "test" {
		t.Fatalf("a refused update changed the name to %v", n)
	}
	// PUT with the name (and the project's own path): 200.
	up := d.do("PUT", "/v1/projects/"+seedProject, `{"name": "second_name", "path": `+quote(wantPath)+`}`).
		expect(t, 200, "/v1/projects/{project_id}").object(t)
	if up["name"] != "second_name" {
		t.Fatalf("updated %v", up)
	}

	// POST /v1/projects/{project_id}/ports/udp → 201 {"udp_port": N}.
	r := d.UDPRange()
	for i := range 2 {
		port := d.do("POST", "/v1/projects/"+seedProject+"/ports/udp", "{}").expect(t, 201, "/v1/projects/{project_id}/ports/udp").object(t)
		keys(t, port, "udp_port")
		if port["udp_port"] != float64(r.First+i) {
			t.Fatalf("allocation %d: %v, want %d", i, port, r.First+i)
		}
	}
	d.do("POST", "/v1/projects/00010203-0405-0607-0809-0a0b0c0d0e0f/ports/udp", "{}").expect(t, 404, "/v1/projects/{project_id}/ports/udp")

	// Files: the seed lists test.txt and vm-1/dynamips/test.bin with these
	// md5 sums, which are those of "test2" and "test".
	d.do("POST", "/v1/projects/"+seedProject+"/files/test.txt", "test2").expect(t, 200, "/v1/projects/{project_id}/files/{path:.+}")
	d.do("POST", "/v1/projects/"+seedProject+"/files/vm-1/dynamips/test.bin", "test").expect(t, 200, "")
	files := d.do("GET", "/v1/projects/"+seedProject+"/files", "").expect(t, 200, "/v1/projects/{project_id}/files").array(t)
	wantFiles := []map[string]any{
		{"md5sum": "ad0234829205b9033196ba818f7a872b", "path": "test.txt"},
		{"md5sum": "098f6bcd4621d373cade4e832627b4f6", "path": "vm-1/dynamips/test.bin"},
	}
	if !reflect.DeepEqual(files, wantFiles) {
		t.Fatalf("files %v, want %v", files, wantFiles)
	}
	body := d.do("GET", "/v1/projects/"+seedProject+"/files/vm-1/dynamips/test.bin", "").expect(t, 200, "/v1/projects/{project_id}/files/{path:.+}").Body
	if string(body) != "test" {
		t.Fatalf("downloaded %q", body)
	}
	d.do("GET", "/v1/projects/"+seedProject+"/files/nothing.txt", "").expect(t, 404, "")
	d.do("GET", "/v1/projects/"+seedProject+"/files/..%2F..%2F..%2Fetc%2Fpasswd", "").expect(t, 403, "")

	// POST commit and close → 204; a closed project is gone (404).
	d.do("POST", "/v1/projects/"+seedProject+"/commit", "{}").expect(t, 204, "/v1/projects/{project_id}/commit")
	d.do("POST", "/v1/projects/"+seedProject+"/close", "{}").expect(t, 204, "/v1/projects/{project_id}/close")
	d.do("GET", "/v1/projects/"+seedProject, "").expect(t, 404, "/v1/projects/{project_id}")
	d.do("POST", "/v1/projects/"+seedProject+"/commit", "{}").expect(t, 404, "")
	if _, err := os.Stat(filepath.Join(wantPath, "test.txt")); err != nil {
		t.Fatalf("close removed the project's files: %v", err)
	}
	// Its ports went back to the pool.
	if used := d.Client.UDPPortsInUse(); len(used) != 0 {
		t.Fatalf("ports still held after close: %v", used)
	}

	// DELETE /v1/projects/{project_id} → 204 and the directory is gone.
	id := d.do("POST", "/v1/projects", `{"name": "test"}`).expect(t, 201, "").object(t)["project_id"].(string)
	dir := filepath.Join(p["location"].(string), id)
	d.do("DELETE", "/v1/projects/"+id, "").expect(t, 204, "/v1/projects/{project_id}")
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("project directory after delete: %v", err)
	}
	d.do("DELETE", "/v1/projects/"+id, "").expect(t, 404, "")

	// A closed project can be created again; its files are still there.
	d.do("POST", "/v1/projects", `{"name": "again", "project_id": "`+seedProject+`"}`).expect(t, 201, "")
	d.do("GET", "/v1/projects/"+seedProject+"/files/test.txt", "").expect(t, 200, "")

	// GET /v1/interfaces → [{"id", "ip_address", "name"}].
	ifs := d.do("GET", "/v1/interfaces", "").expect(t, 200, "/v1/interfaces").array(t)
	found := false
	for _, i := range ifs {
		keys(t, i, "id", "ip_address", "name")
		found = found || (i["name"] == "lo" && i["ip_address"] == "127.0.0.1")
	}
	if !found {
		t.Fatalf("no loopback in %v", ifs)
	}
}

// TestSeedV1TemporaryProject: GNS3 1.5 removes a temporary project's
// directory when it is closed.
func TestSeedV1TemporaryProject(t *testing.T) {
	d := startDaemon(t, daemonOptions{})
	p := d.do("POST", "/v1/projects", `{"name": "tmp", "temporary": true}`).expect(t, 201, "").object(t)
	if p["temporary"] != true {
		t.Fatalf("created %v", p)
	}
	d.do("POST", "/v1/projects/"+p["project_id"].(string)+"/close", "").expect(t, 204, "")
	if _, err := os.Stat(p["path"].(string)); !os.IsNotExist(err) {
		t.Fatalf("temporary project directory after close: %v", err)
	}
}

// TestServerControl: config reload and shutdown are refused (403) unless
// the daemon allows them, then answer 201 as the seed documents.
func TestServerControl(t *testing.T) {
	refused := startDaemon(t, daemonOptions{})
	for _, path := range []string{"/v1/config/reload", "/v1/server/shutdown"} {
		body := refused.do("POST", path, "{}").expect(t, 403, path).object(t)
		keys(t, body, "message", "status")
	}
	if refused.shutdown != 0 {
		t.Fatal("a refused shutdown shut down")
	}

	allowed := startDaemon(t, daemonOptions{allowServerControl: true})
	allowed.do("POST", "/v1/config/reload", "{}").expect(t, 201, "/v1/config/reload")
	allowed.do("POST", "/v1/server/shutdown", "{}").expect(t, 201, "/v1/server/shutdown")
	allowed.do("POST", "/v1/server/shutdown", "").expect(t, 201, "")
	allowed.mu.Lock()
	defer allowed.mu.Unlock()
	if allowed.shutdown != 1 {
		t.Fatalf("shutdown hook called %d times, want once", allowed.shutdown)
	}
}

// TestV2ComputeSession drives the /v2/compute project routes the way a
// GNS3 2.2 controller does, with the codes GNS3 really answers.
func TestV2ComputeSession(t *testing.T) {
	d := startDaemon(t, daemonOptions{udpPorts: freeUDPRange(t, 4)})

	v := d.do("GET", "/v2/compute/version", "").expect(t, 200, "/v2/compute/version").object(t)
	keys(t, v, "local", "version")
	caps := d.do("GET", "/v2/compute/capabilities", "").expect(t, 200, "/v2/compute/capabilities").object(t)
	// Exactly GNS3's members: its controller refuses a compute with more.
	keys(t, caps, "node_types", "platform", "version")
	if caps["version"] != testVersion || caps["platform"] != "linux" {
		t.Fatalf("capabilities %v", caps)
	}

	const pid = "3c1be6f9-b4ba-4737-b209-63c47c23359f"
	create := `{"name": "test", "project_id": "` + pid + `", "auto_close": true, "scene_width": 2000, "supplier": null}`
	p := d.do("POST", "/v2/compute/projects", create).expect(t, 201, "/v2/compute/projects").object(t)
	keys(t, p, "name", "project_id", "variables")
	if p["name"] != "test" || p["project_id"] != pid || p["variables"] != nil {
		t.Fatalf("created %v", p)
	}
	// Idempotent: the same id again is 201 with the existing project.
	again := d.do("POST", "/v2/compute/projects", `{"name": "other", "project_id": "`+pid+`"}`).expect(t, 201, "").object(t)
	if !reflect.DeepEqual(again, p) {
		t.Fatalf("second create %v, first %v", again, p)
	}

	// PUT: 200; only variables apply, other members are accepted.
	up := d.do("PUT", "/v2/compute/projects/"+pid, `{"name": "ignored", "variables": [{"name": "a", "value": "1"}, {"name": "b"}]}`).
		expect(t, 200, "/v2/compute/projects/{project_id}").object(t)
	wantVars := []any{map[string]any{"name": "a", "value": "1"}, map[string]any{"name": "b"}}
	if up["name"] != "test" || !reflect.DeepEqual(up["variables"], wantVars) {
		t.Fatalf("updated %v", up)
	}
	got := d.do("GET", "/v2/compute/projects/"+pid, "").expect(t, 200, "/v2/compute/projects/{project_id}").object(t)
	if !reflect.DeepEqual(got, up) {
		t.Fatalf("get %v after update %v", got, up)
	}
	list := d.do("GET", "/v2/compute/projects", "").expect(t, 200, "/v2/compute/projects").array(t)
	if len(list) != 1 || !reflect.DeepEqual(list[0], up) {
		t.Fatalf("list %v", list)
	}
	bad := d.do("GET", "/v2/compute/projects/not-a-uuid", "").expect(t, 400, "").object(t)
	if bad["message"] != "Project ID not-a-uuid is not a valid UUID" {
		t.Fatalf("bad id body %v", bad)
	}

	// Files: write (201), list, read.
	d.do("POST", "/v2/compute/projects/"+pid+"/files/configs/r1.cfg", "hostname r1\n").expect(t, 201, "/v2/compute/projects/{project_id}/files/{path:.+}")
	files := d.do("GET", "/v2/compute/projects/"+pid+"/files", "").expect(t, 200, "/v2/compute/projects/{project_id}/files").array(t)
	if len(files) != 1 || files[0]["path"] != "configs/r1.cfg" || files[0]["md5sum"] != md5hex("hostname r1\n") {
		t.Fatalf("files %v", files)
	}
	if b := d.do("GET", "/v2/compute/projects/"+pid+"/files/configs/r1.cfg", "").expect(t, 200, "").Body; string(b) != "hostname r1\n" {
		t.Fatalf("read %q", b)
	}

	// Ports: allocate, then see them in network/ports.
	r := d.UDPRange()
	port := d.do("POST", "/v2/compute/projects/"+pid+"/ports/udp", "").expect(t, 201, "/v2/compute/projects/{project_id}/ports/udp").object(t)
	if port["udp_port"] != float64(r.First) {
		t.Fatalf("port %v", port)
	}
	ports := d.do("GET", "/v2/compute/network/ports", "").expect(t, 200, "/v2/compute/network/ports").object(t)
	keys(t, ports, "console_port_range", "console_ports", "udp_port_range", "udp_ports")
	if !reflect.DeepEqual(ports["udp_ports"], []any{float64(r.First)}) ||
		!reflect.DeepEqual(ports["udp_port_range"], []any{float64(r.First), float64(r.Last)}) ||
		!reflect.DeepEqual(ports["console_port_range"], []any{5000.0, 10000.0}) {
		t.Fatalf("network/ports %v", ports)
	}

	ifs := d.do("GET", "/v2/compute/network/interfaces", "").expect(t, 200, "/v2/compute/network/interfaces").array(t)
	for _, i := range ifs {
		keys(t, i, "id", "ip_address", "mac_address", "name", "netmask", "type")
	}
	stats := d.do("GET", "/v2/compute/statistics", "").expect(t, 200, "/v2/compute/statistics").object(t)
	keys(t, stats, "cpu_usage_percent", "disk_usage_percent", "load_average_percent", "memory_free", "memory_total",
		"memory_usage_percent", "memory_used", "swap_free", "swap_total", "swap_usage_percent", "swap_used")
	if stats["memory_total"].(float64) <= 0 || len(stats["load_average_percent"].([]any)) != 3 {
		t.Fatalf("statistics %v", stats)
	}

	// Close (204) keeps the files; delete (204) removes them.
	d.do("POST", "/v2/compute/projects/"+pid+"/close", "").expect(t, 204, "/v2/compute/projects/{project_id}/close")
	d.do("GET", "/v2/compute/projects/"+pid, "").expect(t, 404, "")
	if ports := d.Client.UDPPortsInUse(); len(ports) != 0 {
		t.Fatalf("ports after close: %v", ports)
	}
	d.do("POST", "/v2/compute/projects", create).expect(t, 201, "")
	dir := filepath.Join(d.DataDir, "projects", pid)
	if _, err := os.Stat(filepath.Join(dir, "configs", "r1.cfg")); err != nil {
		t.Fatalf("file after close and reopen: %v", err)
	}
	d.do("DELETE", "/v2/compute/projects/"+pid, "").expect(t, 204, "/v2/compute/projects/{project_id}")
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("directory after delete: %v", err)
	}
}

// UDPRange returns the daemon's UDP port range.
func (d *daemon) UDPRange() nio.PortRange { return d.Client.UDPPortRange() }

func md5hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

// Type errors name the member as the client wrote it.
func TestTypeErrorsNameTheMember(t *testing.T) {
	d := startDaemon(t, daemonOptions{})
	for body, want := range map[string]string{
		`{"name": "a", "auto_close": null}`: `field "auto_close" must be a boolean, not null`,
		`{"name": "a", "scene_width": 1.5}`: `field "scene_width" must be an integer in range, not number 1.5`,
		`{"name": 7}`:                       `field "name" must be a string, not number`,
		`{"name": "a", "variables": "x"}`:   `field "variables" must be an array, not string`,
	} {
		msg := d.do("POST", "/v2/compute/projects", body).expect(t, 400, "").object(t)["message"]
		if msg != "Invalid JSON: "+want {
			t.Errorf("%s: message %q, want %q", body, msg, "Invalid JSON: "+want)
		}
	}
}
