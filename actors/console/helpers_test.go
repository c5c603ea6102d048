package console

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// testTimeout bounds every wait in the tests; it is generous on purpose,
// the waits end as soon as their condition holds.
const testTimeout = 5 * time.Second

// eventually polls cond until it holds or testTimeout passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkNoGoroutineLeak fails the test if, after every later cleanup (the
// proxy's Close among them), more goroutines run than before it.
func checkNoGoroutineLeak(t testing.TB) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(testTimeout)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				t.Errorf("%d goroutines left, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// freeAddr returns a 127.0.0.1 TCP address nothing listens on.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func startProxy(t testing.TB, cfg Config) *Proxy {
	t.Helper()
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	p, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return p
}

// fakeTarget stands in for a process's console: a listener whose
// connections the test drives by hand. It needs no goroutine: Start's dial
// completes in the kernel's backlog before the test accepts it.
type fakeTarget struct {
	t  testing.TB
	ln *net.TCPListener
}

func newFakeTarget(t testing.TB) *fakeTarget {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return &fakeTarget{t: t, ln: ln}
}

func (f *fakeTarget) addr() string { return f.ln.Addr().String() }

// accept returns the proxy's next connection to the target.
func (f *fakeTarget) accept() net.Conn {
	f.t.Helper()
	f.ln.SetDeadline(time.Now().Add(testTimeout))
	conn, err := f.ln.Accept()
	if err != nil {
		f.t.Fatalf("target: no connection from the proxy: %v", err)
	}
	f.t.Cleanup(func() { conn.Close() })
	return conn
}

// peer is the test's end of a console connection: a telnet client, or the
// target side of the proxy. It reads only when asked, with deadlines.
type peer struct {
	t    testing.TB
	name string
	conn net.Conn
	buf  []byte // read but not yet matched
}

func newPeer(t testing.TB, name string, conn net.Conn) *peer {
	return &peer{t: t, name: name, conn: conn}
}

// dialClient connects a telnet client to p and checks its greeting: the
// negotiation, then the replay (not checked).
func dialClient(t testing.TB, name string, addr netip.AddrPort) *peer {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr.String(), testTimeout)
	if err != nil {
		t.Fatalf("%s: dial console: %v", name, err)
	}
	t.Cleanup(func() { conn.Close() })
	c := newPeer(t, name, conn)
	if got := c.readN(len(negotiation)); !bytes.Equal(got, negotiation) {
		t.Fatalf("%s: greeting = % x, want the negotiation % x", name, got, negotiation)
	}
	return c
}

func (c *peer) send(s string) {
	c.t.Helper()
	if _, err := c.conn.Write([]byte(s)); err != nil {
		c.t.Fatalf("%s: write: %v", c.name, err)
	}
}

// fill reads once more into buf.
func (c *peer) fill(deadline time.Time) error {
	c.conn.SetReadDeadline(deadline)
	var b [4096]byte
	n, err := c.conn.Read(b[:])
	c.buf = append(c.buf, b[:n]...)
	return err
}

// expect reads until want shows up and consumes everything up to its end.
func (c *peer) expect(want string) {
	c.t.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		if i := bytes.Index(c.buf, []byte(want)); i >= 0 {
			c.buf = c.buf[i+len(want):]
			return
		}
		if err := c.fill(deadline); err != nil {
			c.t.Fatalf("%s: waiting for %q: %v; got %q", c.name, want, err, c.buf)
		}
	}
}

// readN reads exactly n bytes.
func (c *peer) readN(n int) []byte {
	c.t.Helper()
	deadline := time.Now().Add(testTimeout)
	for len(c.buf) < n {
		if err := c.fill(deadline); err != nil {
			c.t.Fatalf("%s: want %d bytes: %v; got %q", c.name, n, err, c.buf)
		}
	}
	got := c.buf[:n:n]
	c.buf = c.buf[n:]
	return got
}

// expectExact reads exactly len(want) bytes and compares them.
func (c *peer) expectExact(want string) {
	c.t.Helper()
	if got := c.readN(len(want)); string(got) != want {
		c.t.Fatalf("%s: got %q, want %q", c.name, got, want)
	}
}

// expectClosed reads until the proxy ends the connection.
func (c *peer) expectClosed() {
	c.t.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		err := c.fill(deadline)
		c.buf = c.buf[:0]
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			c.t.Fatalf("%s: still open", c.name)
		}
		return // EOF or reset
	}
}

// pipeEnd is one side of a bidirectional io.Pipe pair, as a WebSocket
// console would hand Serve: no deadlines, Close interrupts it.
type pipeEnd struct {
	r *io.PipeReader
	w *io.PipeWriter
}

func (e pipeEnd) Read(b []byte) (int, error)  { return e.r.Read(b) }
func (e pipeEnd) Write(b []byte) (int, error) { return e.w.Write(b) }
func (e pipeEnd) Close() error {
	e.r.Close()
	return e.w.Close()
}

func pipePair() (proxySide, clientSide pipeEnd) {
	toProxyR, toProxyW := io.Pipe()
	toClientR, toClientW := io.Pipe()
	return pipeEnd{r: toProxyR, w: toClientW}, pipeEnd{r: toClientR, w: toProxyW}
}

func itoa(n int) string { return strconv.Itoa(n) }
