package api_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"

	"github.com/google/uuid"
)

// fuzzBodyLimit is the body limit of the fuzzed daemons: small, so that the
// fuzzer reaches the 413 path with inputs of a cheap size.
const fuzzBodyLimit = 4096

// serve sends one request to the daemon's handler in process.
func serve(t *testing.T, d *daemon, method, path string, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequestWithContext(t.Context(), method, path, bytes.NewReader(body))
	rec := httptest.NewRecorder()
	d.Server.ServeHTTP(rec, req)
	return rec
}

// lastSeqOf reads the stream's last sequence on behalf of a fuzz iteration
// (daemon.lastSeq reports to the *testing.F, which a fuzz target must not
// touch).
func lastSeqOf(t *testing.T, d *daemon) uint64 {
	seq, err := d.Env.Store.LastSequence(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return seq
}

// checkFuzzReply checks what every reply must satisfy: no 5xx, a JSON
// content type, and GNS3's error shape for a 4xx. It returns the decoded
// body of a 2xx.
func checkFuzzReply(t *testing.T, rec *httptest.ResponseRecorder, body []byte) map[string]any {
	t.Helper()
	if rec.Code >= 500 {
		t.Fatalf("status %d for body %q: %s", rec.Code, body, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("status %d, Content-Type %q for body %q", rec.Code, ct, body)
	}
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatalf("status %d, reply %q is not a JSON object: %v", rec.Code, rec.Body, err)
	}
	if rec.Code >= 400 {
		if len(m) != 2 || m["status"] != float64(rec.Code) {
			t.Fatalf("status %d, error body %s", rec.Code, rec.Body)
		}
		if msg, ok := m["message"].(string); !ok || msg == "" {
			t.Fatalf("status %d, error body %s", rec.Code, rec.Body)
		}
		return nil
	}
	return m
}

// checkMembers checks that m has exactly the given members.
func checkMembers(t *testing.T, m map[string]any, want ...string) {
	t.Helper()
	if len(m) != len(want) {
		t.Fatalf("reply %v, want exactly the members %v", m, want)
	}
	for _, k := range want {
		if _, ok := m[k]; !ok {
			t.Fatalf("reply %v, want exactly the members %v", m, want)
		}
	}
}

// checkNameMember checks a rendered project name: null or a non-empty string.
func checkNameMember(t *testing.T, v any) {
	t.Helper()
	if v == nil {
		return
	}
	if s, ok := v.(string); !ok || s == "" {
		t.Fatalf("name %#v, want null or a non-empty string", v)
	}
}

// checkProjectID checks a rendered id: a UUID in its canonical lower-case
// form.
func checkProjectID(t *testing.T, v any) string {
	t.Helper()
	s, ok := v.(string)
	if !ok {
		t.Fatalf("project_id %#v is not a string", v)
	}
	u, err := uuid.Parse(s)
	if err != nil || u.String() != s {
		t.Fatalf("project_id %q is not a canonical UUID", s)
	}
	return s
}

func FuzzProjectCreateV2(f *testing.F) {
	d := startDaemon(f, daemonOptions{maxBodyBytes: fuzzBodyLimit})
	for _, s := range []string{
		`{"name": "a"}`,
		`{"name": null}`,
		`{"name": "lab", "project_id": "3c1be6f9-b4ba-4737-b209-63c47c23359f"}`,
		`{"name": "vars", "variables": [{"name": "a", "value": "1"}, {"name": "b"}]}`,
		`{"name": "all", "auto_close": true, "auto_open": false, "auto_start": false, "scene_width": 2000,
		  "scene_height": 1000, "zoom": 100, "show_layers": false, "snap_to_grid": true, "show_grid": false,
		  "grid_size": 75, "drawing_grid_size": 25, "show_interface_labels": false,
		  "supplier": {"logo": "l.png", "url": "https://example.com"}, "variables": null, "path": null}`,
		`{"name": "x", "project_id": "3C1BE6F9-B4BA-4737-B209-63C47C23359F"}`,
		``,
		`{`,
		`[]`,
		`{"name": ""}`,
		`{"name": 1}`,
		`{"name": "x", "path": "/tmp"}`,
		`{"name": "x", "variables": [{"name": "a", "x": 1}]}`,
		`{"name": "x", "scene_width": 1e100}`,
		`{"name": "x"} {}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		before := lastSeqOf(t, d)
		rec := serve(t, d, "POST", "/v2/compute/projects", body)
		m := checkFuzzReply(t, rec, body)
		if m == nil {
			if after := lastSeqOf(t, d); after != before {
				t.Fatalf("refused with %d, yet the stream went from %d to %d; body %q", rec.Code, before, after, body)
			}
			return
		}
		if rec.Code != http.StatusCreated {
			t.Fatalf("status %d, want 201 or a 4xx; body %q", rec.Code, body)
		}
		checkMembers(t, m, "name", "project_id", "variables")
		checkNameMember(t, m["name"])
		id := checkProjectID(t, m["project_id"])
		if v := m["variables"]; v != nil {
			vars, ok := v.([]any)
			if !ok {
				t.Fatalf("variables %#v is neither null nor an array", v)
			}
			for _, x := range vars {
				o, ok := x.(map[string]any)
				if !ok {
					t.Fatalf("variable %#v is not an object", x)
				}
				if name, ok := o["name"].(string); !ok || name == "" {
					t.Fatalf("variable %v has no name", o)
				}
				for k, val := range o {
					if _, ok := val.(string); !ok || (k != "name" && k != "value") {
						t.Fatalf("variable %v: member %q", o, k)
					}
				}
			}
		}
		// What was answered is what is now served.
		got := serve(t, d, "GET", "/v2/compute/projects/"+id, nil)
		var g map[string]any
		if got.Code != 200 || json.Unmarshal(got.Body.Bytes(), &g) != nil || !reflect.DeepEqual(g, m) {
			t.Fatalf("created %v, then GET answers %d %s", m, got.Code, got.Body)
		}
	})
}

func FuzzProjectUpdateV1(f *testing.F) {
	d := startDaemon(f, daemonOptions{maxBodyBytes: fuzzBodyLimit})
	id := d.createProject("fuzzed")
	path := "/v1/projects/" + id
	dir := d.Client.ProjectDir(id)
	for _, s := range []string{
		`{"name": "renamed"}`,
		`{"name": null}`,
		`{"temporary": true}`,
		`{"temporary": false, "name": "back"}`,
		`{"path": ` + quote(dir) + `}`,
		`{"path": ` + quote(dir+"/") + `, "temporary": null}`,
		`{}`,
		`{"path": "/tmp/elsewhere"}`,
		`{"name": ""}`,
		`{"name": 5}`,
		`{"temporary": "yes"}`,
		`{"variables": []}`,
		`[]`,
		`{"name": "x"`,
		``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		before := lastSeqOf(t, d)
		snap, err := d.Client.Project(id)
		if err != nil {
			t.Fatal(err)
		}
		rec := serve(t, d, "PUT", path, body)
		m := checkFuzzReply(t, rec, body)
		if m == nil {
			if after := lastSeqOf(t, d); after != before {
				t.Fatalf("refused with %d, yet the stream went from %d to %d; body %q", rec.Code, before, after, body)
			}
			if now, err := d.Client.Project(id); err != nil || !reflect.DeepEqual(now, snap) {
				t.Fatalf("refused with %d, yet the project changed: %+v, was %+v (%v)", rec.Code, now, snap, err)
			}
			return
		}
		if rec.Code != http.StatusOK {
			t.Fatalf("status %d, want 200 or a 4xx; body %q", rec.Code, body)
		}
		checkMembers(t, m, "location", "name", "path", "project_id", "temporary")
		checkNameMember(t, m["name"])
		if m["project_id"] != id || m["path"] != dir || m["location"] != d.Client.ProjectsDir() {
			t.Fatalf("updated project %v: id, path or location moved", m)
		}
		if _, ok := m["temporary"].(bool); !ok {
			t.Fatalf("temporary %#v is not a boolean", m["temporary"])
		}
		got := serve(t, d, "GET", path, nil)
		var g map[string]any
		if got.Code != 200 || json.Unmarshal(got.Body.Bytes(), &g) != nil || !reflect.DeepEqual(g, m) {
			t.Fatalf("updated %v, then GET answers %d %s", m, got.Code, got.Body)
		}
	})
}

// fuzzNodeUpdate fuzzes the PUT of one node: a refused body changes
// nothing, an accepted one answers the node as GET then serves it.
func fuzzNodeUpdate(f *testing.F, d *daemon, path string, seeds []string) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		before := lastSeqOf(t, d)
		was := serve(t, d, "GET", path, nil).Body.String()
		rec := serve(t, d, "PUT", path, body)
		m := checkFuzzReply(t, rec, body)
		if m == nil {
			if after := lastSeqOf(t, d); after != before {
				t.Fatalf("refused with %d, yet the stream went from %d to %d; body %q", rec.Code, before, after, body)
			}
			if now := serve(t, d, "GET", path, nil).Body.String(); now != was {
				t.Fatalf("refused with %d, yet the node changed:\n%s\nto\n%s", rec.Code, was, now)
			}
			return
		}
		if rec.Code != http.StatusOK {
			t.Fatalf("status %d, want 200 or a 4xx; body %q", rec.Code, body)
		}
		got := serve(t, d, "GET", path, nil)
		var g map[string]any
		if got.Code != 200 || json.Unmarshal(got.Body.Bytes(), &g) != nil || !reflect.DeepEqual(g, m) {
			t.Fatalf("updated %v, then GET answers %d %s", m, got.Code, got.Body)
		}
	})
}

func FuzzSwitchUpdateV2(f *testing.F) {
	d := startDaemon(f, daemonOptions{maxBodyBytes: fuzzBodyLimit})
	p := d.createProject("fuzzed")
	o := d.do("POST", "/v2/compute/projects/"+p+"/ethernet_switch/nodes", `{"name": "SW"}`).expect(f, 201, "").object(f)
	fuzzNodeUpdate(f, d, "/v2/compute/projects/"+p+"/ethernet_switch/nodes/"+o["node_id"].(string), []string{
		`{"name": "SW2"}`,
		`{"ports_mapping": [{"name": "a", "port_number": 0, "type": "access", "vlan": 10}]}`,
		`{"ports_mapping": [{"name": "a", "port_number": 3, "type": "dot1q", "vlan": 1}, {"name": "b", "port_number": 1, "type": "qinq", "vlan": 4094, "ethertype": "0x88A8"}]}`,
		`{"ports_mapping": []}`,
		`{"console_type": "telnet", "console": 5000}`,
		`{"console_type": "none", "status": "started", "node_id": "3c1be6f9-b4ba-4737-b209-63c47c23359f"}`,
		`{"ports_mapping": [{"name": "a", "port_number": 0, "type": "access", "vlan": 4095}]}`,
		`{"ports_mapping": [{"name": "a", "port_number": 0, "type": "access", "vlan": 1}, {"name": "b", "port_number": 0, "type": "access", "vlan": 1}]}`,
		`{"ports_mapping": [{"name": "a", "port_number": 0, "type": "trunk"}]}`,
		`{"ports_mapping": [{"name": "a", "port_number": 0, "type": "access", "x": 1}]}`,
		`{"ports_mapping": [null]}`,
		`{"ports_mapping": {}}`,
		`{"name": null}`,
		`[]`,
	})
}

func FuzzCloudUpdateV2(f *testing.F) {
	d := startDaemon(f, daemonOptions{maxBodyBytes: fuzzBodyLimit})
	p := d.createProject("fuzzed")
	o := d.do("POST", "/v2/compute/projects/"+p+"/cloud/nodes", `{"name": "C", "ports_mapping": []}`).expect(f, 201, "").object(f)
	fuzzNodeUpdate(f, d, "/v2/compute/projects/"+p+"/cloud/nodes/"+o["node_id"].(string), []string{
		`{"name": "C2", "remote_console_host": "h", "remote_console_port": 80, "remote_console_type": "http", "remote_console_http_path": "/"}`,
		`{"ports_mapping": [{"name": "u", "port_number": 0, "type": "udp", "lport": 20000, "rhost": "127.0.0.1", "rport": 20001}]}`,
		`{"ports_mapping": [{"name": "t", "port_number": 1, "type": "tap", "interface": "bad/name"}]}`,
		`{"ports_mapping": [{"name": "e", "port_number": 1, "type": "ethernet"}]}`,
		`{"interfaces": [{"name": "eth0", "type": "ethernet", "special": false}]}`,
		`{"remote_console_port": null}`,
		`{"remote_console_port": 0}`,
		`{"ports_mapping": [{"name": "u", "port_number": 0, "type": "udp", "lport": 1, "rhost": "", "rport": 1}]}`,
		`{"status": "stopped", "node_directory": "/x"}`,
		`{`,
	})
}
