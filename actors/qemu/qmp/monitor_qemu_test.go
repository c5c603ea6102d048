package qmp

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	goqmp "github.com/digitalocean/go-qemu/qmp"
	"github.com/digitalocean/go-qemu/qmp/raw"
)

// The tests in this file drive the Monitor through go-qemu's qmp/raw
// against a real qemu-system-x86_64.

// qemuWithNIC is a PC with one e1000 on the socket netdev gns3-0, as the
// QEMU driver gives adapter 0 (its UDP peer is the discard port: the
// machine is stopped at start and sends nothing).
var qemuWithNIC = []string{"-M", "pc,accel=kvm:tcg", "-nodefaults", "-display", "none", "-m", "32", "-S",
	"-device", "e1000,netdev=gns3-0",
	"-netdev", "socket,id=gns3-0,udp=127.0.0.1:9,localaddr=127.0.0.1:0"}

// nextGoEventNamed returns the next event called name, skipping others.
func nextGoEventNamed(t testing.TB, events <-chan goqmp.Event, name string) goqmp.Event {
	t.Helper()
	timeout := time.After(testTimeout)
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("events closed while waiting for %s", name)
			}
			if ev.Event == name {
				return ev
			}
		case <-timeout:
			t.Fatalf("no %s event", name)
		}
	}
}

func TestMonitorStopContEvents(t *testing.T) {
	checkNoGoroutineLeak(t)
	_, c := startAndDial(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	mon := c.Monitor(ctx)
	events, err := mon.Events(ctx)
	if err != nil {
		t.Fatalf("Events: %v", err)
	}
	m := raw.NewMonitor(mon)
	if err := m.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	ev := nextGoEventNamed(t, events, "STOP")
	if at := time.Unix(ev.Timestamp.Seconds, ev.Timestamp.Microseconds*1000); time.Since(at).Abs() > time.Hour {
		t.Fatalf("STOP timestamp %v, want about now", at)
	}
	if st, err := m.QueryStatus(); err != nil || st.Status != raw.RunStatePaused || st.Running {
		t.Fatalf("QueryStatus after Stop = %+v, %v; want paused", st, err)
	}
	if err := m.Cont(); err != nil {
		t.Fatalf("Cont: %v", err)
	}
	nextGoEventNamed(t, events, "RESUME")
	if st, err := m.QueryStatus(); err != nil || st.Status != raw.RunStateRunning || !st.Running {
		t.Fatalf("QueryStatus after Cont = %+v, %v; want running", st, err)
	}
	if err := m.SystemReset(); err != nil {
		t.Fatalf("SystemReset: %v", err)
	}
	if ev := nextGoEventNamed(t, events, "RESET"); ev.Data["reason"] != "host-qmp-system-reset" || ev.Data["guest"] != false {
		t.Fatalf("RESET data %v, want reason host-qmp-system-reset", ev.Data)
	}
	cancel()
	expectEventsClosed(t, events)
}

func TestMonitorSetLink(t *testing.T) {
	q := startQEMU(t, qemuWithNIC...)
	c := dial(t, q)
	m := raw.NewMonitor(c.Monitor(testCtx(t)))
	for _, up := range []bool{false, true} {
		if err := m.SetLink("gns3-0", up); err != nil {
			t.Fatalf("SetLink(gns3-0, %v): %v", up, err)
		}
	}
	err := m.SetLink("gns3-1", false)
	var qerr *Error
	if !errors.As(err, &qerr) || qerr.Class != "DeviceNotFound" || !strings.Contains(qerr.Desc, "gns3-1") {
		t.Fatalf("SetLink(gns3-1) = %v, want *Error DeviceNotFound", err)
	}
	if st, err := m.QueryStatus(); err != nil || st.Status != raw.RunStatePrelaunch {
		t.Fatalf("QueryStatus = %+v, %v; want prelaunch (-S)", st, err)
	}
}

// HMP output arrives as raw's string, and a reply past 64 KiB (which
// go-qemu's SocketMonitor cannot read) arrives whole.
func TestMonitorHMPAndLargeReply(t *testing.T) {
	_, c := startAndDial(t)
	mon := c.Monitor(testCtx(t))
	out, err := raw.NewMonitor(mon).HumanMonitorCommand("info status", nil)
	if err != nil || out != "VM status: running\r\n" {
		t.Fatalf("HumanMonitorCommand = %q, %v", out, err)
	}
	reply, err := mon.Run([]byte(`{"execute": "query-qmp-schema"}`))
	if err != nil {
		t.Fatalf("query-qmp-schema: %v", err)
	}
	var schema struct {
		Return []json.RawMessage `json:"return"`
	}
	if err := json.Unmarshal(reply, &schema); err != nil || len(reply) < 64<<10 || len(schema.Return) < 100 {
		t.Fatalf("query-qmp-schema: %d bytes, %d entries, %v", len(reply), len(schema.Return), err)
	}
}

// A frozen QEMU: Run ends with the Monitor's context, promptly, and the
// client goes on once QEMU does.
func TestMonitorRunDeadlineOnStoppedQEMU(t *testing.T) {
	q, c := startAndDial(t)
	q.signal(t, syscall.SIGSTOP)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := raw.NewMonitor(c.Monitor(ctx)).QueryStatus()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("QueryStatus of a stopped QEMU = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("QueryStatus took %v", d)
	}
	q.signal(t, syscall.SIGCONT)
	if st, err := raw.NewMonitor(c.Monitor(testCtx(t))).QueryStatus(); err != nil || !st.Running {
		t.Fatalf("QueryStatus after SIGCONT = %+v, %v", st, err)
	}
}

// QEMU killed under a pending Run, and Run after it exited: both fail
// with our ErrClosed at once, not a JSON error.
func TestMonitorRunAfterQEMUExit(t *testing.T) {
	checkNoGoroutineLeak(t)
	q, c := startAndDial(t)
	q.signal(t, syscall.SIGSTOP)
	pending := goRaw(context.Background(), c, func(m *raw.Monitor) error { return m.Stop() })
	eventually(t, "a pending command", func() bool { return c.pendingCount() == 1 })
	q.signal(t, syscall.SIGKILL)
	var syntaxErr *json.SyntaxError
	if err := waitErr(t, pending); !errors.Is(err, ErrClosed) || errors.Is(err, ErrClientClosed) || errors.As(err, &syntaxErr) {
		t.Fatalf("pending Stop when QEMU died = %v, want ErrClosed by QEMU", err)
	}
	waitClosed(t, c)
	start := time.Now()
	_, err := raw.NewMonitor(c.Monitor(context.Background())).QueryStatus()
	if !errors.Is(err, ErrClosed) || errors.Is(err, ErrClientClosed) || errors.As(err, &syntaxErr) {
		t.Fatalf("QueryStatus after QEMU exited = %v, want ErrClosed by QEMU", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("QueryStatus after exit took %v", d)
	}
}

// raw's Quit: QEMU says SHUTDOWN, exits, and the Monitor's commands fail
// with ErrClosed afterwards.
func TestMonitorQuit(t *testing.T) {
	checkNoGoroutineLeak(t)
	q, c := startAndDial(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	mon := c.Monitor(ctx)
	events, _ := mon.Events(ctx)
	// QEMU may be gone before its reply is read: that is ErrClosed too.
	if err := raw.NewMonitor(mon).Quit(); err != nil && !errors.Is(err, ErrClosed) {
		t.Fatalf("Quit: %v", err)
	}
	if ev := nextGoEventNamed(t, events, "SHUTDOWN"); ev.Data["reason"] != "host-qmp-quit" {
		t.Fatalf("SHUTDOWN data %v, want reason host-qmp-quit", ev.Data)
	}
	expectEventsClosed(t, events)
	if err := q.cmd.Wait(); err != nil {
		t.Fatalf("qemu exit: %v", err)
	}
	if err := raw.NewMonitor(mon).Stop(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Stop after quit = %v, want ErrClosed", err)
	}
}
