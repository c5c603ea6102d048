package e24_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/google/uuid"

	"labd/actors"
	"labd/http/dialecttest"
	"labd/http/e24"
	"labd/nio"
)

// shutdownTimeout is the dialect's default guest wait: short, as the
// test's guest never answers the power button.
const shutdownTimeout = 2 * time.Second

// daemon is labd's actors on real parts (see dialecttest) with a labd
// project for the key table.
type daemon struct {
	*dialecttest.Daemon
	Project string
}

func startDaemon(t *testing.T) *daemon {
	t.Helper()
	// Ranges of their own, away from other packages' tests.
	base := dialecttest.Start(t, dialecttest.Options{ComputeID: "e24-test",
		UDP: nio.PortRange{First: 18000, Last: 18999}, Consoles: nio.PortRange{First: 7100, Last: 7199}})
	d := &daemon{Daemon: base, Project: uuid.NewString()}
	if _, _, err := d.Client.CreateProject(t.Context(), actors.CreateProject{ProjectID: d.Project, Name: "e24 lab"}); err != nil {
		t.Fatal(err)
	}
	return d
}

// serve serves a dialect of cfg (the daemon's client, images, compute id
// and the test's timeout filled in) and returns its URL.
func (d *daemon) serve(t *testing.T, cfg e24.Config) string {
	t.Helper()
	cfg.Client, cfg.Images, cfg.ComputeID, cfg.Logger = d.Client, d.Images, "e24-test", d.Log
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = shutdownTimeout
	}
	srv := httptest.NewServer(e24.New(cfg))
	t.Cleanup(srv.Close)
	return srv.URL
}

// client signs its requests as e24cloud's clients do (e24py, the
// docker-machine driver): X-Date in RFC 1123 GMT, and Authorization
// KEY:base64(HMAC-SHA256(secret, method\nhost\nX-Date\npath\nbody)).
// An empty key sends no signature.
type client struct {
	base        string
	key, secret string
	// now is the clock of X-Date; nil is time.Now.
	now func() time.Time
}

// envelope is a reply of the API.
type envelope struct {
	Success bool   `json:"success"`
	Message string `json:"message"`
	Error   *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	VirtualMachine  json.RawMessage `json:"virtual_machine"`
	VirtualMachines []vmDoc         `json:"virtual_machines"`
	Console         *struct {
		Host     string `json:"host"`
		Port     int    `json:"port"`
		Password string `json:"password"`
	} `json:"console"`
}

type named struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// vmDoc is a machine as the clients decode it.
type vmDoc struct {
	ID              string  `json:"id"`
	Label           string  `json:"label"`
	Cores           int     `json:"cores"`
	RAM             int     `json:"ram"`
	Adm             bool    `json:"adm"`
	System          named   `json:"system"`
	CostPerHour     float64 `json:"cost_per_hour"`
	State           string  `json:"state"`
	TransferUsed    float64 `json:"transfer_used"`
	Owner           named   `json:"owner"`
	PublicInterface struct {
		Primary string            `json:"primary_ip_ipv4address"`
		IPv4    []json.RawMessage `json:"ipv4_addresses"`
	} `json:"public_interface"`
	StorageVolumes []struct {
		ID         string `json:"id"`
		Size       int    `json:"size"`
		SystemDisk bool   `json:"system_disk"`
	} `json:"storage_volumes"`
	Zone     named             `json:"zone"`
	Networks []json.RawMessage `json:"networks"`
	Groups   []json.RawMessage `json:"groups"`
}

// do sends a signed request; headers are name, value pairs set after
// the signature (to spoil it).
func (c *client) do(t *testing.T, method, path, body string, headers ...string) envelope {
	t.Helper()
	req, err := http.NewRequest(method, c.base+path, bytes.NewBufferString(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if c.key != "" {
		now := time.Now
		if c.now != nil {
			now = c.now
		}
		xdate := now().UTC().Format("Mon, 02 Jan 2006 15:04:05 GMT")
		u, err := url.Parse(c.base + path)
		if err != nil {
			t.Fatal(err)
		}
		p := u.EscapedPath()
		if u.RawQuery != "" {
			p += "?" + u.RawQuery
		}
		m := hmac.New(sha256.New, []byte(c.secret))
		m.Write([]byte(method + "\n" + u.Host + "\n" + xdate + "\n" + p + "\n" + body))
		req.Header.Set("X-Date", xdate)
		req.Header.Set("Authorization", c.key+":"+base64.StdEncoding.EncodeToString(m.Sum(nil)))
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i] == "Host" {
			req.Host = headers[i+1]
			continue
		}
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, b := dialecttest.Send(t, req)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: HTTP %d, want 200 always: %s", method, path, resp.StatusCode, b)
	}
	var env envelope
	if err := json.Unmarshal(b, &env); err != nil {
		t.Fatalf("%s %s: not an envelope: %v: %s", method, path, err, b)
	}
	if !env.Success && (env.Message == "" || env.Error == nil || env.Error.Message != env.Message) {
		t.Fatalf("%s %s: a refusal without its message: %s", method, path, b)
	}
	return env
}

// must sends a request that must succeed.
func (c *client) must(t *testing.T, method, path, body string) envelope {
	t.Helper()
	env := c.do(t, method, path, body)
	if !env.Success {
		t.Fatalf("%s %s %s: refused: %s", method, path, body, env.Message)
	}
	return env
}

// get reads a machine; ok false when the API refuses.
func (c *client) get(t *testing.T, id string) (vmDoc, bool) {
	t.Helper()
	env := c.do(t, "GET", "/v2/virtual-machines/"+id, "")
	if !env.Success {
		return vmDoc{}, false
	}
	var vm vmDoc
	if err := json.Unmarshal(env.VirtualMachine, &vm); err != nil {
		t.Fatalf("virtual_machine is not an object: %v: %s", err, env.VirtualMachine)
	}
	return vm, true
}

// waitFor polls a machine until cond holds, and returns it.
func (c *client) waitFor(t *testing.T, id, what string, cond func(vmDoc) bool) vmDoc {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		vm, ok := c.get(t, id)
		if !ok {
			t.Fatalf("waiting for %s: machine %s is not found", what, id)
		}
		if cond(vm) {
			return vm
		}
		if time.Now().After(deadline) {
			t.Fatalf("machine %s never was %s: %+v", id, what, vm)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (c *client) waitState(t *testing.T, id, state string) vmDoc {
	t.Helper()
	return c.waitFor(t, id, state, func(vm vmDoc) bool { return vm.State == state })
}

// create makes a machine of halt.img and returns its id.
func (c *client) create(t *testing.T, name string) string {
	t.Helper()
	env := c.must(t, "PUT", "/v2/virtual-machines",
		`{"create_vm": {"cpus": 1, "ram": 64, "name": "`+name+`", "boot_type": "image", "os": "`+dialecttest.Image+`"}}`)
	var created struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(env.VirtualMachine, &created); err != nil || created.ID == "" {
		t.Fatalf("create answered %s", env.VirtualMachine)
	}
	return created.ID
}
