package console

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestFanOutToEveryClient(t *testing.T) {
	checkNoGoroutineLeak(t)
	target := newFakeTarget(t)
	p := startProxy(t, Config{Target: target.addr()})
	tc := newPeer(t, "target", target.accept())

	var clients []*peer
	for i := range 3 {
		clients = append(clients, dialClient(t, "client"+itoa(i), p.Addr()))
	}
	eventually(t, "3 clients", func() bool { return p.Clients() == 3 })

	// Output passes unchanged, telnet bytes of the target included.
	out := "VPCS> \xff\xfb\x01show\r\n"
	if _, err := tc.conn.Write([]byte(out)); err != nil {
		t.Fatal(err)
	}
	for _, c := range clients {
		c.expectExact(out)
	}
}

func TestInputFromTwoClientsReachesTargetIntact(t *testing.T) {
	target := newFakeTarget(t)
	p := startProxy(t, Config{Target: target.addr()})
	tc := newPeer(t, "target", target.accept())
	a := dialClient(t, "a", p.Addr())
	b := dialClient(t, "b", p.Addr())

	// Both type at once, one short line per write, as a person would.
	const lines = 100
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for _, c := range []*peer{a, b} {
		wg.Go(func() {
			for i := range lines {
				if _, err := fmt.Fprintf(c.conn, "%s-%03d\n", c.name, i); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	got := tc.readN(2 * lines * len("a-000\n"))
	var fromA, fromB []string
	for line := range strings.Lines(string(got)) {
		switch {
		case strings.HasPrefix(line, "a-"):
			fromA = append(fromA, line)
		case strings.HasPrefix(line, "b-"):
			fromB = append(fromB, line)
		default:
			t.Fatalf("target got a mangled line %q in %q", line, got)
		}
	}
	for name, seq := range map[string][]string{"a": fromA, "b": fromB} {
		var want []string
		for i := range lines {
			want = append(want, fmt.Sprintf("%s-%03d\n", name, i))
		}
		if !slices.Equal(seq, want) {
			t.Errorf("lines from %s reached the target as %q", name, seq)
		}
	}
}

func TestTelnetCommandsAreStrippedFromInput(t *testing.T) {
	target := newFakeTarget(t)
	p := startProxy(t, Config{Target: target.addr()})
	tc := newPeer(t, "target", target.accept())
	c := dialClient(t, "client", p.Addr())

	// A real telnet client's answers to our negotiation, a window size
	// subnegotiation, then a line with a literal 0xFF.
	input := "\xff\xfd\x01\xff\xfd\x03\xff\xfb\x00\xff\xfd\x00\xff\xfb\x1f" +
		"\xff\xfa\x1f\x00\x50\x00\x18\xff\xf0" +
		"echo \xff\xffx\r\n"
	// Byte by byte: the proxy's reads cut the commands in arbitrary places
	// (TestServeOverPipe forces one byte per read).
	c.conn.(*net.TCPConn).SetNoDelay(true)
	for i := range len(input) {
		c.send(input[i : i+1])
	}
	tc.expectExact("echo \xffx\r\n")
}

func TestSlowClientIsDroppedOthersKeepReceiving(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  Config
	}{
		{"queue full", Config{writeTimeout: time.Minute}},
		{"write stalled", Config{writeTimeout: 200 * time.Millisecond, queueBytes: 1 << 30}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			checkNoGoroutineLeak(t)
			target := newFakeTarget(t)
			cfg := tt.cfg
			cfg.Target = target.addr()
			p := startProxy(t, cfg)
			tc := target.accept()
			slow := dialClient(t, "slow", p.Addr()) // never reads again
			fast := dialClient(t, "fast", p.Addr())
			eventually(t, "2 clients", func() bool { return p.Clients() == 2 })

			// The fast client reads on its own goroutine and reports how
			// much it got; the target sends a chunk only once the fast
			// client has all before it, so only the slow one falls behind.
			var received atomic.Int64
			readErr := make(chan error, 1)
			go func() {
				buf := make([]byte, 64<<10)
				for {
					n, err := fast.conn.Read(buf)
					received.Add(int64(n))
					if err != nil {
						readErr <- err
						return
					}
				}
			}()
			chunk := bytes.Repeat([]byte("0123456789abcdef"), 2<<10) // 32 KiB
			var sent int64
			deadline := time.Now().Add(testTimeout)
			for p.Clients() == 2 {
				if time.Now().After(deadline) {
					t.Fatalf("slow client still connected after %d bytes", sent)
				}
				if _, err := tc.Write(chunk); err != nil {
					t.Fatal(err)
				}
				sent += int64(len(chunk))
				eventually(t, "fast client keeping up", func() bool { return received.Load() >= sent })
			}
			t.Logf("slow client dropped after %d KiB", sent>>10)

			// The fast client still gets everything after the drop.
			for range 4 {
				if _, err := tc.Write(chunk); err != nil {
					t.Fatal(err)
				}
				sent += int64(len(chunk))
			}
			eventually(t, "fast client receiving after the drop", func() bool { return received.Load() >= sent })
			select {
			case err := <-readErr:
				t.Fatalf("fast client lost its connection: %v", err)
			default:
			}
			if got := p.Clients(); got != 1 {
				t.Errorf("Clients() = %d, want 1", got)
			}
			slow.expectClosed()
			fast.conn.Close()
		})
	}
}

func TestListenPortInUse(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	target := newFakeTarget(t)
	p, err := Start(context.Background(), Config{Listen: taken.Addr().String(), Target: target.addr()})
	if !errors.Is(err, ErrPortInUse) {
		if p != nil {
			p.Close()
		}
		t.Fatalf("Start on a taken port: err = %v, want ErrPortInUse", err)
	}
}

func TestStartFailsWhenTargetNeverComesUp(t *testing.T) {
	checkNoGoroutineLeak(t)
	listen := freeAddr(t)
	const dialTimeout = 300 * time.Millisecond
	start := time.Now()
	p, err := Start(context.Background(), Config{Listen: listen, Target: freeAddr(t), DialTimeout: dialTimeout})
	took := time.Since(start)
	if err == nil {
		p.Close()
		t.Fatal("Start succeeded without a target")
	}
	t.Logf("Start failed after %v: %v", took, err)
	if took < dialTimeout || took > dialTimeout+2*time.Second {
		t.Errorf("Start gave up after %v, want about %v", took, dialTimeout)
	}
	// Nothing is left bound.
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatalf("public port still bound after a failed Start: %v", err)
	}
	ln.Close()
}

func TestStartWaitsForTargetToOpen(t *testing.T) {
	addr := freeAddr(t)
	opened := make(chan *net.TCPListener, 1)
	time.AfterFunc(200*time.Millisecond, func() {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			opened <- nil
			return
		}
		opened <- ln.(*net.TCPListener)
	})
	startProxy(t, Config{Target: addr, DialTimeout: testTimeout})
	ln := <-opened
	if ln == nil {
		t.Fatal("could not open the target late")
	}
	ln.Close()
}

func TestStartGivesUpWhenContextEnds(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	p, err := Start(ctx, Config{Listen: "127.0.0.1:0", Target: freeAddr(t), DialTimeout: time.Minute})
	if err == nil {
		p.Close()
		t.Fatal("Start succeeded without a target")
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Start took %v after its context ended", took)
	}
}

func TestResetReconnectsAndClientsStay(t *testing.T) {
	checkNoGoroutineLeak(t)
	target := newFakeTarget(t)
	p := startProxy(t, Config{Target: target.addr()})
	first := newPeer(t, "target#1", target.accept())
	c := dialClient(t, "client", p.Addr())
	eventually(t, "client registered", func() bool { return p.Clients() == 1 })

	if err := p.Reset(); err != nil {
		t.Fatalf("Reset: %v", err)
	}
	second := newPeer(t, "target#2", target.accept())
	first.expectClosed()
	if got := p.Clients(); got != 1 {
		t.Fatalf("Clients() after Reset = %d, want 1", got)
	}

	c.send("after reset\r")
	second.expectExact("after reset\r")
	if _, err := second.conn.Write([]byte("VPCS> ")); err != nil {
		t.Fatal(err)
	}
	c.expectExact("VPCS> ") // and no disconnect notice before it
}

func TestResetFailsWhenTargetIsGone(t *testing.T) {
	target := newFakeTarget(t)
	p := startProxy(t, Config{Target: target.addr(), DialTimeout: 200 * time.Millisecond})
	target.accept()
	target.ln.Close()
	if err := p.Reset(); err == nil {
		t.Fatal("Reset succeeded with no target listening")
	}
}

func TestTargetLostClientsStayAndProxyReconnects(t *testing.T) {
	checkNoGoroutineLeak(t)
	target := newFakeTarget(t)
	p := startProxy(t, Config{Target: target.addr()})
	first := target.accept()
	a := dialClient(t, "a", p.Addr())
	b := dialClient(t, "b", p.Addr())
	eventually(t, "2 clients", func() bool { return p.Clients() == 2 })

	first.Close() // the process died or closed its console
	a.expectExact(string(disconnectedNotice))
	b.expectExact(string(disconnectedNotice))
	second := newPeer(t, "target#2", target.accept())
	if got := p.Clients(); got != 2 {
		t.Fatalf("Clients() = %d after the target came back, want 2", got)
	}

	if _, err := second.conn.Write([]byte("back\r\n")); err != nil {
		t.Fatal(err)
	}
	a.expectExact("back\r\n")
	b.expectExact("back\r\n")
	a.send("hello again\n")
	second.expectExact("hello again\n")
}

func TestClientReconnectsManyTimes(t *testing.T) {
	checkNoGoroutineLeak(t)
	target := newFakeTarget(t)
	p := startProxy(t, Config{Target: target.addr()})
	tc := newPeer(t, "target", target.accept())
	stay := dialClient(t, "stay", p.Addr())

	for i := range 10 {
		c := dialClient(t, "client", p.Addr())
		eventually(t, "2 clients", func() bool { return p.Clients() == 2 })
		line := "line " + itoa(i) + "\r\n"
		c.send(line)
		tc.expectExact(line)
		if _, err := tc.conn.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
		c.expect(line) // after the replay of recent output
		stay.expectExact(line)
		c.conn.Close()
		eventually(t, "client gone", func() bool { return p.Clients() == 1 })
	}
}

func TestNewClientGetsOnlyRecentOutput(t *testing.T) {
	target := newFakeTarget(t)
	p := startProxy(t, Config{Target: target.addr()})
	tc := target.accept()
	early := dialClient(t, "early", p.Addr())
	eventually(t, "client registered", func() bool { return p.Clients() == 1 })

	var out []byte
	for i := range 400 {
		out = fmt.Appendf(out, "boot message %03d\r\n", i)
	}
	out = append(out, "login: "...)
	if _, err := tc.Write(out); err != nil {
		t.Fatal(err)
	}
	early.expectExact(string(out)) // the output is all in the proxy now

	late := dialClient(t, "late", p.Addr())
	for late.fill(time.Now().Add(200*time.Millisecond)) == nil {
	}
	replay := late.buf
	if len(replay) > tailSize || !bytes.HasSuffix(out, replay) || !bytes.HasSuffix(replay, []byte("\r\nlogin: ")) {
		t.Fatalf("late client got %d bytes %q, want at most %d ending with the prompt", len(replay), replay, tailSize)
	}
	if !bytes.HasPrefix(replay, []byte("boot message ")) {
		t.Errorf("replay %q does not start at a line", replay[:20])
	}
}

func TestServeOverPipe(t *testing.T) {
	checkNoGoroutineLeak(t)
	target := newFakeTarget(t)
	p := startProxy(t, Config{Target: target.addr()})
	tc := newPeer(t, "target", target.accept())
	tcpClient := dialClient(t, "tcp", p.Addr())

	proxySide, ws := pipePair()
	t.Cleanup(func() { ws.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- p.Serve(ctx, proxySide) }()

	// The pipe client reads on its own goroutine: a pipe has no deadline.
	got := make(chan []byte, 16)
	go func() {
		defer close(got)
		for {
			buf := make([]byte, 4096)
			n, err := ws.Read(buf)
			if n > 0 {
				got <- buf[:n]
			}
			if err != nil {
				return
			}
		}
	}()
	var wsBuf []byte
	wsExpect := func(want string) {
		t.Helper()
		timeout := time.After(testTimeout)
		for !bytes.Contains(wsBuf, []byte(want)) {
			select {
			case b, ok := <-got:
				if !ok {
					t.Fatalf("pipe client closed waiting for %q; got %q", want, wsBuf)
				}
				wsBuf = append(wsBuf, b...)
			case <-timeout:
				t.Fatalf("pipe client: waiting for %q; got %q", want, wsBuf)
			}
		}
		wsBuf = wsBuf[bytes.Index(wsBuf, []byte(want))+len(want):]
	}

	wsExpect(string(negotiation))
	eventually(t, "2 clients", func() bool { return p.Clients() == 2 })
	if _, err := tc.conn.Write([]byte("output\r\n")); err != nil {
		t.Fatal(err)
	}
	wsExpect("output\r\n")
	tcpClient.expectExact("output\r\n")

	// Every pipe Write is one proxy Read, so this splits every telnet
	// command across reads.
	input := "\xff\xfd\x01\xff\xfa\x1f\x00\x50\x00\x18\xff\xf0ip\xff\xff\r"
	for i := range len(input) {
		if _, err := ws.Write([]byte{input[i]}); err != nil {
			t.Fatal(err)
		}
	}
	tc.expectExact("ip\xff\r")

	cancel()
	select {
	case err := <-served:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Serve = %v, want context.Canceled", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Serve did not return after its context ended")
	}
	eventually(t, "pipe client gone", func() bool { return p.Clients() == 1 })
	for range got { // the proxy closed its side
	}
}

func TestServeEndsWhenClientHangsUp(t *testing.T) {
	target := newFakeTarget(t)
	p := startProxy(t, Config{Target: target.addr()})
	target.accept()
	proxySide, ws := pipePair()
	go io.Copy(io.Discard, ws.r)
	served := make(chan error, 1)
	go func() { served <- p.Serve(context.Background(), proxySide) }()
	eventually(t, "client registered", func() bool { return p.Clients() == 1 })
	ws.w.Close() // EOF on the proxy's read side
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve = %v, want nil for a client that hung up", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Serve did not return after the client hung up")
	}
	if got := p.Clients(); got != 0 {
		t.Errorf("Clients() = %d, want 0", got)
	}
}

func TestCloseStopsEverything(t *testing.T) {
	checkNoGoroutineLeak(t)
	target := newFakeTarget(t)
	p, err := Start(context.Background(), Config{Listen: "127.0.0.1:0", Target: target.addr()})
	if err != nil {
		t.Fatal(err)
	}
	tc := newPeer(t, "target", target.accept())
	a := dialClient(t, "a", p.Addr())
	b := dialClient(t, "b", p.Addr())
	proxySide, ws := pipePair()
	go io.Copy(io.Discard, ws.r)
	served := make(chan error, 1)
	go func() { served <- p.Serve(context.Background(), proxySide) }()
	eventually(t, "3 clients", func() bool { return p.Clients() == 3 })

	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	a.expectClosed()
	b.expectClosed()
	tc.expectClosed()
	select {
	case err := <-served:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Serve = %v, want net.ErrClosed", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Serve did not return after Close")
	}
	if _, err := net.Dial("tcp", p.Addr().String()); err == nil {
		t.Error("public port still accepts connections after Close")
	}
	if err := p.Reset(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Reset after Close = %v, want net.ErrClosed", err)
	}
	if err := p.Serve(context.Background(), proxySide); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Serve after Close = %v, want net.ErrClosed", err)
	}
	if got := p.Clients(); got != 0 {
		t.Errorf("Clients() after Close = %d", got)
	}
}

func TestCloseWhileReconnecting(t *testing.T) {
	checkNoGoroutineLeak(t)
	target := newFakeTarget(t)
	p := startProxy(t, Config{Target: target.addr()})
	target.accept().Close()
	target.ln.Close() // the proxy now retries with backoff
	c := dialClient(t, "client", p.Addr())
	c.expect(string(disconnectedNotice))
	c.send("typed while disconnected\r") // dropped, harmlessly
	start := time.Now()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("Close took %v while reconnecting", took)
	}
}

func TestAddrIsTheBoundPort(t *testing.T) {
	target := newFakeTarget(t)
	p := startProxy(t, Config{Target: target.addr()})
	if !p.Addr().Addr().Is4() || p.Addr().Addr().String() != "127.0.0.1" || p.Addr().Port() == 0 {
		t.Fatalf("Addr() = %v, want 127.0.0.1 and the bound port", p.Addr())
	}
}
