package nova_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gophercloud/gophercloud/v2"

	"labd/actors"
	"labd/http/dialecttest"
	"labd/http/nova"
	"labd/nio"
)

// shutdownTimeout is the daemon's Nova shutdown_timeout: short, as the
// test's guest never answers the power button.
const shutdownTimeout = 3 * time.Second

// daemon is labd's actors and its Nova dialect on real parts (see
// dialecttest).
type daemon struct {
	*dialecttest.Daemon
	URL     string
	Project string // a labd project with the test image in the store
	// tokens is the token table Nova reads (it may be filled in before
	// the first request).
	tokens map[string]string
}

type options struct {
	tokens map[string]string
	open   bool
}

func startDaemon(t *testing.T, o options) *daemon {
	t.Helper()
	// Ranges of their own, away from other packages' tests.
	base := dialecttest.Start(t, dialecttest.Options{ComputeID: "nova-test",
		UDP: nio.PortRange{First: 17000, Last: 17999}, Consoles: nio.PortRange{First: 6900, Last: 6999}})
	h := nova.New(nova.Config{Client: base.Client, Images: base.Images, Tokens: o.tokens, Open: o.open,
		ShutdownTimeout: shutdownTimeout, ComputeID: "nova-test", Root: true, Logger: base.Log})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	d := &daemon{Daemon: base, URL: srv.URL, tokens: o.tokens}
	d.Project = uuid.NewString()
	if _, _, err := d.Client.CreateProject(t.Context(), actors.CreateProject{ProjectID: d.Project, Name: "nova"}); err != nil {
		t.Fatal(err)
	}
	return d
}

// compute is a gophercloud client of the daemon's provider-style
// endpoint for project, with token.
func (d *daemon) compute(project, token string) *gophercloud.ServiceClient {
	pc := &gophercloud.ProviderClient{TokenID: token}
	sc := &gophercloud.ServiceClient{ProviderClient: pc, Endpoint: d.URL + "/v2/" + project + "/", Type: "compute"}
	sc.Microversion = "2.6"
	return sc
}

// do is a raw request, for what gophercloud cannot send.
func (d *daemon) do(t *testing.T, method, path, token, body string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, d.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("X-Auth-Token", token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, b := dialecttest.Send(t, req)
	return resp, b
}
