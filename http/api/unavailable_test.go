package api_test

import (
	"strings"
	"testing"

	"labd/actors"
)

// TestUnavailableKinds: the kinds labd cannot run here have GNS3's routes;
// a create is a 409 in GNS3's shape that says what is missing (the
// driver's reason), a route naming a node a 404, never a route-not-found.
func TestUnavailableKinds(t *testing.T) {
	d := startDaemon(t, daemonOptions{})
	p := d.createProject("unavailable")
	vpc := d.createVPCS(p, "PC1")
	before := snapshotState(t, d, p)

	// GNS3 2.2's exception class of each kind's errors.
	v2Kinds := map[string]string{
		"docker": "DockerError", "dynamips": "DynamipsError", "iou": "IOUError", "virtualbox": "VirtualBoxError",
		"vmware": "VMwareError", "traceng": "TraceNGError", "frame_relay_switch": "DynamipsError",
		"atm_switch": "DynamipsError", "nat": "NodeError",
	}
	reason := func(t *testing.T, kind string) string {
		t.Helper()
		return unavailableReason(t, d, kind)
	}
	for kind, exception := range v2Kinds {
		t.Run("v2 "+kind, func(t *testing.T) {
			base := "/v2/compute/projects/" + p + "/" + kind + "/nodes"
			r := d.do("POST", base, `{"name": "N1"}`).expect(t, 409, "/v2/compute/projects/{project_id}/"+kind+"/nodes")
			m := r.object(t)
			keys(t, m, "exception", "message", "status")
			if m["status"] != float64(409) || m["exception"] != exception || m["message"] != reason(t, kind) {
				t.Fatalf("create answered %s", r.Body)
			}
			// The body is checked first, then the project, as GNS3 does.
			checkErrorReply(t, d.do("POST", base, `[]`), 400)
			checkErrorReply(t, d.do("POST", "/v2/compute/projects/"+unknownNode+"/"+kind+"/nodes", `{"name": "N1"}`), 404)
			checkErrorReply(t, d.do("POST", "/v2/compute/projects/not-a-uuid/"+kind+"/nodes", `{"name": "N1"}`), 400)
			// Node routes: no such node, whether it does not exist or is
			// another kind's.
			node := base + "/" + unknownNode
			checkErrorReply(t, d.do("PUT", node, `{}`), 404)
			checkErrorReply(t, d.do("DELETE", node, ""), 404)
			checkErrorReply(t, d.do("POST", node+"/start", ""), 404)
			checkErrorReply(t, d.do("POST", node+"/stop", ""), 404)
			checkErrorReply(t, d.do("POST", base+"/"+vpc.ID+"/start", ""), 404)
			checkErrorReply(t, d.do("POST", node+"/adapters/0/ports/0/nio", nioBody(20000, 20001, "")), 404)
			checkErrorReply(t, d.do("GET", node+"/adapters/0/ports/0/pcap", ""), 404)
			checkErrorReply(t, d.do("PUT", base+"/not-a-uuid", `{}`), 400)
			if kind != "docker" { // GNS3 2.2 has no GET of a Docker node
				checkErrorReply(t, d.do("GET", node, ""), 404)
			}
		})
	}

	// GNS3 1.5's VM segments, whose errors carry no exception.
	for seg, kind := range map[string]string{"docker/vms": "docker", "dynamips/vms": "dynamips", "iou/vms": "iou",
		"virtualbox/vms": "virtualbox", "vmware/vms": "vmware"} {
		t.Run("v1 "+kind, func(t *testing.T) {
			base := "/v1/projects/" + p + "/" + seg
			r := d.do("POST", base, `{"name": "N1"}`).expect(t, 409, "/v1/projects/{project_id}/"+seg)
			checkErrorReply(t, r, 409)
			if m := r.object(t); m["message"] != reason(t, kind) {
				t.Fatalf("create answered %s", r.Body)
			}
			checkErrorReply(t, d.do("DELETE", base+"/"+unknownNode, ""), 404)
			checkErrorReply(t, d.do("POST", base+"/"+unknownNode+"/adapters/0/ports/0/nio", nioBody(20000, 20001, "")), 404)
		})
	}

	// The compute-wide listings ask an engine labd does not have.
	for path, kind := range map[string]string{"/docker/images": "docker", "/virtualbox/vms": "virtualbox", "/vmware/vms": "vmware"} {
		r := d.do("GET", "/v2/compute"+path, "").expect(t, 409, "/v2/compute"+path)
		if m := r.object(t); m["exception"] != v2Kinds[kind] || m["message"] != reason(t, kind) {
			t.Fatalf("GET /v2/compute%s answered %s", path, r.Body)
		}
		r = d.do("GET", "/v1"+path, "").expect(t, 409, "/v1"+path)
		checkErrorReply(t, r, 409)
		if !strings.Contains(string(r.Body), reason(t, kind)) {
			t.Fatalf("GET /v1%s answered %s", path, r.Body)
		}
	}
	// The dynamips/devices segment: frame_relay_switch and atm_switch are
	// in TestDynamipsDevicesV1.
	snapshotState(t, d, p).diff(t, before)
}

// unavailableReason is the message a refusal of kind must carry: what
// actors says is missing.
func unavailableReason(t *testing.T, d *daemon, kind string) string {
	t.Helper()
	err := d.Client.Available(kind)
	if err == nil {
		t.Fatalf("%s is available here", kind)
	}
	msg, ok := actors.PublicMessage(err)
	if !ok || msg == "" {
		t.Fatalf("%s: Available gives %v, not a message for the client", kind, err)
	}
	return msg
}
