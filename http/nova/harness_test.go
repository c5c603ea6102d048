package nova_test

import (
	"bytes"
	"context"
	"crypto/des"
	"io"
	"log/slog"
	"math/bits"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gophercloud/gophercloud/v2"

	"labd/actors"
	"labd/actors/actorstest"
	"labd/actors/qemu"
	"labd/events/jetstream/jstest"
	"labd/http/nova"
	"labd/nio"
	"labd/replay"
)

// shutdownTimeout is the daemon's Nova shutdown_timeout: short, as the
// test's guest never answers the power button.
const shutdownTimeout = 3 * time.Second

// daemon is labd's actors and its Nova dialect on real parts: an embedded
// JetStream on a temporary directory, real QEMU processes, HTTP on
// 127.0.0.1.
type daemon struct {
	URL     string
	Env     *jstest.Env
	Client  *actors.Client
	Project string // a labd project with the test image in the store
	// tokens is the token table Nova reads (it may be filled in before
	// the first request).
	tokens map[string]string
	logs   *logBuffer
}

type options struct {
	tokens map[string]string
	open   bool
}

func startDaemon(t *testing.T, o options) *daemon {
	t.Helper()
	dir := t.TempDir()
	logs := &logBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("daemon log:\n%s", logs.String())
		}
	})
	env := jstest.Start(t, jstest.Options{Dir: filepath.Join(dir, "nats")})
	st, err := replay.Rehydrate(t.Context(), env.Store, "nova-test", nil)
	if err != nil {
		t.Fatal(err)
	}
	// Ranges of their own, away from other packages' tests.
	udp, err := nio.NewPool("udp", "127.0.0.1", nio.PortRange{First: 17000, Last: 17999})
	if err != nil {
		t.Fatal(err)
	}
	consoles, err := nio.NewPool("tcp", "127.0.0.1", nio.PortRange{First: 6900, Last: 6999})
	if err != nil {
		t.Fatal(err)
	}
	images := qemu.Images{Root: filepath.Join(dir, "images")}
	if err := os.MkdirAll(images.Dir(), 0o755); err != nil {
		t.Fatal(err)
	}
	img, err := os.ReadFile(filepath.Join("..", "..", "testdata", "images", "halt.img"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(images.Dir(), "halt.img"), img, 0o644); err != nil {
		t.Fatal(err)
	}
	client, err := actors.Start(actors.Config{
		ComputeID: "nova-test", Store: env.Store, ProjectsDir: filepath.Join(dir, "projects"), UDPPorts: udp,
		ConsolePorts: consoles, VNCPorts: nio.PortRange{First: 6900, Last: 6999}, Host: "127.0.0.1",
		Images: images, NodeUser: actorstest.NodeUser(t, dir), Logger: log,
	}, st)
	if err != nil {
		t.Fatal(err)
	}
	h := nova.New(nova.Config{Client: client, Images: images, Tokens: o.tokens, Open: o.open,
		ShutdownTimeout: shutdownTimeout, ComputeID: "nova-test", Root: true, Logger: log})
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		srv.Close()
		client.Stop(context.Background())
	})
	d := &daemon{URL: srv.URL, Env: env, Client: client, logs: logs, tokens: o.tokens}
	d.Project = uuid.NewString()
	if _, _, err := client.CreateProject(t.Context(), actors.CreateProject{ProjectID: d.Project, Name: "nova"}); err != nil {
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
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// lastSeq is the stream's last sequence: what a refused request must not
// move.
func (d *daemon) lastSeq(t *testing.T) uint64 {
	t.Helper()
	st, err := replay.Rehydrate(t.Context(), d.Env.Store, "nova-test", nil)
	if err != nil {
		t.Fatal(err)
	}
	return st.Seq
}

// vncLogin does the RFB 3.8 handshake with VNC authentication on addr and
// reports whether the server took password.
func vncLogin(t *testing.T, addr, password string) bool {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("VNC %s: %v", addr, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	read := func(n int) []byte {
		b := make([]byte, n)
		if _, err := io.ReadFull(conn, b); err != nil {
			t.Fatalf("VNC %s: %v", addr, err)
		}
		return b
	}
	if v := read(12); !bytes.HasPrefix(v, []byte("RFB 003.")) {
		t.Fatalf("VNC %s greets %q", addr, v)
	}
	conn.Write([]byte("RFB 003.008\n"))
	types := read(int(read(1)[0]))
	if bytes.IndexByte(types, 1) >= 0 || bytes.IndexByte(types, 2) < 0 {
		t.Fatalf("VNC %s offers security types %v, want VNC authentication (2) and not None (1)", addr, types)
	}
	conn.Write([]byte{2})
	challenge := read(16)
	// VNC's DES key is the password with each byte's bits reversed.
	key := make([]byte, 8)
	copy(key, password)
	for i := range key {
		key[i] = bits.Reverse8(key[i])
	}
	block, err := des.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	answer := make([]byte, 16)
	block.Encrypt(answer[:8], challenge[:8])
	block.Encrypt(answer[8:], challenge[8:])
	conn.Write(answer)
	return bytes.Equal(read(4), []byte{0, 0, 0, 0})
}

// logBuffer is a goroutine-safe log sink.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
