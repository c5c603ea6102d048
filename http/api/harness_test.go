package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"labd/actors"
	"labd/actors/actorstest"
	"labd/actors/qemu"
	"labd/events/jetstream"
	"labd/events/jetstream/jstest"
	"labd/http/api"
	"labd/http/dialecttest"
	"labd/http/notify"
	"labd/nio"
)

const testVersion = "2.2.59"

// daemon is the whole of labd but cmd, on real parts: an embedded
// JetStream on a temporary directory, the notification hub, the actor tree
// and the API, served over HTTP on 127.0.0.1.
type daemon struct {
	t   testing.TB
	URL string
	// Env is the embedded JetStream, nil when the daemon runs on a store
	// given in its options; Store is the store either way.
	Env     *jstest.Env
	Store   *jetstream.Store
	Client  *actors.Client
	Hub     *notify.Hub
	DataDir string
	Server  *api.Server

	mu       sync.Mutex
	shutdown int // calls of the Shutdown hook
}

type daemonOptions struct {
	udpPorts           nio.PortRange
	consolePorts       nio.PortRange
	vpcsPath           string // empty: vpcs from PATH
	allowServerControl bool
	hubRing, hubBuffer int
	maxBodyBytes       int64
	dataDir            string // reuse (restart tests); empty: a new one
	computeID          string
	pingV1, pingWS     time.Duration
	streamWriteTimeout time.Duration
	// syncAlways fsyncs every event, as labd does by default; tests leave
	// it off (a killed process loses nothing either way).
	syncAlways bool
	// qemuShutdownTimeout bounds a shutdown_signal stop; zero: labd's
	// default.
	qemuShutdownTimeout time.Duration
	// keepNodes leaves node processes running when the daemon stops, for
	// a daemon started next on the same dataDir to adopt.
	keepNodes bool
	// cloudInterfaces are the host interfaces clouds may use.
	cloudInterfaces []string
	// qemuOptions is the QEMU options policy; zero: labd's allowlist.
	qemuOptions qemu.OptionPolicy
	// authUser and authPassword require HTTP Basic when authUser is set.
	authUser, authPassword string
	// store runs the daemon on this store (a NATS cluster's) instead of
	// an embedded JetStream in dataDir.
	store *jetstream.Store
}

func startDaemon(t testing.TB, o daemonOptions) *daemon {
	t.Helper()
	if o.udpPorts == (nio.PortRange{}) {
		o.udpPorts = nio.PortRange{First: 20000, Last: 30000}
	}
	if o.consolePorts == (nio.PortRange{}) {
		o.consolePorts = nio.PortRange{First: 5000, Last: 10000}
	}
	if o.computeID == "" {
		o.computeID = "test"
	}
	dataDir := o.dataDir
	if dataDir == "" {
		dataDir = t.TempDir()
	}
	// The daemon's log is kept and shown only if the test fails.
	logs := &dialecttest.LogBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("daemon log:\n%s", logs.String())
		}
	})
	var env *jstest.Env
	store := o.store
	if store == nil {
		env = jstest.Start(t, jstest.Options{Dir: filepath.Join(dataDir, "nats"), SyncAlways: o.syncAlways})
		store = env.Store
	}
	hub := notify.New(notify.Config{Store: store, ComputeID: o.computeID, Logger: log, Ring: o.hubRing, Buffer: o.hubBuffer})
	state, err := hub.Rehydrate(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	pool, err := nio.NewPool("udp", "127.0.0.1", o.udpPorts)
	if err != nil {
		t.Fatal(err)
	}
	consoles, err := nio.NewPool("tcp", "127.0.0.1", o.consolePorts)
	if err != nil {
		t.Fatal(err)
	}
	projects := filepath.Join(dataDir, "projects")
	if err := os.MkdirAll(projects, 0o755); err != nil {
		t.Fatal(err)
	}
	client, err := actors.Start(actors.Config{
		ComputeID: o.computeID, Store: store, ProjectsDir: projects, UDPPorts: pool, ConsolePorts: consoles, VPCSPath: o.vpcsPath, Logger: log,
		Images: qemu.Images{Root: filepath.Join(dataDir, "images")}, QEMUShutdownTimeout: o.qemuShutdownTimeout,
		QEMUOptions: o.qemuOptions, NodeUser: actorstest.NodeUser(t, dataDir), KeepNodes: o.keepNodes,
		CloudInterfaces: o.cloudInterfaces,
	}, state)
	if err != nil {
		t.Fatal(err)
	}
	d := &daemon{t: t, Env: env, Store: store, Client: client, Hub: hub, DataDir: dataDir}
	d.Server = api.New(api.Config{
		Client: client, Hub: hub, Logger: log, Version: testVersion,
		ConsolePorts:       o.consolePorts,
		ConsolePortsInUse:  client.ConsolePortsInUse,
		AllowServerControl: o.allowServerControl,
		Shutdown:           func() { d.mu.Lock(); d.shutdown++; d.mu.Unlock() },
		MaxBodyBytes:       o.maxBodyBytes,
		V1PingInterval:     o.pingV1,
		WSPingInterval:     o.pingWS,
		StreamWriteTimeout: o.streamWriteTimeout,
		Images:             qemu.Images{Root: filepath.Join(dataDir, "images")},
		AuthUser:           o.authUser,
		AuthPassword:       o.authPassword,
	})
	hubCtx, stopHub := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { hub.Run(hubCtx) })
	srv := httptest.NewServer(d.Server)
	d.URL = srv.URL
	t.Cleanup(func() {
		d.Server.Close()
		srv.Close()
		client.Stop(context.Background())
		stopHub()
		wg.Wait()
	})
	return d
}

// response is a reply read in full.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

// do sends one request; body may be "" (none).
func (d *daemon) do(method, path, body string) *response {
	d.t.Helper()
	return doRequest(d.t, method, d.URL+path, body)
}

func doRequest(t testing.TB, method, url, body string) *response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	return send(t, req)
}

// send sends a request made by the caller (headers, credentials) and
// reads the reply in full.
func send(t testing.TB, req *http.Request) *response {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", req.Method, req.URL, err)
	}
	return &response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// expect checks the status and the X-Route of a reply.
func (r *response) expect(t testing.TB, status int, route string) *response {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d; body %s", r.Status, status, r.Body)
	}
	if route != "" && r.Header.Get("X-Route") != route {
		t.Fatalf("X-Route %q, want %q", r.Header.Get("X-Route"), route)
	}
	return r
}

// object decodes the body as a JSON object.
func (r *response) object(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("body %q is not a JSON object: %v", r.Body, err)
	}
	return m
}

// array decodes the body as a JSON array of objects.
func (r *response) array(t testing.TB) []map[string]any {
	t.Helper()
	var a []map[string]any
	if err := json.Unmarshal(r.Body, &a); err != nil {
		t.Fatalf("body %q is not a JSON array: %v", r.Body, err)
	}
	return a
}

// keys checks that a JSON object has exactly the given members.
func keys(t testing.TB, m map[string]any, want ...string) {
	t.Helper()
	if len(m) != len(want) {
		t.Fatalf("object has members %v, want exactly %v", sortedKeys(m), want)
	}
	for _, k := range want {
		if _, ok := m[k]; !ok {
			t.Fatalf("object has members %v, want exactly %v", sortedKeys(m), want)
		}
	}
}

func sortedKeys(m map[string]any) []string { return slices.Sorted(maps.Keys(m)) }

// lastSeq returns the event stream's last sequence.
func (d *daemon) lastSeq() uint64 {
	d.t.Helper()
	seq, err := d.Env.Store.LastSequence(d.t.Context())
	if err != nil {
		d.t.Fatal(err)
	}
	return seq
}

// createProject creates a project over v2 and returns its id, once the
// notification hub has seen the creation: a stream opened afterwards
// starts after it.
func (d *daemon) createProject(name string) string {
	d.t.Helper()
	r := d.do("POST", "/v2/compute/projects", `{"name":`+quote(name)+`}`).expect(d.t, 201, "")
	d.settle()
	return r.object(d.t)["project_id"].(string)
}

// settle waits until the notification hub has processed the whole stream.
func (d *daemon) settle() {
	d.t.Helper()
	last := d.lastSeq()
	eventually(d.t, 5*time.Second, func() error {
		if p := d.Hub.Position(); p < last {
			return fmt.Errorf("hub at %d, stream at %d", p, last)
		}
		return nil
	})
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// eventually retries f until it returns nil or the deadline passes.
func eventually(t testing.TB, within time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing after %v: %v", within, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// freeUDPRange finds n consecutive UDP ports on 127.0.0.1 that nothing
// holds now, so allocation tests know which ports to expect.
func freeUDPRange(t testing.TB, n int) nio.PortRange {
	t.Helper()
	// Spread tests over the range so parallel packages rarely collide.
	for start := 31000 + rand.IntN(200)*100; start < 65000-n; start += 101 {
		ok := true
		for p := start; p < start+n && ok; p++ {
			c, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
			if err != nil {
				ok = false
				break
			}
			c.Close()
		}
		if ok {
			return nio.PortRange{First: start, Last: start + n - 1}
		}
	}
	t.Fatal("no free UDP port range")
	return nio.PortRange{}
}
