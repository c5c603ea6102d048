package qmp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/digitalocean/go-qemu/qmp/raw"
)

// The tests in this file run against a real qemu-system-x86_64. Typed
// commands go through go-qemu's qmp/raw on a Monitor, as the node driver
// sends them; commands left pending on a context without a deadline use
// Execute, since a Monitor gives those DefaultRunTimeout.

func TestDialNegotiates(t *testing.T) {
	checkNoGoroutineLeak(t)
	_, c := startAndDial(t)
	if v := c.Version(); v.Major < 2 || v.String() == "0.0.0" {
		t.Fatalf("Version() = %+v, want the version from the greeting", v)
	}
	// Before qmp_capabilities QEMU answers every command with
	// CommandNotFound, so a working query-status proves the negotiation.
	st, err := raw.NewMonitor(c.Monitor(testCtx(t))).QueryStatus()
	if err != nil {
		t.Fatalf("QueryStatus: %v", err)
	}
	if st.Status != raw.RunStateRunning || !st.Running {
		t.Fatalf("QueryStatus = %+v; want running", st)
	}
}

func TestDialWaitsForSocket(t *testing.T) {
	checkNoGoroutineLeak(t)
	dir, err := os.MkdirTemp("", "qmp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	type result struct {
		c   *Client
		err error
	}
	done := make(chan result, 1)
	ctx := testCtx(t)
	go func() {
		c, err := Dial(ctx, "unix", filepath.Join(dir, "qmp.sock"))
		done <- result{c, err}
	}()
	select {
	case r := <-done:
		t.Fatalf("Dial returned before QEMU started: %v", r.err)
	case <-time.After(100 * time.Millisecond):
	}
	startQEMUIn(t, dir)
	r := <-done
	if r.err != nil {
		t.Fatalf("Dial: %v", r.err)
	}
	t.Cleanup(func() { r.c.Close() })
	if _, err := raw.NewMonitor(r.c.Monitor(ctx)).QueryStatus(); err != nil {
		t.Fatalf("QueryStatus: %v", err)
	}
}

func TestDialGivesUpWithContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Dial(ctx, "unix", filepath.Join(t.TempDir(), "never.sock"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dial = %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Dial took %v", d)
	}
}

// A second client gets no greeting while the first is connected; Dial
// ends with its context instead of hanging.
func TestSecondClientWaitsForGreeting(t *testing.T) {
	q, c := startAndDial(t)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if c2, err := Dial(ctx, "unix", q.sock); !errors.Is(err, context.DeadlineExceeded) {
		if c2 != nil {
			c2.Close()
		}
		t.Fatalf("second Dial = %v, want DeadlineExceeded", err)
	}
	if _, err := raw.NewMonitor(c.Monitor(testCtx(t))).QueryStatus(); err != nil {
		t.Fatalf("first client after a second tried: %v", err)
	}
}

// The Client's own Events carry what raw's commands cause, timestamped.
func TestStopContEvents(t *testing.T) {
	_, c := startAndDial(t)
	m := raw.NewMonitor(c.Monitor(testCtx(t)))
	if err := m.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if ev := nextEvent(t, c, "STOP"); ev.Time.IsZero() || time.Since(ev.Time).Abs() > time.Hour {
		t.Fatalf("STOP event time %v, want about now", ev.Time)
	}
	if st, err := m.QueryStatus(); err != nil || st.Status != raw.RunStatePaused || st.Running {
		t.Fatalf("QueryStatus after stop = %+v, %v; want paused, not running", st, err)
	}
	if err := m.Cont(); err != nil {
		t.Fatalf("Cont: %v", err)
	}
	nextEvent(t, c, "RESUME")
	if st, err := m.QueryStatus(); err != nil || st.Status != raw.RunStateRunning || !st.Running {
		t.Fatalf("QueryStatus after cont = %+v, %v; want running", st, err)
	}
}

func TestSystemResetAndPowerdownEvents(t *testing.T) {
	_, c := startAndDial(t)
	m := raw.NewMonitor(c.Monitor(testCtx(t)))
	if err := m.SystemReset(); err != nil {
		t.Fatalf("SystemReset: %v", err)
	}
	ev := nextEvent(t, c, "RESET")
	var data struct {
		Guest  bool   `json:"guest"`
		Reason string `json:"reason"`
	}
	if err := json.Unmarshal(ev.Data, &data); err != nil || data.Reason != "host-qmp-system-reset" || data.Guest {
		t.Fatalf("RESET data %s (%v), want reason host-qmp-system-reset", ev.Data, err)
	}
	if err := m.SystemPowerdown(); err != nil {
		t.Fatalf("SystemPowerdown: %v", err)
	}
	if ev := nextEvent(t, c, "POWERDOWN"); ev.Data != nil {
		t.Fatalf("POWERDOWN data %s, want none", ev.Data)
	}
}

func TestUnknownCommandIsTypedError(t *testing.T) {
	_, c := startAndDial(t)
	err := c.Execute(testCtx(t), "no-such-command", nil, nil)
	var qerr *Error
	if !errors.As(err, &qerr) {
		t.Fatalf("Execute = %v, want *Error", err)
	}
	if qerr.Class != "CommandNotFound" || !strings.Contains(qerr.Desc, "no-such-command") {
		t.Fatalf("error = %+v, want CommandNotFound naming the command", qerr)
	}
	// A bad argument is a GenericError, and the client goes on.
	err = c.Execute(testCtx(t), "human-monitor-command", map[string]int{"command-line": 1}, nil)
	if !errors.As(err, &qerr) || qerr.Class != "GenericError" {
		t.Fatalf("Execute with bad args = %v, want GenericError", err)
	}
	if _, err := raw.NewMonitor(c.Monitor(testCtx(t))).QueryStatus(); err != nil {
		t.Fatalf("QueryStatus after errors: %v", err)
	}
}

func TestSnapshotSaveLoadViaHMP(t *testing.T) {
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-f", "qcow2", disk, "16M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v\n%s", err, out)
	}
	q := startQEMU(t, "-M", "q35,accel=kvm:tcg", "-nodefaults", "-display", "none", "-nic", "none",
		"-m", "32", "-S", "-drive", "file="+disk+",if=none,id=disk0,format=qcow2")
	m := raw.NewMonitor(dial(t, q).Monitor(testCtx(t)))
	hmp := func(cmdline string) string {
		t.Helper()
		out, err := m.HumanMonitorCommand(cmdline, nil)
		if err != nil {
			t.Fatalf("%s: %v", cmdline, err)
		}
		return out
	}
	if out := hmp("savevm snap1"); out != "" {
		t.Fatalf("savevm: %q", out)
	}
	if out := hmp("info snapshots"); !strings.Contains(out, "snap1") {
		t.Fatalf("info snapshots does not list snap1:\n%s", out)
	}
	if out := hmp("loadvm snap1"); out != "" {
		t.Fatalf("loadvm: %q", out)
	}
	// HMP reports failures in its output, not as a QMP error.
	if out := hmp("loadvm nope"); !strings.HasPrefix(out, "Error:") {
		t.Fatalf("loadvm of a missing snapshot: %q, want an Error: line", out)
	}
	// The snapshot is in the qcow2 file itself.
	out, err := exec.Command("qemu-img", "snapshot", "-U", "-l", disk).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "snap1") {
		t.Fatalf("qemu-img snapshot -l: %v\n%s", err, out)
	}
}

// QEMU answers quit by exiting, which the Client reports as ErrClosed
// caused by QEMU, not by Close: Machine.Quit (package qemu) relies on
// telling the two apart to count the first as success.
func TestQuit(t *testing.T) {
	checkNoGoroutineLeak(t)
	q, c := startAndDial(t)
	// QEMU may be gone before its reply is read.
	if err := raw.NewMonitor(c.Monitor(testCtx(t))).Quit(); err != nil && (!errors.Is(err, ErrClosed) || errors.Is(err, ErrClientClosed)) {
		t.Fatalf("Quit = %v, want nil or ErrClosed caused by QEMU", err)
	}
	ev := nextEvent(t, c, "SHUTDOWN")
	if !strings.Contains(string(ev.Data), `"host-qmp-quit"`) {
		t.Fatalf("SHUTDOWN data %s, want reason host-qmp-quit", ev.Data)
	}
	waitClosed(t, c)
	if err := c.Err(); !errors.Is(err, ErrClosed) || errors.Is(err, ErrClientClosed) {
		t.Fatalf("Err() = %v, want ErrClosed caused by QEMU", err)
	}
	start := time.Now()
	if _, err := raw.NewMonitor(c.Monitor(testCtx(t))).QueryStatus(); !errors.Is(err, ErrClosed) {
		t.Fatalf("QueryStatus after quit = %v, want ErrClosed", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("QueryStatus after quit took %v", d)
	}
	if err := q.cmd.Wait(); err != nil {
		t.Fatalf("qemu exit: %v", err)
	}
}

// QEMU dying under a pending command fails it with ErrClosed at once.
func TestQEMUExitFailsPendingCommands(t *testing.T) {
	checkNoGoroutineLeak(t)
	q, c := startAndDial(t)
	q.signal(t, syscall.SIGSTOP) // no reply will come
	const n = 5
	errs := make(chan error, n)
	for range n {
		go func() { errs <- c.Execute(context.Background(), "query-status", nil, nil) }()
	}
	eventually(t, "pending commands", func() bool { return c.pendingCount() == n })
	q.signal(t, syscall.SIGKILL)
	for range n {
		select {
		case err := <-errs:
			if !errors.Is(err, ErrClosed) || errors.Is(err, ErrClientClosed) {
				t.Fatalf("pending query-status = %v, want ErrClosed caused by QEMU", err)
			}
			if !strings.Contains(err.Error(), "connection closed") {
				t.Fatalf("error %q does not say the connection closed", err)
			}
		case <-time.After(testTimeout):
			t.Fatal("pending command not failed after QEMU died")
		}
	}
	waitClosed(t, c)
}

func TestCloseFailsPendingAndLeavesNothing(t *testing.T) {
	checkNoGoroutineLeak(t)
	q, c := startAndDial(t)
	q.signal(t, syscall.SIGSTOP)
	errs := make(chan error, 1)
	go func() { errs <- c.Execute(context.Background(), "query-status", nil, nil) }()
	eventually(t, "a pending command", func() bool { return c.pendingCount() == 1 })
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-errs; !errors.Is(err, ErrClosed) || !errors.Is(err, ErrClientClosed) {
		t.Fatalf("pending query-status after Close = %v, want ErrClosed by Close", err)
	}
	select {
	case <-c.Done():
	default:
		t.Fatal("Done still open after Close returned")
	}
	if _, ok := <-c.Events(); ok {
		t.Fatal("Events still open after Close returned")
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	// Quit is no exception at this level: Machine.Quit, which forgives a
	// connection QEMU ended, fails after Close (TestMachineFailures).
	m := raw.NewMonitor(c.Monitor(testCtx(t)))
	if err := m.Stop(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Stop after Close = %v, want ErrClosed", err)
	}
	if err := m.Quit(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Quit after Close = %v, want ErrClosed", err)
	}
}

// Many goroutines share the connection; each gets its own reply. The
// commands are chosen so that every reply is different: HMP echoes an
// unknown command's name, and QMP names an unknown command in its error.
func TestConcurrentExecuteGetsOwnReplies(t *testing.T) {
	_, c := startAndDial(t)
	ctx := testCtx(t)
	m := raw.NewMonitor(c.Monitor(ctx))
	const goroutines, rounds = 50, 20
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for r := range rounds {
				name := fmt.Sprintf("nosuch%dx%d", g, r)
				if g%2 == 0 {
					out, err := m.HumanMonitorCommand(name, nil)
					if err != nil || out != "unknown command: '"+name+"'\r\n" {
						t.Errorf("HMP %s = %q, %v", name, out, err)
						return
					}
					continue
				}
				var qerr *Error
				err := c.Execute(ctx, name, nil, nil)
				if !errors.As(err, &qerr) || qerr.Desc != "The command "+name+" has not been found" {
					t.Errorf("Execute %s = %v", name, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if s := c.Stats(); s != (Stats{}) {
		t.Fatalf("Stats = %+v, want nothing discarded", s)
	}
}

// A command whose context ends returns at once; its late reply is
// discarded and the commands after it get their own replies.
func TestContextTimeoutDoesNotDisturbOthers(t *testing.T) {
	q, c := startAndDial(t)
	q.signal(t, syscall.SIGSTOP)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := raw.NewMonitor(c.Monitor(ctx)).HumanMonitorCommand("info status", nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("frozen QEMU: %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("timeout took %v", d)
	}
	if n := c.pendingCount(); n != 0 {
		t.Fatalf("%d commands still pending after their context ended", n)
	}
	q.signal(t, syscall.SIGCONT)
	// The late "VM status" reply must not be taken for this one.
	m := raw.NewMonitor(c.Monitor(testCtx(t)))
	out, err := m.HumanMonitorCommand("nosuchafter", nil)
	if err != nil || out != "unknown command: 'nosuchafter'\r\n" {
		t.Fatalf("command after the timeout = %q, %v", out, err)
	}
	if s := c.Stats(); s.UnmatchedReplies != 1 {
		t.Fatalf("Stats = %+v, want the late reply discarded", s)
	}
	// A context that has already ended sends nothing.
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	if err := raw.NewMonitor(c.Monitor(ctx)).Stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Stop with cancelled ctx = %v", err)
	}
	if st, err := m.QueryStatus(); err != nil || !st.Running {
		t.Fatalf("QueryStatus = %+v, %v; want still running", st, err)
	}
}

// A consumer that never reads events never slows commands: the queue
// keeps the newest eventQueueLen events and counts the rest as dropped.
func TestUnreadEventsDoNotBlockExecute(t *testing.T) {
	_, c := startAndDial(t)
	m := raw.NewMonitor(c.Monitor(testCtx(t)))
	const pairs = 1000
	for range pairs {
		if err := m.Stop(); err != nil {
			t.Fatalf("Stop: %v", err)
		}
		if err := m.Cont(); err != nil {
			t.Fatalf("Cont: %v", err)
		}
	}
	if st, err := m.QueryStatus(); err != nil || !st.Running {
		t.Fatalf("QueryStatus = %+v, %v", st, err)
	}
	if got, want := c.Stats().DroppedEvents, uint64(2*pairs-eventQueueLen); got != want {
		t.Fatalf("DroppedEvents = %d, want %d", got, want)
	}
	// The queue holds the newest events, in order, ending with RESUME.
	for i := range eventQueueLen {
		ev := <-c.Events()
		want := "STOP"
		if i%2 == 1 {
			want = "RESUME"
		}
		if ev.Name != want {
			t.Fatalf("queued event %d = %s, want %s", i, ev.Name, want)
		}
	}
	select {
	case ev := <-c.Events():
		t.Fatalf("more events than the queue holds: %+v", ev)
	default:
	}
}
