package api_test

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"labd/actors/qemu"
)

// needQEMUBinaries fails a test on a machine without Debian's QEMU
// packages (make deps installs them).
func needQEMUBinaries(t *testing.T) {
	t.Helper()
	for _, bin := range []string{"qemu-system-x86_64", "qemu-img"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s is not installed (make deps installs it)", bin)
		}
	}
}

// fileTree lists the paths under dir, but the event store's, to prove a
// refused request wrote nothing.
func fileTree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if d != nil && d.IsDir() && d.Name() == "nats" {
			return fs.SkipDir
		}
		out = append(out, p)
		return nil
	})
	return out
}

// imgInfo is what a test reads of `qemu-img info --output=json`.
type imgInfo struct {
	Format      string `json:"format"`
	VirtualSize int64  `json:"virtual-size"`
	ClusterSize int64  `json:"cluster-size"`
}

func qemuImgInfo(t *testing.T, path string) imgInfo {
	t.Helper()
	out, err := exec.Command("qemu-img", "info", "-U", "--output=json", path).Output()
	if err != nil {
		t.Fatalf("qemu-img info %s: %v", path, err)
	}
	var i imgInfo
	if err := json.Unmarshal(out, &i); err != nil {
		t.Fatal(err)
	}
	return i
}

func TestQEMUImageUploadListDownload(t *testing.T) {
	d := startDaemon(t, daemonOptions{})
	store := filepath.Join(d.DataDir, "images", "QEMU")
	data := bytes.Repeat([]byte{0, 1, 2, 0xff, 'l', 'a', 'b'}, 200_000)
	sum := md5.Sum(data)
	wantSum := hex.EncodeToString(sum[:])

	d.do("GET", "/v2/compute/qemu/images", "").expect(t, 200, "/v2/compute/qemu/images")
	if list := d.do("GET", "/v2/compute/qemu/images", "").array(t); len(list) != 0 {
		t.Fatalf("empty store lists %v", list)
	}
	r := d.do("POST", "/v2/compute/qemu/images/linux.qcow2", string(data)).expect(t, 204, "/v2/compute/qemu/images/{filename:.+}")
	if len(r.Body) != 0 {
		t.Errorf("upload answered a body: %q", r.Body)
	}
	d.do("POST", "/v1/qemu/vms/sub/v1.img", "one").expect(t, 204, "/v1/qemu/vms/{path:.+}")

	if b, err := os.ReadFile(filepath.Join(store, "linux.qcow2.md5sum")); err != nil || string(b) != wantSum {
		t.Fatalf("md5 sidecar %q, %v; want %s", b, err, wantSum)
	}
	for _, route := range []string{"/v2/compute/qemu/images", "/v1/qemu/vms"} {
		list := d.do("GET", route, "").expect(t, 200, route).array(t)
		if len(list) != 2 {
			t.Fatalf("%s lists %v, want 2 images", route, list)
		}
		keys(t, list[0], "filename", "path", "md5sum", "filesize")
		if list[0]["filename"] != "linux.qcow2" || list[0]["path"] != "linux.qcow2" ||
			list[0]["md5sum"] != wantSum || list[0]["filesize"] != float64(len(data)) {
			t.Errorf("%s: first image %v, want linux.qcow2 with md5 %s and %d bytes", route, list[0], wantSum, len(data))
		}
		if list[1]["filename"] != "sub/v1.img" || list[1]["md5sum"] != "f97c5d29941bfb1b2fdab0874906ab82" {
			t.Errorf("%s: second image %v", route, list[1])
		}
	}
	got := d.do("GET", "/v2/compute/qemu/images/linux.qcow2", "").expect(t, 200, "/v2/compute/qemu/images/{filename:.+}")
	if !bytes.Equal(got.Body, data) {
		t.Fatalf("download returned %d bytes, not the %d uploaded", len(got.Body), len(data))
	}
	if got := d.do("GET", "/v2/compute/qemu/images/sub/v1.img", "").expect(t, 200, ""); string(got.Body) != "one" {
		t.Fatalf("download of sub/v1.img = %q", got.Body)
	}
	d.do("GET", "/v2/compute/qemu/images/missing.img", "").expect(t, 404, "")
	d.do("GET", "/v2/compute/qemu/images/sub", "").expect(t, 404, "")
	d.do("GET", "/v2/compute/qemu/images/.hidden", "").expect(t, 403, "")
	d.do("GET", "/v2/compute/qemu/images/sub/../../../../etc/passwd", "").expect(t, 403, "")
	d.do("POST", "/v2/compute/qemu/images/sub", "x").expect(t, 409, "")
}

func TestQEMUImageBadNamesWriteNothing(t *testing.T) {
	d := startDaemon(t, daemonOptions{})
	d.do("POST", "/v2/compute/qemu/images/ok.img", "ok").expect(t, 204, "")
	top := filepath.Dir(d.DataDir)
	before := fileTree(t, top)
	for _, name := range []string{
		"../x", "%2e%2e/x", "a/../../x", "a/../../../x", ".hidden", "/etc/passwd", "//etc/passwd",
		"a/.b", "x%00y", "ok.img.md5sum", "x.tmp", `..%5cx`,
	} {
		for _, route := range []string{"/v2/compute/qemu/images/", "/v1/qemu/vms/"} {
			r := d.do("POST", route+name, "evil")
			if r.Status != 403 {
				t.Errorf("POST %s%s: status %d, want 403; %s", route, name, r.Status, r.Body)
			}
			checkErrorBody(t, r)
		}
	}
	d.do("POST", "/v2/compute/qemu/images/", "evil").expect(t, 400, "")
	if after := fileTree(t, top); !slices.Equal(before, after) {
		t.Fatalf("refused uploads changed the files:\nbefore %v\nafter  %v", before, after)
	}
}

// checkErrorBody checks GNS3's error shape.
func checkErrorBody(t *testing.T, r *response) {
	t.Helper()
	var body struct {
		Status  int    `json:"status"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(r.Body, &body); err != nil || body.Status != r.Status || body.Message == "" {
		t.Errorf("error body %q is not {status, message}", r.Body)
	}
}

var qemuVersion = regexp.MustCompile(`^\d+\.\d+\.\d+$`)

func TestQEMUBinariesRoutes(t *testing.T) {
	needQEMUBinaries(t)
	d := startDaemon(t, daemonOptions{})
	x86, _ := exec.LookPath("qemu-system-x86_64")
	for _, route := range []string{"/v1/qemu/binaries", "/v2/compute/qemu/binaries"} {
		list := d.do("GET", route, "").expect(t, 200, route).array(t)
		i := slices.IndexFunc(list, func(b map[string]any) bool { return b["path"] == x86 })
		if i < 0 {
			t.Fatalf("%s = %v: no %s", route, list, x86)
		}
		keys(t, list[i], "path", "version")
		if v, _ := list[i]["version"].(string); !qemuVersion.MatchString(v) {
			t.Errorf("%s: version %q, want like 7.2.22", route, v)
		}
	}
	platforms := func(r *response) []string {
		var out []string
		for _, b := range r.array(t) {
			out = append(out, qemu.PlatformOf(b["path"].(string)))
		}
		return out
	}
	if got := platforms(d.do("GET", "/v2/compute/qemu/binaries", `{"archs": ["x86_64"]}`).expect(t, 200, "")); !slices.Equal(got, []string{"x86_64"}) {
		t.Errorf("archs [x86_64] in the body lists %v", got)
	}
	if got := platforms(d.do("GET", "/v2/compute/qemu/binaries?archs=i386", "").expect(t, 200, "")); slices.ContainsFunc(got, func(p string) bool { return p != "i386" }) {
		t.Errorf("?archs=i386 lists %v", got)
	}
	if got := platforms(d.do("GET", "/v2/compute/qemu/binaries?archs=x86_64,i386", "").expect(t, 200, "")); !slices.Contains(got, "x86_64") || slices.ContainsFunc(got, func(p string) bool { return p != "i386" && p != "x86_64" }) {
		t.Errorf("?archs=x86_64,i386 lists %v", got)
	}
	for _, bad := range []struct{ path, body string }{
		{"/v2/compute/qemu/binaries", `{"archs": ["z80"]}`},
		{"/v2/compute/qemu/binaries", `{"archs": "x86_64"}`},
		{"/v2/compute/qemu/binaries", `{"arch": ["x86_64"]}`},
		{"/v2/compute/qemu/binaries?archs=z80", ""},
	} {
		checkErrorBody(t, d.do("GET", bad.path, bad.body).expect(t, 400, ""))
	}
	qemuImg, _ := exec.LookPath("qemu-img")
	for _, route := range []string{"/v1/qemu/img-binaries", "/v2/compute/qemu/img-binaries"} {
		list := d.do("GET", route, "").expect(t, 200, route).array(t)
		if len(list) != 1 || list[0]["path"] != qemuImg || !qemuVersion.MatchString(list[0]["version"].(string)) {
			t.Errorf("%s = %v, want %s with its version", route, list, qemuImg)
		}
	}
	caps := d.do("GET", "/v2/compute/qemu/capabilities", "").expect(t, 200, "/v2/compute/qemu/capabilities").object(t)
	keys(t, caps, "kvm")
	want, _ := json.Marshal(qemu.KVMArchs())
	if got, _ := json.Marshal(caps["kvm"]); string(got) != string(want) {
		t.Errorf("kvm %s, want %s", got, want)
	}
}

func TestQEMUImgCreateAndResize(t *testing.T) {
	needQEMUBinaries(t)
	d := startDaemon(t, daemonOptions{})
	store := filepath.Join(d.DataDir, "images", "QEMU")
	hda := filepath.Join(store, "hda.qcow2")
	create := `{"qemu_img": "qemu-img", "path": "hda.qcow2", "format": "qcow2", "size": 30,
		"cluster_size": 65536, "lazy_refcounts": "off", "preallocation": "metadata", "refcount_bits": 16}`
	r := d.do("POST", "/v2/compute/qemu/img", create).expect(t, 201, "/v2/compute/qemu/img")
	if len(r.Body) != 0 {
		t.Errorf("create answered a body: %q", r.Body)
	}
	if i := qemuImgInfo(t, hda); i.Format != "qcow2" || i.VirtualSize != 30<<20 || i.ClusterSize != 65536 {
		t.Fatalf("created image %+v, want a 30 MB qcow2 with 64 KiB clusters", i)
	}
	checkErrorBody(t, d.do("POST", "/v2/compute/qemu/img", create).expect(t, 409, ""))

	d.do("PUT", "/v2/compute/qemu/img", `{"qemu_img": "/usr/bin/qemu-img", "path": "hda.qcow2", "extend": 10}`).expect(t, 201, "/v2/compute/qemu/img")
	if i := qemuImgInfo(t, hda); i.VirtualSize != 40<<20 {
		t.Fatalf("after extend 10: virtual size %d, want %d", i.VirtualSize, 40<<20)
	}
	checkErrorBody(t, d.do("PUT", "/v2/compute/qemu/img", `{"qemu_img": "qemu-img", "path": "nope.qcow2", "extend": 10}`).expect(t, 409, ""))

	// GNS3 1.5's documented sample, with a cluster size qemu-img takes.
	d.do("POST", "/v1/qemu/img", `{"cluster_size": 65536, "format": "qcow2", "lazy_refcounts": "off",
		"path": "v1.qcow2", "preallocation": "metadata", "qemu_img": "qemu-img", "refcount_bits": 16, "size": 100}`).expect(t, 201, "/v1/qemu/img")
	if i := qemuImgInfo(t, filepath.Join(store, "v1.qcow2")); i.VirtualSize != 100<<20 {
		t.Fatalf("v1 image %+v", i)
	}

	// An absolute path inside a project directory is allowed.
	id := d.createProject("disks")
	inProject := filepath.Join(d.Client.ProjectDir(id), "disk.img")
	if err := os.MkdirAll(filepath.Dir(inProject), 0o755); err != nil {
		t.Fatal(err)
	}
	d.do("POST", "/v2/compute/qemu/img", `{"qemu_img": "qemu-img", "path": `+quote(inProject)+`, "format": "raw", "size": 2}`).expect(t, 201, "")
	if i := qemuImgInfo(t, inProject); i.Format != "raw" || i.VirtualSize != 2<<20 {
		t.Fatalf("project image %+v", i)
	}
}

func TestQEMUImgRefusals(t *testing.T) {
	needQEMUBinaries(t)
	d := startDaemon(t, daemonOptions{})
	// An executable that is not QEMU, under qemu-img's name.
	fakeDir := t.TempDir()
	b, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	fake := filepath.Join(fakeDir, "qemu-img")
	if err := os.WriteFile(fake, b, 0o755); err != nil {
		t.Fatal(err)
	}
	outside := t.TempDir()
	projects := d.Client.ProjectsDir()
	top := filepath.Dir(d.DataDir)
	before, beforeOutside := fileTree(t, top), fileTree(t, outside)
	body := func(qemuImg, path string) string {
		return `{"qemu_img": ` + quote(qemuImg) + `, "path": ` + quote(path) + `, "format": "qcow2", "size": 1}`
	}
	for _, tc := range []struct {
		body   string
		status int
	}{
		{body("/bin/sh", "a.qcow2"), 400},
		{body("sh", "a.qcow2"), 400},
		{body(fake, "a.qcow2"), 400},
		{body("/usr/bin/qemu-system-x86_64", "a.qcow2"), 400},
		{body("qemu-img", filepath.Join(outside, "a.qcow2")), 403},
		{body("qemu-img", "/etc/a.qcow2"), 403},
		{body("qemu-img", "../a.qcow2"), 403},
		{body("qemu-img", "x/../../a.qcow2"), 403},
		{body("qemu-img", ".a.qcow2"), 403},
		{body("qemu-img", filepath.Join(projects, "a.qcow2")), 403},
		{body("qemu-img", filepath.Join(projects, "not-a-uuid", "a.qcow2")), 403},
		{body("qemu-img", filepath.Join(d.DataDir, "a.qcow2")), 403},
		{body("qemu-img", ""), 403},
		{`{"qemu_img": "qemu-img", "path": "a.qcow2", "format": "qed", "size": 1}`, 400},
		{`{"qemu_img": "qemu-img", "path": "a.qcow2", "format": "qcow2", "size": 0}`, 400},
		{`{"qemu_img": "qemu-img", "path": "a.qcow2", "format": "qcow2", "size": 1, "cluster_size": 64}`, 400},
		{`{"qemu_img": "qemu-img", "path": "a.qcow2", "format": "qcow2", "size": 1, "subformat": "x,backing_file=/etc/passwd"}`, 400},
		{`{"qemu_img": "qemu-img", "path": "a.qcow2", "format": "qcow2", "size": 1, "extra": 1}`, 400},
		{`{"qemu_img": "qemu-img", "path": "a.qcow2", "format": "qcow2"}`, 400},
		{`{"qemu_img": "qemu-img", "path": "a.qcow2", "format": "qcow2", "size": "1"}`, 400},
		{`{"qemu_img": null, "path": "a.qcow2", "format": "qcow2", "size": 1}`, 400},
		{``, 400},
	} {
		r := d.do("POST", "/v2/compute/qemu/img", tc.body)
		if r.Status != tc.status {
			t.Errorf("POST /v2/compute/qemu/img %s: status %d, want %d; %s", tc.body, r.Status, tc.status, r.Body)
		}
		checkErrorBody(t, r)
	}
	r := d.do("POST", "/v2/compute/qemu/img", body(fake, "a.qcow2"))
	if !strings.Contains(string(r.Body), fake) {
		t.Errorf("the refusal does not name the binary: %s", r.Body)
	}
	for _, tc := range []struct {
		body   string
		status int
	}{
		{`{"qemu_img": "/bin/sh", "path": "a.qcow2", "extend": 1}`, 400},
		{`{"qemu_img": ` + quote(fake) + `, "path": "a.qcow2", "extend": 1}`, 400},
		{`{"qemu_img": "qemu-img", "path": "/etc/passwd", "extend": 1}`, 403},
		{`{"qemu_img": "qemu-img", "path": "../x", "extend": 1}`, 403},
		{`{"qemu_img": "qemu-img", "path": "a.qcow2"}`, 409},
		{`{"qemu_img": "qemu-img", "extend": 1}`, 400},
	} {
		r := d.do("PUT", "/v2/compute/qemu/img", tc.body)
		if r.Status != tc.status {
			t.Errorf("PUT /v2/compute/qemu/img %s: status %d, want %d; %s", tc.body, r.Status, tc.status, r.Body)
		}
	}
	// Only the store directory itself may have appeared.
	after := slices.DeleteFunc(fileTree(t, top), func(p string) bool {
		return p == filepath.Join(d.DataDir, "images") || p == filepath.Join(d.DataDir, "images", "QEMU")
	})
	if !slices.Equal(before, after) {
		t.Fatalf("refused requests changed the files:\nbefore %v\nafter  %v", before, after)
	}
	if !slices.Equal(beforeOutside, fileTree(t, outside)) {
		t.Fatal("a refused request wrote outside the store")
	}
}
