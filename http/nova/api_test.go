package nova_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"

	"labd/http/nova"
)

// faultOf reads a Nova fault body: its name, code and message.
func faultOf(t *testing.T, body []byte) (name string, code int, msg string) {
	t.Helper()
	var f map[string]struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(body, &f); err != nil || len(f) != 1 {
		t.Fatalf("not a Nova fault: %s", body)
	}
	for name, v := range f {
		return name, v.Code, v.Message
	}
	return "", 0, ""
}

func createServer(t *testing.T, d *daemon, sc *gophercloud.ServiceClient) string {
	t.Helper()
	s, err := servers.Create(t.Context(), sc, servers.CreateOpts{Name: "halt", ImageRef: "halt.img", FlavorRef: "42", Networks: "none"}, nil).Extract()
	if err != nil {
		t.Fatal(err)
	}
	waitStatus(t, sc, s.ID, "ACTIVE")
	return s.ID
}

// The 409 table: each refusal is conflictingRequest in Nova's words, a
// 409 for gophercloud, and changes nothing.
func TestConflictTable(t *testing.T) {
	d := startDaemon(t, options{open: true})
	sc := d.compute(d.Project, "t")
	id := createServer(t, d, sc)
	refused := func(what string, call func() error, wantMsg string) {
		t.Helper()
		n, _ := d.Client.Node(d.Project, id)
		before := n.Version
		err := call()
		if !gophercloud.ResponseCodeIs(err, 409) {
			t.Fatalf("%s: %v, want a 409", what, err)
		}
		var unexpected gophercloud.ErrUnexpectedResponseCode
		if !errors.As(err, &unexpected) {
			t.Fatalf("%s: %T", what, err)
		}
		name, code, msg := faultOf(t, unexpected.Body)
		if name != "conflictingRequest" || code != 409 || msg != wantMsg {
			t.Fatalf("%s: %s %d %q, want conflictingRequest 409 %q", what, name, code, msg, wantMsg)
		}
		if n, _ := d.Client.Node(d.Project, id); n.Version != before {
			t.Fatalf("%s: the refusal recorded events (version %d -> %d)", what, before, n.Version)
		}
	}
	ctx := t.Context()
	inState := func(action, state string) string {
		return fmt.Sprintf("Cannot '%s' instance %s while it is in vm_state %s", action, id, state)
	}
	refused("os-start on ACTIVE", func() error { return servers.Start(ctx, sc, id).ExtractErr() }, inState("os-start", "active"))
	refused("unpause on ACTIVE", func() error { return servers.Unpause(ctx, sc, id).ExtractErr() }, inState("unpause", "active"))
	refused("resume on ACTIVE", func() error { return servers.Resume(ctx, sc, id).ExtractErr() }, inState("resume", "active"))
	refused("confirmResize without a resize", func() error { return servers.ConfirmResize(ctx, sc, id).ExtractErr() },
		inState("confirmResize", "active"))

	// While a graceful stop waits for a guest that never answers, every
	// action is refused with the task in flight.
	if err := servers.Stop(ctx, sc, id).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	waitTask(t, sc, id, "ACTIVE", "powering-off")
	inTask := func(action string) string {
		return fmt.Sprintf("Cannot '%s' instance %s while it is in task_state powering-off", action, id)
	}
	refused("os-stop while stopping", func() error { return servers.Stop(ctx, sc, id).ExtractErr() }, inTask("os-stop"))
	refused("pause while stopping", func() error { return servers.Pause(ctx, sc, id).ExtractErr() }, inTask("pause"))
	refused("reboot while stopping", func() error {
		return servers.Reboot(ctx, sc, id, servers.RebootOpts{Type: servers.HardReboot}).ExtractErr()
	}, inTask("reboot"))
	refused("resize while stopping", func() error {
		return servers.Resize(ctx, sc, id, servers.ResizeOpts{FlavorRef: "84"}).ExtractErr()
	}, inTask("resize"))

	waitStatus(t, sc, id, "SHUTOFF")
	refused("os-stop on SHUTOFF", func() error { return servers.Stop(ctx, sc, id).ExtractErr() }, inState("os-stop", "stopped"))
	refused("SOFT reboot on SHUTOFF", func() error {
		return servers.Reboot(ctx, sc, id, servers.RebootOpts{Type: servers.SoftReboot}).ExtractErr()
	}, inState("reboot", "stopped"))
	refused("pause on SHUTOFF", func() error { return servers.Pause(ctx, sc, id).ExtractErr() }, inState("pause", "stopped"))
	check(t, sc, id, "after the refusals", shutoff)
}

// Bad input: each the right status in Nova's fault shape, and nothing
// recorded.
func TestBadInput(t *testing.T) {
	other := uuid.NewString()
	d := startDaemon(t, options{tokens: map[string]string{"other": other}})
	d.tokens["good"] = d.Project
	sc := d.compute(d.Project, "good")
	id := createServer(t, d, sc)
	base := "/v2/" + d.Project
	before := d.LastSeq(t)
	for _, c := range []struct {
		name, method, path, token, body string
		status                          int
		fault, msg                      string
	}{
		{"unknown action", "POST", base + "/servers/" + id + "/action", "good", `{"os-fly": null}`, 400, "badRequest", "There is no such action: os-fly"},
		{"two actions", "POST", base + "/servers/" + id + "/action", "good", `{"pause": null, "unpause": null}`, 400, "badRequest", "more than one action"},
		{"no action", "POST", base + "/servers/" + id + "/action", "good", `{}`, 400, "badRequest", "no action"},
		{"malformed JSON", "POST", base + "/servers/" + id + "/action", "good", `{"pause": `, 400, "badRequest", ""},
		{"bad reboot type", "POST", base + "/servers/" + id + "/action", "good", `{"reboot": {"type": "GENTLE"}}`, 400, "badRequest", "GENTLE"},
		{"argument on os-start", "POST", base + "/servers/" + id + "/action", "good", `{"os-start": {"now": true}}`, 400, "badRequest", ""},
		{"resize to a bad flavor", "POST", base + "/servers/" + id + "/action", "good", `{"resize": {"flavorRef": "999"}}`, 400, "badRequest", "Unable to find flavor 999"},
		{"resize to its own flavor", "POST", base + "/servers/" + id + "/action", "good", `{"resize": {"flavorRef": "42"}}`, 400, "badRequest", "must change flavor"},
		{"bad flavor", "POST", base + "/servers", "good", `{"server": {"name": "x", "imageRef": "halt.img", "flavorRef": "999"}}`, 400, "badRequest", "Flavor 999 could not be found."},
		{"missing image", "POST", base + "/servers", "good", `{"server": {"name": "x", "imageRef": "nowhere.qcow2", "flavorRef": "42"}}`, 400, "badRequest", "Can not find requested image"},
		{"unknown member", "POST", base + "/servers", "good", `{"server": {"name": "x", "imageRef": "halt.img", "flavorRef": "42", "user_data": 3}}`, 400, "badRequest", ""},
		{"wrong type", "POST", base + "/servers", "good", `{"server": {"name": 7, "imageRef": "halt.img", "flavorRef": "42"}}`, 400, "badRequest", ""},
		{"no name", "POST", base + "/servers", "good", `{"server": {"imageRef": "halt.img", "flavorRef": "42"}}`, 400, "badRequest", "name"},
		{"a network", "POST", base + "/servers", "good", `{"server": {"name": "x", "imageRef": "halt.img", "flavorRef": "42", "networks": [{"uuid": "x"}]}}`, 400, "badRequest", "networks"},
		{"non-UUID project id", "GET", "/v2/not-a-project/servers", "good", "", 400, "badRequest", "Malformed request URL"},
		{"unknown project", "GET", "/v2/" + other + "/servers", "other", "", 404, "itemNotFound", "could not be found"},
		{"another project's token", "GET", "/v2/" + other + "/servers", "good", "", 400, "badRequest", "doesn't match Context's project_id"},
		{"no token", "GET", base + "/servers", "", "", 401, "unauthorized", "requires authentication"},
		{"bad token", "GET", base + "/servers", "forged", "", 401, "unauthorized", "requires authentication"},
		{"unknown server", "POST", base + "/servers/" + uuid.NewString() + "/action", "good", `{"pause": null}`, 404, "itemNotFound", "could not be found"},
		{"unknown route", "GET", base + "/os-hypervisors", "good", "", 404, "itemNotFound", ""},
		{"bad method", "PATCH", base + "/servers", "good", "", 405, "badMethod", ""},
		{"too large", "POST", base + "/servers", "good", `{"server": {"name": "` + strings.Repeat("x", 2<<20) + `"}}`, 413, "overLimit", ""},
	} {
		resp, body := d.do(t, c.method, c.path, c.token, c.body)
		if resp.StatusCode != c.status {
			t.Errorf("%s: %d %s, want %d", c.name, resp.StatusCode, body, c.status)
			continue
		}
		name, code, msg := faultOf(t, body)
		if name != c.fault || code != c.status || !strings.Contains(msg, c.msg) {
			t.Errorf("%s: %s %d %q, want %s %d containing %q", c.name, name, code, msg, c.fault, c.status, c.msg)
		}
		if resp.Header.Get("X-Openstack-Request-Id") == "" {
			t.Errorf("%s: no x-openstack-request-id", c.name)
		}
	}
	if after := d.LastSeq(t); after != before {
		t.Fatalf("bad requests recorded %d events", after-before)
	}
}

// Version documents, microversion headers, flavors, images.
func TestDiscovery(t *testing.T) {
	d := startDaemon(t, options{open: true})
	resp, body := d.do(t, "GET", "/v2.1/", "", "", "X-OpenStack-Nova-API-Version", "2.6")
	var v struct {
		Version struct {
			ID, Status, Version string
			MinVersion          string `json:"min_version"`
		} `json:"version"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(body, &v) != nil || v.Version.ID != "v2.1" || v.Version.MinVersion != "2.1" || v.Version.Version != nova.MaxVersion {
		t.Fatalf("GET /v2.1/: %d %s", resp.StatusCode, body)
	}
	if resp.Header.Get("X-OpenStack-Nova-API-Version") != "2.6" || resp.Header.Get("OpenStack-API-Version") != "compute 2.6" ||
		!strings.Contains(resp.Header.Get("Vary"), "X-OpenStack-Nova-API-Version") || !strings.HasPrefix(resp.Header.Get("X-Openstack-Request-Id"), "req-") {
		t.Fatalf("headers %v", resp.Header)
	}
	if resp, body := d.do(t, "GET", "/", "", ""); resp.StatusCode != 200 || !strings.Contains(string(body), `"versions"`) {
		t.Fatalf("GET /: %d %s", resp.StatusCode, body)
	}
	if resp, _ := d.do(t, "GET", "/v2.1/servers", "t", "", "OpenStack-API-Version", "compute 2.3"); resp.Header.Get("X-OpenStack-Nova-API-Version") != "2.3" {
		t.Fatalf("OpenStack-API-Version: compute 2.3 answered as %s", resp.Header.Get("X-OpenStack-Nova-API-Version"))
	}
	if resp, _ := d.do(t, "GET", "/v2.1/servers", "t", "", "X-OpenStack-Nova-API-Version", "latest"); resp.Header.Get("X-OpenStack-Nova-API-Version") != nova.MaxVersion {
		t.Fatalf("latest answered as %s", resp.Header.Get("X-OpenStack-Nova-API-Version"))
	}
	resp, body = d.do(t, "GET", "/v2.1/servers", "t", "", "X-OpenStack-Nova-API-Version", "2.99")
	if _, code, msg := faultOf(t, body); resp.StatusCode != 406 || code != 406 || !strings.Contains(msg, "Version 2.99 is not supported") {
		t.Fatalf("2.99: %d %s", resp.StatusCode, body)
	}
	// Remote consoles came with 2.6.
	if resp, _ := d.do(t, "POST", "/v2.1/servers/"+uuid.NewString()+"/remote-consoles", "t", `{}`, "X-OpenStack-Nova-API-Version", "2.5"); resp.StatusCode != 404 {
		t.Fatalf("remote-consoles at 2.5: %d", resp.StatusCode)
	}

	resp, body = d.do(t, "GET", "/v2/"+d.Project+"/flavors/detail", "t", "")
	var fl struct {
		Flavors []struct {
			ID    string
			RAM   int
			VCPUs int
		}
	}
	if resp.StatusCode != 200 || json.Unmarshal(body, &fl) != nil || len(fl.Flavors) != len(nova.DefaultFlavors()) || fl.Flavors[0].ID != "42" || fl.Flavors[0].RAM != 64 {
		t.Fatalf("flavors: %d %s", resp.StatusCode, body)
	}
	if resp, _ := d.do(t, "GET", "/v2/"+d.Project+"/flavors/84", "t", ""); resp.StatusCode != 200 {
		t.Fatalf("flavor 84: %d", resp.StatusCode)
	}
	resp, body = d.do(t, "GET", "/v2/"+d.Project+"/images", "t", "")
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"name":"halt.img"`) {
		t.Fatalf("images: %d %s", resp.StatusCode, body)
	}

	// The flavor and token tables refuse what they cannot take.
	for _, bad := range []string{`[]`, `[{"id": "1", "name": "a", "vcpus": 1, "ram": 64}, {"id": "1", "name": "b", "vcpus": 1, "ram": 64}]`,
		`[{"id": "1", "name": "a", "vcpus": 0, "ram": 64}]`, `[{"id": "1", "name": "a", "vcpus": 1, "ram": 64, "gpus": 1}]`,
		`[{"id": "a/b", "name": "a", "vcpus": 1, "ram": 64}]`, `{"id": "1"}`} {
		if _, err := nova.ParseFlavors(strings.NewReader(bad)); err == nil {
			t.Errorf("flavor table %s was taken", bad)
		}
	}
	if fs, err := nova.ParseFlavors(strings.NewReader(`[{"id": "lab", "name": "lab.tiny", "vcpus": 2, "ram": 96}]`)); err != nil || fs[0].RAM != 96 {
		t.Errorf("a good flavor table: %v %v", fs, err)
	}
	for _, bad := range []string{"", "tok", "tok not-a-uuid", "tok " + d.Project + " extra", "a " + d.Project + "\na " + d.Project} {
		if _, err := nova.ParseTokens(strings.NewReader(bad)); err == nil {
			t.Errorf("token table %q was taken", bad)
		}
	}
	if tk, err := nova.ParseTokens(strings.NewReader("# lab\n\ns3cret " + strings.ToUpper(d.Project) + "\n")); err != nil || tk["s3cret"] != d.Project {
		t.Errorf("a good token table: %v %v", tk, err)
	}
}
