package qmp

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// testTimeout bounds every wait in the tests; it is generous on purpose,
// the waits end as soon as their condition holds.
const testTimeout = 10 * time.Second

// qemuBase is a QEMU that starts in a few tens of milliseconds: no
// machine, no devices, no network.
var qemuBase = []string{"-machine", "none,accel=kvm:tcg", "-nodefaults", "-display", "none", "-nic", "none"}

// qemuProc is a real qemu-system-x86_64 process serving QMP on sock.
type qemuProc struct {
	dir  string
	sock string
	cmd  *exec.Cmd
}

// startQEMU starts QEMU with args (qemuBase when none) in its own process
// group and kills the group when the test ends. The QMP socket lives in a
// short temporary directory: unix socket paths are limited to 107 bytes and
// t.TempDir's include the test name.
func startQEMU(t testing.TB, args ...string) *qemuProc {
	t.Helper()
	dir, err := os.MkdirTemp("", "qmp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return startQEMUIn(t, dir, args...)
}

func startQEMUIn(t testing.TB, dir string, args ...string) *qemuProc {
	t.Helper()
	if len(args) == 0 {
		args = qemuBase
	}
	q := &qemuProc{dir: dir, sock: filepath.Join(dir, "qmp.sock")}
	args = append(args, "-qmp", "unix:"+q.sock+",server=on,wait=off")
	q.cmd = exec.Command("qemu-system-x86_64", args...)
	q.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stderr bytes.Buffer
	q.cmd.Stderr = &stderr
	if err := q.cmd.Start(); err != nil {
		t.Fatalf("start qemu: %v", err)
	}
	t.Cleanup(func() {
		syscall.Kill(-q.cmd.Process.Pid, syscall.SIGKILL)
		q.cmd.Wait()
		if t.Failed() && stderr.Len() > 0 {
			t.Logf("qemu stderr:\n%s", stderr.String())
		}
	})
	return q
}

// signal sends sig to QEMU (SIGSTOP freezes it: it reads no command and
// sends no reply until SIGCONT).
func (q *qemuProc) signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := syscall.Kill(q.cmd.Process.Pid, sig); err != nil {
		t.Fatalf("kill %v: %v", sig, err)
	}
}

// dial connects to q and closes the client when the test ends.
func dial(t testing.TB, q *qemuProc) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	c, err := Dial(ctx, "unix", q.sock)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// startAndDial starts a plain QEMU and connects to it.
func startAndDial(t testing.TB) (*qemuProc, *Client) {
	t.Helper()
	q := startQEMU(t)
	return q, dial(t, q)
}

// testCtx is a context bounded by testTimeout.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// nextEvent returns the next event called name, skipping others.
func nextEvent(t testing.TB, c *Client, name string) Event {
	t.Helper()
	timeout := time.After(testTimeout)
	for {
		select {
		case ev, ok := <-c.Events():
			if !ok {
				t.Fatalf("events closed while waiting for %s", name)
			}
			if ev.Name == name {
				return ev
			}
		case <-timeout:
			t.Fatalf("no %s event", name)
		}
	}
}

// eventually polls cond until it holds or testTimeout passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// pendingCount is how many commands wait for a reply.
func (c *Client) pendingCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending)
}

// waitClosed fails unless Done and Events are both closed soon.
func waitClosed(t testing.TB, c *Client) {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(testTimeout):
		t.Fatal("Done not closed")
	}
	for range c.Events() { // drains, then ends because it is closed
	}
}

// checkNoGoroutineLeak fails the test if, after every later cleanup (the
// client's Close among them), more goroutines run than before it.
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
			time.Sleep(5 * time.Millisecond)
		}
	})
}
