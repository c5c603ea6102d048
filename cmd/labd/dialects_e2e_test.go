package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// fourAPIs reads one node through GNS3, Nova, Danube Cloud and e24cloud
// on one labd's main listener (loopback: no keys, tokens or signatures).
type fourAPIs struct {
	t        *testing.T
	url      string
	pid, id  string
	gns3Kind string
}

// states are the node's state in each API's words.
type states struct{ gns3, nova, danube, e24 string }

func (f fourAPIs) call(method, path, body string, header ...string) (int, map[string]any) {
	f.t.Helper()
	req, err := http.NewRequest(method, f.url+path, strings.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	req.Header.Set("X-Auth-Token", "e2e")
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		f.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var out map[string]any
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		f.t.Fatalf("%s %s: %v", method, path, err)
	}
	_ = json.Unmarshal(b, &out)
	return resp.StatusCode, out
}

func (f fourAPIs) states() states {
	f.t.Helper()
	var s states
	code, node := f.call("GET", "/v2/compute/projects/"+f.pid+"/"+f.gns3Kind+"/nodes/"+f.id, "")
	if code == 200 {
		s.gns3, _ = node["status"].(string)
	}
	code, srv := f.call("GET", "/v2/"+f.pid+"/servers/"+f.id, "")
	if code == 200 {
		sv, _ := srv["server"].(map[string]any)
		s.nova, _ = sv["status"].(string)
	}
	code, dn := f.call("GET", "/api/vm/"+f.id+"/status/", "")
	if code == 200 {
		res, _ := dn["result"].(map[string]any)
		s.danube, _ = res["status"].(string)
	}
	_, vm := f.call("GET", "/v2/virtual-machines/"+f.id, "")
	if vm["success"] == true {
		v, _ := vm["virtual_machine"].(map[string]any)
		s.e24, _ = v["state"].(string)
	}
	return s
}

// agree waits until the four APIs say want (an empty want: the node is
// gone from each).
func (f fourAPIs) agree(step string, want states) {
	f.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		got := f.states()
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("%s: GNS3, Nova, Danube, e24cloud say %+v; want %+v", step, got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestOneNodeFourAPIs: a VM created by e24cloud is a QEMU node of a labd
// project that GNS3, Nova and Danube Cloud read and drive, each seeing
// what the others did.
func TestOneNodeFourAPIs(t *testing.T) {
	d := startLabd(t, haltDataDir(t), "--vnc-port-range", "15900-15999", "--danube-stop-timeout", "2s", "--nova-shutdown-timeout", "2s")
	f := fourAPIs{t: t, url: d.URL, gns3Kind: "qemu"}

	_, created := f.call("PUT", "/v2/virtual-machines", `{"create_vm": {"cpus": 1, "ram": 64, "name": "four", "boot_type": "image", "os": "halt.img"}}`)
	vm, _ := created["virtual_machine"].(map[string]any)
	if created["success"] != true || vm["id"] == nil {
		t.Fatalf("e24cloud create: %v", created)
	}
	f.id = vm["id"].(string)
	var projects []map[string]any
	getJSON(t, d.URL+"/v2/compute/projects", &projects)
	for _, p := range projects {
		if p["name"] == "e24cloud" {
			f.pid = p["project_id"].(string)
		}
	}
	if f.pid == "" {
		t.Fatalf("GNS3 lists no e24cloud project: %v", projects)
	}
	running := states{"started", "ACTIVE", "running", "online"}
	stopped := states{"stopped", "SHUTOFF", "stopped", "offline"}
	f.agree("created by e24cloud", running)

	// Danube stops it (forced, streamed in one request).
	if code, out := f.call("PUT", "/api/vm/four/status/stop/", `{"force": true}`, "ES-STREAM", "es"); code != 201 || out != nil {
		// The streamed body is the code line then JSON: not one JSON value.
		t.Fatalf("Danube's streamed stop: %d %v", code, out)
	}
	f.agree("stopped by Danube", stopped)

	// Nova starts it.
	if code, b := novaCall(t, "POST", d.URL+"/v2/"+f.pid+"/servers/"+f.id+"/action", `{"os-start": null}`); code != 202 {
		t.Fatalf("Nova os-start: %d %s", code, b)
	}
	f.agree("started by Nova", running)

	// GNS3 suspends (pauses) and resumes it.
	mustCall(t, "POST", d.URL+"/v2/compute/projects/"+f.pid+"/qemu/nodes/"+f.id+"/suspend", "", 204)
	f.agree("paused by GNS3", states{"suspended", "PAUSED", "paused", "offline"})
	mustCall(t, "POST", d.URL+"/v2/compute/projects/"+f.pid+"/qemu/nodes/"+f.id+"/resume", "", 204)
	f.agree("resumed by GNS3", running)

	// e24cloud resizes it (a forced power-off, resized, started again);
	// the others see the size.
	if _, out := f.call("POST", "/v2/virtual-machines/"+f.id+"/resize", `{"cores": 2, "ram": 128, "wait_for": 0}`); out["success"] != true {
		t.Fatalf("e24cloud resize: %v", out)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, out := f.call("GET", "/v2/virtual-machines/"+f.id, "")
		v, _ := out["virtual_machine"].(map[string]any)
		if v["cores"] == 2.0 && v["ram"] == 128.0 && v["state"] == "online" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the resize never showed: %v", out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	f.agree("resized by e24cloud", running)
	if _, def := f.call("GET", "/api/vm/"+f.id+"/define/?active=true", ""); def["result"].(map[string]any)["vcpus"] != 2.0 {
		t.Fatalf("Danube's active definition after the resize: %v", def)
	}
	var node map[string]any
	getJSON(t, d.URL+"/v2/compute/projects/"+f.pid+"/qemu/nodes/"+f.id, &node)
	if node["cpus"] != 2.0 || node["ram"] != 128.0 {
		t.Fatalf("GNS3's node after the resize: cpus %v, ram %v", node["cpus"], node["ram"])
	}

	// Nova deletes it: gone from all four.
	if code, b := novaCall(t, "DELETE", d.URL+"/v2/"+f.pid+"/servers/"+f.id, ""); code != 204 {
		t.Fatalf("Nova delete: %d %s", code, b)
	}
	f.agree("deleted by Nova", states{})
}
