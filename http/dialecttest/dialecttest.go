// Package dialecttest starts what the VM dialects' tests drive: labd's
// actors on real parts (an embedded JetStream on a temporary directory,
// real QEMU and VPCS processes, ports on 127.0.0.1), with the test guest
// testdata/images/halt.img in the image store, and the checks the
// dialects share (the stream did not move, a VNC login).
package dialecttest

import (
	"bytes"
	"context"
	"crypto/des"
	"io"
	"log/slog"
	"math/bits"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"labd/actors"
	"labd/actors/actorstest"
	"labd/actors/qemu"
	"labd/events/jetstream/jstest"
	"labd/nio"
	"labd/replay"
)

// Image is the test guest's name in the store: a boot sector that prints
// "labd-halt ready" and halts, ignoring ACPI (a guest that never answers
// the power button).
const Image = "halt.img"

// Options are a daemon's own port ranges (each test package takes ranges
// of its own, as packages run in parallel) and its compute id.
type Options struct {
	ComputeID string
	// UDP is the range of link tunnels; Consoles that of consoles (VNC
	// included).
	UDP, Consoles nio.PortRange
	// GracefulTimeout is the core's default graceful wait, zero for
	// the core's default.
	GracefulTimeout time.Duration
}

// Daemon is labd's actors on real parts.
type Daemon struct {
	Env    *jstest.Env
	Client *actors.Client
	Images qemu.Images
	Log    *slog.Logger
	opts   Options
	logs   *LogBuffer
}

// Start starts a daemon, stopped when the test ends; its log is printed
// when the test failed.
func Start(t testing.TB, o Options) *Daemon {
	t.Helper()
	dir := t.TempDir()
	logs := &LogBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("daemon log:\n%s", logs.String())
		}
	})
	env := jstest.Start(t, jstest.Options{Dir: filepath.Join(dir, "nats")})
	st, err := replay.Rehydrate(t.Context(), env.Store, o.ComputeID, nil)
	if err != nil {
		t.Fatal(err)
	}
	udp, err := nio.NewPool("udp", "127.0.0.1", o.UDP)
	if err != nil {
		t.Fatal(err)
	}
	consoles, err := nio.NewPool("tcp", "127.0.0.1", o.Consoles)
	if err != nil {
		t.Fatal(err)
	}
	images := qemu.Images{Root: filepath.Join(dir, "images")}
	if err := os.MkdirAll(images.Dir(), 0o755); err != nil {
		t.Fatal(err)
	}
	img, err := os.ReadFile(filepath.Join(repoRoot(t), "testdata", "images", Image))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(images.Dir(), Image), img, 0o644); err != nil {
		t.Fatal(err)
	}
	client, err := actors.Start(actors.Config{
		ComputeID: o.ComputeID, Store: env.Store, ProjectsDir: filepath.Join(dir, "projects"), UDPPorts: udp,
		ConsolePorts: consoles, VNCPorts: o.Consoles, Host: "127.0.0.1",
		Images: images, NodeUser: actorstest.NodeUser(t, dir), Logger: log, GracefulTimeout: o.GracefulTimeout,
	}, st)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Stop(context.Background()) })
	return &Daemon{Env: env, Client: client, Images: images, Log: log, opts: o, logs: logs}
}

// repoRoot is the module's root, from this file's place in it.
func repoRoot(t testing.TB) string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("dialecttest: no caller information")
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Logs is what the daemon logged so far.
func (d *Daemon) Logs() string { return d.logs.String() }

// LastSeq is the stream's last sequence: what a refused request must not
// move.
func (d *Daemon) LastSeq(t *testing.T) uint64 {
	t.Helper()
	st, err := replay.Rehydrate(t.Context(), d.Env.Store, d.opts.ComputeID, nil)
	if err != nil {
		t.Fatal(err)
	}
	return st.Seq
}

// VNCLogin does the RFB 3.8 handshake with VNC authentication on addr and
// reports whether the server took password. A server that offers no VNC
// authentication fails the test.
func VNCLogin(t *testing.T, addr, password string) bool {
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

// LogBuffer is a goroutine-safe log sink.
type LogBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Send sends req and returns the answer with its whole body, failing the
// test if it could not.
func Send(t testing.TB, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	return resp, b
}
