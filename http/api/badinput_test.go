package api_test

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// badCase is one malformed request and the status it must be refused with.
type badCase struct {
	name   string
	method string
	path   string
	body   string
	status int
	// absent are paths that must not exist after the request (where a
	// traversal would have written).
	absent []string
}

// TestBadInputChangesNothing sends malformed requests to every route and
// checks that each is refused with the expected 4xx in GNS3's error shape,
// and that nothing changed: no event, no project, no file, inside or
// outside the project directory.
func TestBadInputChangesNothing(t *testing.T) {
	d := startDaemon(t, daemonOptions{maxBodyBytes: 1024})

	const (
		pid     = "5d3f0a51-7c3e-4f6b-9a52-0b7c1d2e3f40"
		unknown = "00010203-0405-4607-8809-0a0b0c0d0e0f"
	)
	d.do("POST", "/v2/compute/projects", `{"name": "victim", "project_id": "`+pid+`"}`).expect(t, 201, "")
	d.do("POST", "/v2/compute/projects/"+pid+"/files/known.txt", "hello\n").expect(t, 201, "")

	projDir := filepath.Join(d.DataDir, "projects", pid)
	parent := filepath.Dir(d.DataDir)
	v1p, v2p := "/v1/projects/"+pid, "/v2/compute/projects/"+pid
	big := `{"name": "` + strings.Repeat("a", 2048) + `"}`
	bigEmpty := `{` + strings.Repeat(" ", 2048) + `}`

	cases := []badCase{
		// Malformed JSON.
		{"v2 create truncated", "POST", "/v2/compute/projects", `{"name": "x"`, 400, nil},
		{"v2 create trailing garbage", "POST", "/v2/compute/projects", `{"name": "x"} garbage`, 400, nil},
		{"v2 create two objects", "POST", "/v2/compute/projects", `{"name": "x"}{"name": "y"}`, 400, nil},
		{"v2 create array", "POST", "/v2/compute/projects", `[{"name": "x"}]`, 400, nil},
		{"v2 create string", "POST", "/v2/compute/projects", `"x"`, 400, nil},
		{"v2 create null", "POST", "/v2/compute/projects", `null`, 400, nil},
		{"v2 create empty body", "POST", "/v2/compute/projects", ``, 400, nil},
		{"v1 create truncated", "POST", "/v1/projects", `{"name": "x", "temporary": tr`, 400, nil},
		{"v1 create trailing garbage", "POST", "/v1/projects", `{"name": "x"},`, 400, nil},
		{"v1 update array", "PUT", v1p, `[]`, 400, nil},
		{"v2 update truncated", "PUT", v2p, `{`, 400, nil},
		{"v2 update null", "PUT", v2p, `null`, 400, nil},
		{"v1 version array", "POST", "/v1/version", `[]`, 400, nil},
		{"v1 version truncated", "POST", "/v1/version", `{"version": "` + testVersion, 400, nil},

		// Wrong types.
		{"v2 create name number", "POST", "/v2/compute/projects", `{"name": 42}`, 400, nil},
		{"v2 create name object", "POST", "/v2/compute/projects", `{"name": {"a": 1}}`, 400, nil},
		{"v2 create variables object", "POST", "/v2/compute/projects", `{"name": "x", "variables": {"a": "b"}}`, 400, nil},
		{"v1 create temporary string", "POST", "/v1/projects", `{"name": "x", "temporary": "true"}`, 400, nil},
		{"v2 create scene_width float", "POST", "/v2/compute/projects", `{"name": "x", "scene_width": 1.5}`, 400, nil},
		{"v2 create auto_close null", "POST", "/v2/compute/projects", `{"name": "x", "auto_close": null}`, 400, nil},
		{"v2 create auto_open string", "POST", "/v2/compute/projects", `{"name": "x", "auto_open": "yes"}`, 400, nil},
		{"v2 create variable name missing", "POST", "/v2/compute/projects", `{"name": "x", "variables": [{"value": "v"}]}`, 400, nil},
		{"v2 create variable name empty", "POST", "/v2/compute/projects", `{"name": "x", "variables": [{"name": ""}]}`, 400, nil},
		{"v2 create variable name number", "POST", "/v2/compute/projects", `{"name": "x", "variables": [{"name": 1}]}`, 400, nil},
		{"v2 create variable value number", "POST", "/v2/compute/projects", `{"name": "x", "variables": [{"name": "a", "value": 1}]}`, 400, nil},
		{"v2 create supplier string", "POST", "/v2/compute/projects", `{"name": "x", "supplier": "acme"}`, 400, nil},
		{"v1 update temporary string", "PUT", v1p, `{"temporary": "false"}`, 400, nil},
		{"v1 update name number", "PUT", v1p, `{"name": 7}`, 400, nil},
		{"v2 update variable name number", "PUT", v2p, `{"variables": [{"name": 5}]}`, 400, nil},
		{"v2 update variables string", "PUT", v2p, `{"variables": "a=b"}`, 400, nil},
		{"v2 update zoom bool", "PUT", v2p, `{"zoom": true}`, 400, nil},
		{"v1 version number", "POST", "/v1/version", `{"version": 2.2}`, 400, nil},
		{"v1 version null", "POST", "/v1/version", `{"version": null}`, 400, nil},
		{"v1 version missing", "POST", "/v1/version", `{"local": true}`, 400, nil},
		{"v1 version local string", "POST", "/v1/version", `{"version": "` + testVersion + `", "local": "no"}`, 400, nil},

		// Unknown fields, at the top level and in nested objects.
		{"v2 create unknown field", "POST", "/v2/compute/projects", `{"name": "x", "bogus": 1}`, 400, nil},
		{"v2 create variable extra key", "POST", "/v2/compute/projects", `{"name": "x", "variables": [{"name": "a", "value": "b", "extra": 1}]}`, 400, nil},
		{"v2 create supplier extra key", "POST", "/v2/compute/projects", `{"name": "x", "supplier": {"logo": "l", "url": "u", "x": 1}}`, 400, nil},
		{"v1 create variables unknown in v1", "POST", "/v1/projects", `{"name": "x", "variables": []}`, 400, nil},
		{"v1 update unknown field", "PUT", v1p, `{"name": "y", "variables": []}`, 400, nil},
		{"v2 update variable extra key", "PUT", v2p, `{"variables": [{"name": "a", "Extra": "b"}]}`, 400, nil},
		{"v2 update supplier extra key", "PUT", v2p, `{"supplier": {"logo": "l", "colour": "red"}}`, 400, nil},
		{"v1 version unknown field", "POST", "/v1/version", `{"version": "` + testVersion + `", "extra": 1}`, 400, nil},
		{"v1 close unknown field", "POST", v1p + "/close", `{"force": true}`, 400, nil},
		{"v2 close unknown field", "POST", v2p + "/close", `{"x": 1}`, 400, nil},
		{"v1 commit unknown field", "POST", v1p + "/commit", `{"a": 1}`, 400, nil},
		{"v1 ports unknown field", "POST", v1p + "/ports/udp", `{"port": 1}`, 400, nil},
		{"v2 ports null body", "POST", v2p + "/ports/udp", `null`, 400, nil},

		// Malformed UUIDs in paths and bodies.
		{"v2 get project xyz", "GET", "/v2/compute/projects/xyz", "", 400, nil},
		{"v1 get project invalid uppercase chars", "GET", "/v1/projects/A1E920CA-338A-4E9F-B363-AA607B09DDZZ", "", 400, nil},
		{"v1 files of 35-char id", "GET", "/v1/projects/" + pid[:35] + "/files", "", 400, nil},
		{"v2 delete id with braces", "DELETE", "/v2/compute/projects/%7B" + pid + "%7D", "", 400, nil},
		{"v1 delete id without hyphens", "DELETE", "/v1/projects/" + strings.ReplaceAll(pid, "-", ""), "", 400, nil},
		{"v2 update urn id", "PUT", "/v2/compute/projects/urn:uuid:" + pid, `{"variables": []}`, 400, nil},
		{"v1 update id xyz", "PUT", "/v1/projects/xyz", `{"name": "y"}`, 400, nil},
		{"v2 upload to id xyz", "POST", "/v2/compute/projects/xyz/files/a.txt", "data", 400, nil},
		{"v1 notifications of id xyz", "GET", "/v1/projects/xyz/notifications", "", 400, nil},
		{"v2 create project_id xyz", "POST", "/v2/compute/projects", `{"name": "x", "project_id": "xyz"}`, 400, nil},
		{"v2 create project_id invalid uppercase", "POST", "/v2/compute/projects", `{"name": "x", "project_id": "A1E920CA-338A-4E9F-B363-AA607B09DDZZ"}`, 400, nil},
		{"v2 create project_id 35 chars", "POST", "/v2/compute/projects", `{"name": "x", "project_id": "` + pid[:35] + `"}`, 400, nil},
		{"v1 create project_id braces", "POST", "/v1/projects", `{"name": "x", "project_id": "{` + unknown + `}"}`, 400, nil},
		{"v1 create project_id number", "POST", "/v1/projects", `{"name": "x", "project_id": 12345}`, 400, nil},

		// Empty names.
		{"v2 create empty name", "POST", "/v2/compute/projects", `{"name": ""}`, 400, nil},
		{"v2 create missing name", "POST", "/v2/compute/projects", `{"project_id": "` + unknown + `"}`, 400, nil},
		{"v1 create empty name", "POST", "/v1/projects", `{"name": ""}`, 400, nil},
		{"v1 update empty name", "PUT", v1p, `{"name": ""}`, 400, nil},
		{"v2 update empty name", "PUT", v2p, `{"name": "", "variables": []}`, 400, nil},

		// Out-of-range integers.
		{"v2 create scene_width 1e100", "POST", "/v2/compute/projects", `{"name": "x", "scene_width": 1e100}`, 400, nil},
		{"v2 create zoom 2^66", "POST", "/v2/compute/projects", `{"name": "x", "zoom": 99999999999999999999}`, 400, nil},
		{"v2 update grid_size -1e30", "PUT", v2p, `{"grid_size": -1e30}`, 400, nil},

		// Bodies over the 1 KiB limit of this daemon.
		{"v2 create too large", "POST", "/v2/compute/projects", big, 413, nil},
		{"v1 create too large", "POST", "/v1/projects", big, 413, nil},
		{"v1 update too large", "PUT", v1p, big, 413, nil},
		{"v2 update too large", "PUT", v2p, big, 413, nil},
		{"v1 close too large", "POST", v1p + "/close", bigEmpty, 413, nil},
		{"v1 commit too large", "POST", v1p + "/commit", bigEmpty, 413, nil},
		{"v2 ports too large", "POST", v2p + "/ports/udp", bigEmpty, 413, nil},
		{"v1 version too large", "POST", "/v1/version", `{"version": "` + strings.Repeat("9", 2048) + `"}`, 413, nil},

		// Paths labd does not own.
		{"v1 update moves path", "PUT", v1p, `{"path": "/tmp/elsewhere"}`, 403, nil},
		{"v1 update renames and moves path", "PUT", v1p, `{"name": "renamed", "path": ` + quote(filepath.Join(projDir, "..", "other")) + `}`, 403, nil},
		{"v2 create path outside", "POST", "/v2/compute/projects", `{"name": "x", "path": "/tmp/outside"}`, 403, nil},
		{"v2 create path traversal", "POST", "/v2/compute/projects", `{"name": "x", "project_id": "` + unknown + `", "path": ` + quote(filepath.Join(d.DataDir, "projects", unknown, "..", "..")) + `}`, 403, nil},
		{"v1 create path outside", "POST", "/v1/projects", `{"name": "x", "path": "/etc"}`, 403, nil},

		// Path traversal on download.
		{"v1 download encoded slashes", "GET", v1p + "/files/..%2F..%2Fetc%2Fpasswd", "", 403, nil},
		{"v2 download encoded dots", "GET", v2p + "/files/%2e%2e/%2e%2e/etc/passwd", "", 403, nil},
		{"v1 download plain dots", "GET", v1p + "/files/../../../../etc/passwd", "", 403, nil},
		{"v2 download double encoded", "GET", v2p + "/files/%252e%252e%252f%252e%252e%252fetc%252fpasswd", "", 403, nil},
		{"v1 download absolute", "GET", v1p + "/files//etc/passwd", "", 403, nil},
		{"v2 download backslashes", "GET", v2p + "/files/..%5C..%5Cetc%5Cpasswd", "", 403, nil},
		{"v1 download NUL", "GET", v1p + "/files/known.txt%00.png", "", 403, nil},
		{"v2 download invalid UTF-8", "GET", v2p + "/files/%ff", "", 403, nil},
		{"v2 download dots after a name", "GET", v2p + "/files/known.txt/..", "", 403, nil},
		{"v1 download missing file", "GET", v1p + "/files/missing.txt", "", 404, nil},

		// Path traversal on upload.
		{"v2 upload encoded slashes", "POST", v2p + "/files/..%2F..%2Fescaped-1.txt", "pwned", 403,
			[]string{filepath.Join(d.DataDir, "escaped-1.txt")}},
		{"v1 upload encoded dots", "POST", v1p + "/files/%2e%2e/%2e%2e/%2e%2e/escaped-2.txt", "pwned", 403,
			[]string{filepath.Join(parent, "escaped-2.txt")}},
		{"v2 upload double encoded", "POST", v2p + "/files/%252e%252e%252f%252e%252e%252fescaped-3.txt", "pwned", 403,
			[]string{filepath.Join(d.DataDir, "escaped-3.txt"), filepath.Join(projDir, "%2e%2e%2f%2e%2e%2fescaped-3.txt")}},
		{"v1 upload absolute", "POST", v1p + "/files/" + filepath.Join(d.DataDir, "escaped-4.txt"), "pwned", 403,
			[]string{filepath.Join(d.DataDir, "escaped-4.txt")}},
		{"v2 upload backslashes", "POST", v2p + "/files/..%5C..%5Cescaped-5.txt", "pwned", 403,
			[]string{filepath.Join(d.DataDir, "escaped-5.txt"), filepath.Join(projDir, `..\..\escaped-5.txt`)}},
		{"v1 upload NUL", "POST", v1p + "/files/escaped-6.txt%00.png", "pwned", 403,
			[]string{filepath.Join(projDir, "escaped-6.txt")}},
		{"v2 upload invalid UTF-8", "POST", v2p + "/files/escaped-7%ff.txt", "pwned", 403, nil},
		{"v1 upload plain dots", "POST", v1p + "/files/sub/../../escaped-8.txt", "pwned", 403,
			[]string{filepath.Join(d.DataDir, "projects", "escaped-8.txt")}},
		{"v2 upload to the directory itself", "POST", v2p + "/files/.", "pwned", 400, nil},

		// Bad ?since= on the notification routes.
		{"v1 notifications since abc", "GET", v1p + "/notifications?since=abc", "", 400, nil},
		{"v2 notifications since -1", "GET", v2p + "/notifications?since=-1", "", 400, nil},
		{"v2 notifications since twice", "GET", v2p + "/notifications?since=1&since=2", "", 400, nil},
		{"ws notifications since far future", "GET", "/v2/compute/notifications/ws?since=1000000000000", "", 400, nil},
		{"ws notifications since overflow", "GET", "/v2/compute/notifications/ws?since=18446744073709551616", "", 400, nil},

		// A valid but unknown project id.
		{"v1 get unknown project", "GET", "/v1/projects/" + unknown, "", 404, nil},
		{"v2 get unknown project", "GET", "/v2/compute/projects/" + unknown, "", 404, nil},
		{"v1 update unknown project", "PUT", "/v1/projects/" + unknown, `{"name": "y"}`, 404, nil},
		{"v2 update unknown project", "PUT", "/v2/compute/projects/" + unknown, `{"variables": []}`, 404, nil},
		{"v1 delete unknown project", "DELETE", "/v1/projects/" + unknown, "", 404, nil},
		{"v2 delete unknown project", "DELETE", "/v2/compute/projects/" + unknown, "", 404, nil},
		{"v1 close unknown project", "POST", "/v1/projects/" + unknown + "/close", "", 404, nil},
		{"v2 close unknown project", "POST", "/v2/compute/projects/" + unknown + "/close", "{}", 404, nil},
		{"v1 commit unknown project", "POST", "/v1/projects/" + unknown + "/commit", "{}", 404, nil},
		{"v1 files of unknown project", "GET", "/v1/projects/" + unknown + "/files", "", 404, nil},
		{"v2 download from unknown project", "GET", "/v2/compute/projects/" + unknown + "/files/known.txt", "", 404, nil},
		{"v1 upload to unknown project", "POST", "/v1/projects/" + unknown + "/files/a.txt", "data", 404,
			[]string{filepath.Join(d.DataDir, "projects", unknown)}},
		{"v2 upload to unknown project", "POST", "/v2/compute/projects/" + unknown + "/files/a.txt", "data", 404,
			[]string{filepath.Join(d.DataDir, "projects", unknown)}},
		{"v1 ports of unknown project", "POST", "/v1/projects/" + unknown + "/ports/udp", "{}", 404, nil},
		{"v2 ports of unknown project", "POST", "/v2/compute/projects/" + unknown + "/ports/udp", "", 404, nil},
		{"v1 notifications of unknown project", "GET", "/v1/projects/" + unknown + "/notifications", "", 404, nil},
		{"v2 notifications of unknown project", "GET", "/v2/compute/projects/" + unknown + "/notifications?since=0", "", 404, nil},

		// A create that conflicts with the open project.
		{"v1 create existing project", "POST", "/v1/projects", `{"name": "again", "project_id": "` + pid + `"}`, 409, nil},

		// Server control is refused unless allowed.
		{"config reload refused", "POST", "/v1/config/reload", "{}", 403, nil},
		{"server shutdown refused", "POST", "/v1/server/shutdown", "", 403, nil},

		// Unknown routes.
		{"unknown API version", "GET", "/v3/compute/projects", "", 404, nil},
		{"unknown project subroute", "GET", v2p + "/nodes", "", 404, nil},
		{"projects with trailing slash", "GET", "/v2/compute/projects/", "", 404, nil},
		{"POST on the file list", "POST", v2p + "/files", "x", 405, nil},
		{"root", "GET", "/", "", 404, nil},

		// Wrong methods on every fixed route.
		{"DELETE v1 version", "DELETE", "/v1/version", "", 405, nil},
		{"POST v2 version", "POST", "/v2/compute/version", "{}", 405, nil},
		{"POST capabilities", "POST", "/v2/compute/capabilities", "{}", 405, nil},
		{"GET config reload", "GET", "/v1/config/reload", "", 405, nil},
		{"GET server shutdown", "GET", "/v1/server/shutdown", "", 405, nil},
		{"DELETE v1 projects", "DELETE", "/v1/projects", "", 405, nil},
		{"PUT v2 projects", "PUT", "/v2/compute/projects", `{"name": "x"}`, 405, nil},
		{"PATCH v2 project", "PATCH", v2p, `{"name": "x"}`, 405, nil},
		{"POST v1 project", "POST", v1p, `{"name": "x"}`, 405, nil},
		{"GET v1 close", "GET", v1p + "/close", "", 405, nil},
		{"DELETE v2 close", "DELETE", v2p + "/close", "", 405, nil},
		{"GET v1 commit", "GET", v1p + "/commit", "", 405, nil},
		{"PUT v1 files", "PUT", v1p + "/files", "x", 405, nil},
		{"DELETE v2 file", "DELETE", v2p + "/files/known.txt", "", 405, nil},
		{"GET v1 ports", "GET", v1p + "/ports/udp", "", 405, nil},
		{"DELETE v2 ports", "DELETE", v2p + "/ports/udp", "", 405, nil},
		{"PUT v1 interfaces", "PUT", "/v1/interfaces", "{}", 405, nil},
		{"POST v2 interfaces", "POST", "/v2/compute/network/interfaces", "{}", 405, nil},
		{"DELETE network ports", "DELETE", "/v2/compute/network/ports", "", 405, nil},
		{"POST statistics", "POST", "/v2/compute/statistics", "{}", 405, nil},
		{"POST v1 notifications", "POST", v1p + "/notifications", "{}", 405, nil},
		{"DELETE v2 notifications", "DELETE", v2p + "/notifications", "", 405, nil},
		{"POST ws notifications", "POST", "/v2/compute/notifications/ws", "", 405, nil},
	}

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := snapshotState(t, d, pid)
			r := doRequest(t, c.method, d.URL+c.path, c.body)
			checkErrorReply(t, r, c.status)
			for _, p := range c.absent {
				if _, err := os.Lstat(p); err == nil {
					t.Errorf("%s exists after a refused request", p)
				}
			}
			after := snapshotState(t, d, pid)
			before.diff(t, after)
		})
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	if d.shutdown != 0 {
		t.Fatalf("a refused shutdown called the hook %d times", d.shutdown)
	}
}

// TestSymlinkOutOfProjectIsRefused: a symbolic link inside a project
// directory that points out of it is neither read, listed nor written
// through.
func TestSymlinkOutOfProjectIsRefused(t *testing.T) {
	d := startDaemon(t, daemonOptions{})
	pid := d.createProject("links")
	d.do("POST", "/v2/compute/projects/"+pid+"/files/known.txt", "hello\n").expect(t, 201, "")
	projDir := filepath.Join(d.DataDir, "projects", pid)
	if err := os.Symlink("/etc/passwd", filepath.Join(projDir, "evil")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc", filepath.Join(projDir, "dir")); err != nil {
		t.Fatal(err)
	}
	passwd, _ := os.ReadFile("/etc/passwd")
	before := snapshotState(t, d, pid)

	for _, prefix := range []string{"/v1/projects/", "/v2/compute/projects/"} {
		for _, name := range []string{"evil", "dir/passwd", "dir"} {
			t.Run("GET "+prefix+name, func(t *testing.T) {
				r := doRequest(t, "GET", d.URL+prefix+pid+"/files/"+name, "")
				if r.Status != 403 && r.Status != 404 {
					t.Fatalf("status %d, want 403 or 404; body %q", r.Status, r.Body)
				}
				if len(passwd) > 0 && bytes.Contains(r.Body, passwd) {
					t.Fatal("the reply carries /etc/passwd")
				}
				checkErrorReply(t, r, r.Status)
			})
		}
	}

	for _, prefix := range []string{"/v1/projects/", "/v2/compute/projects/"} {
		files := d.do("GET", prefix+pid+"/files", "").expect(t, 200, "").array(t)
		for _, f := range files {
			if p := f["path"].(string); p != "known.txt" {
				t.Errorf("%s lists %q", prefix, p)
			}
		}
		if len(files) != 1 {
			t.Errorf("%s lists %v, want only known.txt", prefix, files)
		}
	}

	target := fmt.Sprintf("labd-symlink-test-%d", os.Getpid())
	for i, prefix := range []string{"/v1/projects/", "/v2/compute/projects/"} {
		name := fmt.Sprintf("%s-%d", target, i)
		t.Run("POST "+prefix+"dir/"+name, func(t *testing.T) {
			t.Cleanup(func() { os.Remove(filepath.Join("/etc", name)) })
			r := doRequest(t, "POST", d.URL+prefix+pid+"/files/dir/"+name, "pwned")
			t.Logf("upload through the symlink: %d %s", r.Status, r.Body)
			if r.Status < 400 || r.Status >= 500 {
				t.Errorf("upload through a symlink to /etc: status %d, want a 4xx refusal; body %q", r.Status, r.Body)
			} else {
				checkErrorReply(t, r, r.Status)
			}
			if _, err := os.Lstat(filepath.Join("/etc", name)); err == nil {
				t.Errorf("/etc/%s was created", name)
			}
			before.diffOutside(t, snapshotState(t, d, pid))
		})
	}
	// The refused reads and writes recorded nothing.
	snapshotState(t, d, pid).diff(t, before)
}

// checkErrorReply checks GNS3's error shape: status, a JSON content type,
// and a body of exactly {"status", "message"} with the same status and a
// message.
func checkErrorReply(t *testing.T, r *response, status int) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d; body %s", r.Status, status, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	m := r.object(t)
	keys(t, m, "message", "status")
	if m["status"] != float64(status) {
		t.Errorf("body status %v, HTTP status %d", m["status"], status)
	}
	if msg, ok := m["message"].(string); !ok || msg == "" {
		t.Errorf("message %v, want a non-empty string", m["message"])
	}
}

// stateSnapshot is what a refused request must leave unchanged.
type stateSnapshot struct {
	seq        uint64
	projectsV1 string
	projectsV2 string
	files      string
	// tree lists every path under the test's temporary root but the NATS
	// storage, with its type and size.
	tree []string
}

func snapshotState(t *testing.T, d *daemon, pid string) stateSnapshot {
	t.Helper()
	seq, err := d.Env.Store.LastSequence(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	get := func(path string) string {
		r := doRequest(t, "GET", d.URL+path, "")
		if r.Status != 200 {
			t.Fatalf("GET %s: %d %s", path, r.Status, r.Body)
		}
		return string(r.Body)
	}
	s := stateSnapshot{
		seq:        seq,
		projectsV1: get("/v1/projects"),
		projectsV2: get("/v2/compute/projects"),
		files:      get("/v2/compute/projects/" + pid + "/files"),
	}
	root := filepath.Dir(d.DataDir)
	nats := filepath.Join(d.DataDir, "nats")
	err = filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == nats {
			return fs.SkipDir
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		size := info.Size()
		if info.IsDir() {
			size = 0
		}
		s.tree = append(s.tree, fmt.Sprintf("%s %v %d", p, info.Mode().Type(), size))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// diff reports every difference between s (before) and after.
func (s stateSnapshot) diff(t *testing.T, after stateSnapshot) {
	t.Helper()
	if after.seq != s.seq {
		t.Errorf("last event sequence went from %d to %d", s.seq, after.seq)
	}
	if after.projectsV1 != s.projectsV1 {
		t.Errorf("v1 project list changed:\n%s\nto\n%s", s.projectsV1, after.projectsV1)
	}
	if after.projectsV2 != s.projectsV2 {
		t.Errorf("v2 project list changed:\n%s\nto\n%s", s.projectsV2, after.projectsV2)
	}
	if after.files != s.files {
		t.Errorf("file list changed:\n%s\nto\n%s", s.files, after.files)
	}
	s.diffOutside(t, after)
}

// diffOutside reports files that appeared or went away on disk.
func (s stateSnapshot) diffOutside(t *testing.T, after stateSnapshot) {
	t.Helper()
	for _, p := range after.tree {
		if !slices.Contains(s.tree, p) {
			t.Errorf("appeared or changed on disk: %s", p)
		}
	}
	for _, p := range s.tree {
		if !slices.Contains(after.tree, p) {
			t.Errorf("gone or changed on disk: %s", p)
		}
	}
}

// TestBodyWithinLimitIsNeverA5xx: a body the API accepts by size is
// either served or refused as the client's error, with nothing recorded;
// it never ends in a 500. The limit here is 1 MiB, NATS's default maximum
// message: a body just under it makes an event just over it.
func TestBodyWithinLimitIsNeverA5xx(t *testing.T) {
	const limit = 1 << 20
	d := startDaemon(t, daemonOptions{maxBodyBytes: limit})
	pid := d.createProject("big")
	cases := []struct{ name, method, path, body string }{
		{"v2 create, name just under the limit", "POST", "/v2/compute/projects",
			`{"name": "` + strings.Repeat("a", limit-20) + `"}`},
		{"v1 update, name just under the limit", "PUT", "/v1/projects/" + pid,
			`{"name": "` + strings.Repeat("b", limit-20) + `"}`},
		{"v2 update, variables just under the limit", "PUT", "/v2/compute/projects/" + pid,
			`{"variables": [{"name": "v", "value": "` + strings.Repeat("c", limit-50) + `"}]}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if len(c.body) > limit {
				t.Fatalf("body of %d bytes is over the limit", len(c.body))
			}
			before := snapshotState(t, d, pid)
			r := doRequest(t, c.method, d.URL+c.path, c.body)
			t.Logf("a %d-byte body: %d %.100s", len(c.body), r.Status, r.Body)
			if r.Status >= 500 {
				t.Fatalf("a %d-byte body (limit %d) answered %d %s", len(c.body), limit, r.Status, r.Body)
			}
			if r.Status >= 400 {
				checkErrorReply(t, r, r.Status)
				before.diff(t, snapshotState(t, d, pid))
			}
		})
	}
}

// TestDuplicateMembers: a body that repeats a member is either refused
// (400, nothing changed) or read as encoding/json and GNS3's Python read
// it, the last occurrence winning; never as a mix of both occurrences.
func TestDuplicateMembers(t *testing.T) {
	d := startDaemon(t, daemonOptions{})
	pid := d.createProject("orig")
	cases := []struct {
		name, method, path, body string
		status                   int            // on success
		want                     map[string]any // members of the reply, on success
	}{
		{"v1 update name then null", "PUT", "/v1/projects/" + pid, `{"name": "abc", "name": null}`, 200, map[string]any{"name": nil}},
		{"v1 update null then empty name", "PUT", "/v1/projects/" + pid, `{"name": null, "name": ""}`, 400, nil},
		{"v1 update temporary set", "PUT", "/v1/projects/" + pid, `{"temporary": true}`, 200, map[string]any{"temporary": true}},
		{"v1 update temporary null then false", "PUT", "/v1/projects/" + pid, `{"temporary": null, "temporary": false}`, 200, map[string]any{"temporary": false}},
		{"v2 create name then null", "POST", "/v2/compute/projects", `{"name": "abc", "name": null}`, 201, map[string]any{"name": nil}},
		{"v2 create null then empty name", "POST", "/v2/compute/projects", `{"name": null, "name": ""}`, 400, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := snapshotState(t, d, pid)
			r := doRequest(t, c.method, d.URL+c.path, c.body)
			if r.Status == 400 {
				checkErrorReply(t, r, 400)
				before.diff(t, snapshotState(t, d, pid))
				return
			}
			if r.Status != c.status || c.want == nil {
				t.Fatalf("%s: %d %s; want 400, or the last occurrence applied", c.body, r.Status, r.Body)
			}
			got := r.object(t)
			for k, v := range c.want {
				if got[k] != v {
					t.Errorf("%s: %q is %#v, want %#v (the last occurrence); reply %s", c.body, k, got[k], v, r.Body)
				}
			}
		})
	}
}
