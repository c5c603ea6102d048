package e24_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"labd/http/e24"
)

// Refusals: each is HTTP 200 with success false, its message and code,
// and nothing is recorded.
func TestRefusals(t *testing.T) {
	d := startDaemon(t)
	other := uuid.NewString()
	keys := map[string]e24.Key{"k1": {Secret: "s1", Project: d.Project}, "k2": {Secret: "s2", Project: other}}
	base := d.serve(t, e24.Config{Keys: keys})
	good := &client{base: base, key: "k1", secret: "s1"}
	id := good.create(t, "halt")
	good.waitState(t, id, "online")
	before := d.LastSeq(t)

	vm := "/v2/virtual-machines/" + id
	create := func(members string) string {
		return `{"create_vm": {"cpus": 1, "ram": 64, "name": "x", "os": "halt.img"` + members + `}}`
	}
	stale := func() time.Time { return time.Now().Add(-10 * time.Minute) }
	ahead := func() time.Time { return time.Now().Add(10 * time.Minute) }
	for _, c := range []struct {
		name               string
		c                  *client
		method, path, body string
		headers            []string
		code               int
		msg                string
	}{
		{"a bad signature", good, "GET", vm, "", []string{"Authorization", "k1:c2lnbmF0dXJl"}, 401, "signature does not match"},
		{"a wrong secret", &client{base: base, key: "k1", secret: "nope"}, "PUT", "/v2/virtual-machines", create(""), nil, 401, "signature does not match"},
		{"a signature that is not base64", good, "GET", vm, "", []string{"Authorization", "k1:***"}, 401, "signature does not match"},
		{"a stale X-Date", &client{base: base, key: "k1", secret: "s1", now: stale}, "PUT", "/v2/virtual-machines", create(""), nil, 401, "X-Date is more than 5m0s"},
		{"an X-Date ahead", &client{base: base, key: "k1", secret: "s1", now: ahead}, "POST", vm + "/poweroff", "", nil, 401, "X-Date is more than 5m0s"},
		{"no X-Date", good, "POST", vm + "/poweroff", "", []string{"X-Date", ""}, 401, "X-Date header is missing"},
		{"an X-Date that is no date", good, "POST", vm + "/poweroff", "", []string{"X-Date", "yesterday"}, 401, "not an RFC 1123 date"},
		{"an unknown key", &client{base: base, key: "k9", secret: "s1"}, "PUT", "/v2/virtual-machines", create(""), nil, 401, "unknown API key"},
		{"no signature", &client{base: base}, "GET", "/v2/virtual-machines", "", nil, 401, "Authorization header is not KEY:SIGNATURE"},
		{"a malformed body", good, "PUT", "/v2/virtual-machines", `{"create_vm": {"cpus": 1,`, nil, 400, "Invalid request body"},
		{"an unknown field", good, "PUT", "/v2/virtual-machines", create(`, "colour": "red"`), nil, 400, `unknown field "colour"`},
		{"an unknown top-level field", good, "PUT", "/v2/virtual-machines", `{"create": {}}`, nil, 400, `unknown field "create"`},
		{"no create_vm", good, "PUT", "/v2/virtual-machines", `{}`, nil, 400, "create_vm is required"},
		{"two JSON values", good, "PUT", "/v2/virtual-machines", create("") + " {}", nil, 400, "more than one JSON value"},
		{"too many cpus", good, "PUT", "/v2/virtual-machines", `{"create_vm": {"cpus": 1000, "ram": 64, "name": "x", "os": "halt.img"}}`, nil, 400, "cpus 1000 is out of range 1..255"},
		{"too little ram", good, "PUT", "/v2/virtual-machines", `{"create_vm": {"cpus": 1, "ram": 8, "name": "x", "os": "halt.img"}}`, nil, 400, "ram 8 is out of range"},
		{"cpus as a string", good, "PUT", "/v2/virtual-machines", `{"create_vm": {"cpus": "1", "ram": 64, "name": "x", "os": "halt.img"}}`, nil, 400, "Invalid request body"},
		{"fractional cpus", good, "PUT", "/v2/virtual-machines", `{"create_vm": {"cpus": 1.5, "ram": 64, "name": "x", "os": "halt.img"}}`, nil, 400, "Invalid request body"},
		{"no name", good, "PUT", "/v2/virtual-machines", `{"create_vm": {"cpus": 1, "ram": 64, "os": "halt.img"}}`, nil, 400, "name must have"},
		{"an unknown image", good, "PUT", "/v2/virtual-machines", `{"create_vm": {"cpus": 1, "ram": 64, "name": "x", "os": "nope.img"}}`, nil, 400, "system image nope.img does not exist"},
		{"an os that is an object", good, "PUT", "/v2/virtual-machines", `{"create_vm": {"cpus": 1, "ram": 64, "name": "x", "os": {}}}`, nil, 400, "string or an integer"},
		{"an unknown boot type", good, "PUT", "/v2/virtual-machines", create(`, "boot_type": "pxe"`), nil, 400, `boot_type "pxe"`},
		{"cdrom boot without an ISO", good, "PUT", "/v2/virtual-machines", create(`, "boot_type": "cdrom"`), nil, 400, "cdrom is required"},
		{"an unknown zone", good, "PUT", "/v2/virtual-machines", create(`, "zone_id": "24e12e20-0851-5354-e2c3-04b16c4c9c45"`), nil, 400, "compute zone"},
		{"a body over 1 MiB", good, "PUT", "/v2/virtual-machines", create(`, "user_data": "` + strings.Repeat("x", 1<<20) + `"`), nil, 413, "larger than"},
		{"a refused state", good, "POST", vm + "/poweron", "", nil, 409, "Cannot poweron virtual machine " + id + " while it is online"},
		{"a negative wait_for", good, "POST", vm + "/shutdown", `{"wait_for": -1}`, nil, 400, "wait_for -1 is out of range"},
		{"a wait_for string", good, "POST", vm + "/shutdown", `{"wait_for": "1"}`, nil, 400, "Invalid request body"},
		{"an argument poweron has not", good, "POST", vm + "/poweron", `{"force": true}`, nil, 400, `unknown field "force"`},
		{"a resize of nothing", good, "POST", vm + "/resize", `{"wait_for": 1}`, nil, 400, "give cores, ram or both"},
		{"a resize to 0 cores", good, "POST", vm + "/resize", `{"cores": 0}`, nil, 400, "cores 0 is out of range"},
		{"an empty name", good, "POST", vm + "/rename", `{"name": ""}`, nil, 400, "name must have"},
		{"a name with a control character", good, "POST", vm + "/rename", `{"name": "a\u0007b"}`, nil, 400, "control character"},
		{"deleteResources 2", good, "DELETE", vm, `{"deleteResources": 2}`, nil, 400, "deleteResources must be 0 or 1"},
		{"an unknown machine", good, "GET", "/v2/virtual-machines/" + uuid.NewString(), "", nil, 404, "not found"},
		{"an unknown machine's poweroff", good, "POST", "/v2/virtual-machines/" + uuid.NewString() + "/poweroff", "", nil, 404, "not found"},
		{"another key's machine", &client{base: base, key: "k2", secret: "s2"}, "POST", vm + "/poweroff", "", nil, 404, "not found"},
		{"another key's delete", &client{base: base, key: "k2", secret: "s2"}, "DELETE", vm, "", nil, 404, "not found"},
		{"an unknown action", good, "POST", vm + "/fly", "", nil, 404, "no such call"},
		{"an unknown route", good, "GET", vm + "/console/x", "", nil, 404, "no such call"},
		{"a trailing slash", good, "GET", "/v2/virtual-machines/", "", nil, 404, "no such call"},
		{"a method the route has not", good, "PATCH", "/v2/virtual-machines", "", nil, 405, "not allowed"},
		{"OPTIONS", good, "OPTIONS", vm, "", nil, 405, "not allowed"},
		{"a rebound host name", good, "GET", "/v2/virtual-machines", "", []string{"Host", "evil.example"}, 403, "is not an address of this server"},
	} {
		env := c.c.do(t, c.method, c.path, c.body, c.headers...)
		if env.Success || env.Error.Code != c.code || !strings.Contains(env.Message, c.msg) {
			t.Errorf("%s: success %v code %d %q; want false, %d and %q", c.name, env.Success, env.Error.Code, env.Message, c.code, c.msg)
		}
	}
	if after := d.LastSeq(t); after != before {
		t.Fatalf("the refusals recorded events: the stream went from %d to %d", before, after)
	}
	// The other key sees a list of its own: nothing.
	if list := (&client{base: base, key: "k2", secret: "s2"}).must(t, "GET", "/v2/virtual-machines", "").VirtualMachines; len(list) != 0 {
		t.Fatalf("the other key's project lists %+v", list)
	}
	// The image can also be given by its id, and key_id as a string.
	imageID := uuid.NewSHA1(uuid.NameSpaceURL, []byte("labd-image:halt.img")).String()
	env := good.must(t, "PUT", "/v2/virtual-machines", `{"create_vm": {"cpus": 1, "ram": 64, "name": "by-id", "os": "`+imageID+`", "key_id": "7"}}`)
	if len(env.VirtualMachine) == 0 {
		t.Fatal("no machine")
	}
}

// Without a key table: open (labd on loopback) the calls need no
// signature and act on the default project, created by the first create;
// closed, every call is refused.
func TestOpenAndClosed(t *testing.T) {
	d := startDaemon(t)
	open := &client{base: d.serve(t, e24.Config{Open: true})}
	if list := open.must(t, "GET", "/v2/virtual-machines", "").VirtualMachines; len(list) != 0 {
		t.Fatalf("the open dialect lists %+v before any create", list)
	}
	project := uuid.NewSHA1(uuid.NameSpaceOID, []byte("labd-e24:e24-test")).String()
	if _, err := d.Client.Project(project); err == nil {
		t.Fatal("the default project exists before the first create")
	}
	id := open.create(t, "open")
	p, err := d.Client.Project(project)
	if err != nil || p.Name != "e24cloud" {
		t.Fatalf("the default project: %+v, %v", p, err)
	}
	vm := open.waitState(t, id, "online")
	if vm.Owner != (named{ID: project, Name: "e24cloud"}) {
		t.Fatalf("owner %+v", vm.Owner)
	}
	open.must(t, "DELETE", "/v2/virtual-machines/"+id, `{"deleteResources": 0}`)
	if _, err := d.Client.Node(project, id); err == nil {
		t.Fatal("deleteResources 0 left the node")
	}

	before := d.LastSeq(t)
	for _, cfg := range []e24.Config{{}, {Keys: map[string]e24.Key{"k1": {Secret: "s1", Project: d.Project}}, Open: true}} {
		closed := &client{base: d.serve(t, cfg)}
		for _, call := range [][3]string{
			{"GET", "/v2/virtual-machines", ""},
			{"PUT", "/v2/virtual-machines", `{"create_vm": {"cpus": 1, "ram": 64, "name": "x", "os": "halt.img"}}`},
		} {
			if env := closed.do(t, call[0], call[1], call[2]); env.Success || env.Error.Code != 401 {
				t.Fatalf("open %v, %d keys: %s %s: %+v, want a 401 refusal", cfg.Open, len(cfg.Keys), call[0], call[1], env)
			}
		}
	}
	if after := d.LastSeq(t); after != before {
		t.Fatalf("the refusals recorded events: %d to %d", before, after)
	}
}
