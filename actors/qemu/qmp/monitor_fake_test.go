package qmp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	goqmp "github.com/digitalocean/go-qemu/qmp"
	"github.com/digitalocean/go-qemu/qmp/raw"
)

// The tests in this file drive the Monitor through go-qemu's qmp/raw
// against the scripted QEMU of fake_test.go.

// goRaw runs op, a call of go-qemu's raw commands, in a goroutine.
func goRaw(ctx context.Context, c *Client, op func(*raw.Monitor) error) <-chan error {
	result := make(chan error, 1)
	go func() { result <- op(raw.NewMonitor(c.Monitor(ctx))) }()
	return result
}

// waitErr returns the operation's error, failing if it takes too long.
func waitErr(t testing.TB, result <-chan error) error {
	t.Helper()
	select {
	case err := <-result:
		return err
	case <-time.After(testTimeout):
		t.Fatal("operation did not return")
		return nil
	}
}

// expectCommand receives the next command and checks its name and
// arguments (compared as JSON values; "" for none) and that its id is one
// of the Client's.
func expectCommand(t testing.TB, f *fakeQEMU, execute, arguments string) fakeCommand {
	t.Helper()
	cmd := f.recv()
	if cmd.Execute != execute {
		t.Fatalf("QEMU received %s, want %s", cmd.Execute, execute)
	}
	if _, err := strconv.ParseUint(string(cmd.ID), 10, 64); err != nil {
		t.Fatalf("%s sent with id %s, want the Client's counter", execute, cmd.ID)
	}
	if arguments == "" {
		if cmd.Arguments != nil {
			t.Fatalf("%s sent with arguments %s, want none", execute, cmd.Arguments)
		}
		return cmd
	}
	if !jsonEqual(t, cmd.Arguments, []byte(arguments)) {
		t.Fatalf("%s sent with arguments %s, want %s", execute, cmd.Arguments, arguments)
	}
	return cmd
}

// jsonEqual reports whether a and b are the same JSON value.
func jsonEqual(t testing.TB, a, b []byte) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		t.Fatalf("not JSON: %q: %v", a, err)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		t.Fatalf("not JSON: %q: %v", b, err)
	}
	return reflect.DeepEqual(va, vb)
}

func TestFakeMonitorRunsRawCommands(t *testing.T) {
	checkNoGoroutineLeak(t)
	f, c := newFake(t)
	ctx := testCtx(t)

	var st raw.StatusInfo
	result := goRaw(ctx, c, func(m *raw.Monitor) (err error) { st, err = m.QueryStatus(); return err })
	f.reply(expectCommand(t, f, "query-status", `{}`), `{"status": "paused", "singlestep": false, "running": false}`)
	if err := waitErr(t, result); err != nil || st.Status != raw.RunStatePaused || st.Running {
		t.Fatalf("QueryStatus = %+v, %v; want paused, not running", st, err)
	}

	result = goRaw(ctx, c, func(m *raw.Monitor) error { return m.Stop() })
	f.reply(expectCommand(t, f, "stop", `{}`), `{}`)
	if err := waitErr(t, result); err != nil {
		t.Fatalf("Stop: %v", err)
	}

	result = goRaw(ctx, c, func(m *raw.Monitor) error { return m.SetLink("gns3-0", false) })
	f.reply(expectCommand(t, f, "set_link", `{"name": "gns3-0", "up": false}`), `{}`)
	if err := waitErr(t, result); err != nil {
		t.Fatalf("SetLink: %v", err)
	}

	var out string
	result = goRaw(ctx, c, func(m *raw.Monitor) (err error) { out, err = m.HumanMonitorCommand("info status", nil); return err })
	f.reply(expectCommand(t, f, "human-monitor-command", `{"command-line": "info status"}`), `"VM status: paused\r\n"`)
	if err := waitErr(t, result); err != nil || out != "VM status: paused\r\n" {
		t.Fatalf("HumanMonitorCommand = %q, %v", out, err)
	}
	if s := c.Stats(); s != (Stats{}) {
		t.Fatalf("Stats = %+v, want nothing discarded", s)
	}
}

// Run returns the whole reply object, as go-qemu's SocketMonitor does and
// raw decodes; the caller's id is echoed, the wire carries ours.
func TestFakeMonitorRunReturnsReplyObject(t *testing.T) {
	f, c := newFake(t)
	m := c.Monitor(testCtx(t))
	for _, tc := range []struct {
		command, arguments, ret, want string
	}{
		{`{"execute": "query-version", "id": "mine"}`, "", `{"qemu": {"major": 9}}`, `{"return":{"qemu": {"major": 9}},"id":"mine"}`},
		{`{"execute": "stop", "arguments": {}}`, `{}`, `{}`, `{"return":{}}`},
		{`{"execute":"human-monitor-command","arguments":{"command-line":"x"}}` + "\n", `{"command-line":"x"}`, `""`, `{"return":""}`},
		{`{"execute": "query-status", "id": 7}`, "", `null`, `{"return":null,"id":7}`},
	} {
		type result struct {
			out []byte
			err error
		}
		done := make(chan result, 1)
		go func() {
			out, err := m.Run([]byte(tc.command))
			done <- result{out, err}
		}()
		var cmd runCommand
		json.Unmarshal([]byte(tc.command), &cmd)
		f.reply(expectCommand(t, f, cmd.Execute, tc.arguments), tc.ret)
		select {
		case r := <-done:
			if r.err != nil || string(r.out) != tc.want {
				t.Fatalf("Run(%s) = %s, %v; want %s", tc.command, r.out, r.err, tc.want)
			}
		case <-time.After(testTimeout):
			t.Fatalf("Run(%s) did not return", tc.command)
		}
	}
}

// What QEMU would refuse, or is not one command, is refused without being
// sent: the next command is the first QEMU sees.
func TestFakeMonitorRunRefusesBadCommands(t *testing.T) {
	f, c := newFake(t)
	m := c.Monitor(testCtx(t))
	for _, bad := range []string{
		``, `not json`, `[]`, `{"arguments": {}}`, `{"execute": ""}`,
		`{"execute": "stop", "exec-oob": "stop"}`, `{"execute": "stop", "control": {}}`,
		`{"execute": "stop"} {"execute": "cont"}`, `{"execute": "stop"}}`,
	} {
		if out, err := m.Run([]byte(bad)); err == nil {
			t.Fatalf("Run(%q) = %s, want an error", bad, out)
		}
	}
	result := goRaw(testCtx(t), c, func(m *raw.Monitor) error { return m.Cont() })
	f.reply(expectCommand(t, f, "cont", `{}`), `{}`)
	if err := waitErr(t, result); err != nil {
		t.Fatalf("Cont: %v", err)
	}
}

// A QMP error reaches raw's caller as our *Error, class and description
// kept (go-qemu's SocketMonitor keeps only the description).
func TestFakeMonitorRunKeepsQEMUError(t *testing.T) {
	f, c := newFake(t)
	result := goRaw(testCtx(t), c, func(m *raw.Monitor) error { return m.SetLink("gns3-7", true) })
	cmd := expectCommand(t, f, "set_link", `{"name": "gns3-7", "up": true}`)
	f.send(fmt.Sprintf(`{"id": %s, "error": {"class": "DeviceNotFound", "desc": "Device 'gns3-7' not found"}}`, cmd.ID))
	err := waitErr(t, result)
	var qerr *Error
	if !errors.As(err, &qerr) || qerr.Class != "DeviceNotFound" || qerr.Desc != "Device 'gns3-7' not found" {
		t.Fatalf("SetLink = %v, want *Error DeviceNotFound", err)
	}
	if err.Error() != "qmp set_link: DeviceNotFound: Device 'gns3-7' not found" {
		t.Fatalf("error text %q", err)
	}
}

// A QEMU that never answers: Run ends with the Monitor's context, at once
// and without leaving the command pending.
func TestFakeMonitorRunEndsWithContext(t *testing.T) {
	f, c := newFake(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	result := goRaw(ctx, c, func(m *raw.Monitor) error { return m.Stop() })
	f.recv() // and no reply
	err := waitErr(t, result)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Stop = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Stop took %v", d)
	}
	if n := c.pendingCount(); n != 0 {
		t.Fatalf("%d commands pending after their context ended", n)
	}
	// A context already cancelled sends nothing.
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	if err := raw.NewMonitor(c.Monitor(ctx)).Stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Stop with a cancelled context = %v", err)
	}
}

// With no deadline of its own, Run gives up after DefaultRunTimeout
// (timed on synctest's clock).
func TestFakeMonitorRunDefaultTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, c := newFake(t)
		start := time.Now()
		result := goRaw(context.Background(), c, func(m *raw.Monitor) error { return m.Stop() })
		f.recv()
		synctest.Wait()
		select {
		case err := <-result:
			t.Fatalf("Stop returned before its timeout: %v", err)
		default:
		}
		err := <-result
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Stop = %v, want DeadlineExceeded", err)
		}
		if d := time.Since(start); d != DefaultRunTimeout {
			t.Fatalf("Stop gave up after %v, want %v", d, DefaultRunTimeout)
		}
		c.Close()
	})
}

// A QEMU that hung up: pending and later commands fail with ErrClosed
// (go-qemu's SocketMonitor says "unexpected end of JSON input"), and
// Connect says so too.
func TestFakeMonitorRunAfterHangup(t *testing.T) {
	checkNoGoroutineLeak(t)
	f, c := newFake(t)
	m := c.Monitor(context.Background())
	if err := m.Connect(); err != nil {
		t.Fatalf("Connect while connected = %v, want nil", err)
	}
	pending := goRaw(context.Background(), c, func(m *raw.Monitor) error { _, err := m.QueryStatus(); return err })
	f.recv()
	f.conn.Close()
	var syntaxErr *json.SyntaxError
	if err := waitErr(t, pending); !errors.Is(err, ErrClosed) || !errors.Is(err, io.EOF) || errors.As(err, &syntaxErr) {
		t.Fatalf("pending QueryStatus = %v, want ErrClosed by io.EOF", err)
	}
	waitClosed(t, c)
	if err := raw.NewMonitor(m).Cont(); !errors.Is(err, ErrClosed) || errors.Is(err, ErrClientClosed) {
		t.Fatalf("Cont after the hangup = %v, want ErrClosed by QEMU", err)
	}
	if err := m.Connect(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Connect after the hangup = %v, want ErrClosed", err)
	}
}

func TestFakeMonitorDisconnectClosesClient(t *testing.T) {
	checkNoGoroutineLeak(t)
	_, c := newFake(t)
	m := c.Monitor(testCtx(t))
	if err := m.Disconnect(); err != nil {
		t.Fatalf("Disconnect: %v", err)
	}
	select {
	case <-c.Done():
	default:
		t.Fatal("Done still open after Disconnect")
	}
	if err := raw.NewMonitor(m).Stop(); !errors.Is(err, ErrClosed) || !errors.Is(err, ErrClientClosed) {
		t.Fatalf("Stop after Disconnect = %v, want ErrClosed by the client", err)
	}
	if err := m.Connect(); !errors.Is(err, ErrClientClosed) {
		t.Fatalf("Connect after Disconnect = %v, want ErrClientClosed", err)
	}
	if err := m.Disconnect(); err != nil {
		t.Fatalf("second Disconnect: %v", err)
	}
}

// nextGoEvent returns the next event on events, failing if there is none.
func nextGoEvent(t testing.TB, events <-chan goqmp.Event) goqmp.Event {
	t.Helper()
	select {
	case ev, ok := <-events:
		if !ok {
			t.Fatal("events closed")
		}
		return ev
	case <-time.After(testTimeout):
		t.Fatal("no event")
		return goqmp.Event{}
	}
}

// expectEventsClosed fails unless events is closed soon, with no event
// left on it.
func expectEventsClosed(t testing.TB, events <-chan goqmp.Event) {
	t.Helper()
	select {
	case ev, ok := <-events:
		if ok {
			t.Fatalf("event %+v, want the channel closed", ev)
		}
	case <-time.After(testTimeout):
		t.Fatal("events not closed")
	}
}

func TestFakeMonitorEventsAreConverted(t *testing.T) {
	checkNoGoroutineLeak(t)
	f, c := newFake(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events, err := c.Monitor(ctx).Events(ctx)
	if err != nil {
		t.Fatalf("Events: %v", err)
	}
	f.send(`{"timestamp": {"seconds": 1795342279, "microseconds": 35339}, "event": "STOP"}`)
	f.send(`{"timestamp": {"seconds": 1795342282, "microseconds": 242347}, "event": "SHUTDOWN", "data": {"guest": false, "reason": "host-qmp-quit"}}`)
	f.send(`{"event": "ODD", "data": [1, 2]}`)

	want := goqmp.Event{Event: "STOP"}
	want.Timestamp.Seconds, want.Timestamp.Microseconds = 1795342279, 35339
	if ev := nextGoEvent(t, events); !reflect.DeepEqual(ev, want) {
		t.Fatalf("event %+v, want %+v", ev, want)
	}
	want = goqmp.Event{Event: "SHUTDOWN", Data: map[string]any{"guest": false, "reason": "host-qmp-quit"}}
	want.Timestamp.Seconds, want.Timestamp.Microseconds = 1795342282, 242347
	if ev := nextGoEvent(t, events); !reflect.DeepEqual(ev, want) {
		t.Fatalf("event %+v, want %+v", ev, want)
	}
	if ev := nextGoEvent(t, events); !reflect.DeepEqual(ev, goqmp.Event{Event: "ODD"}) {
		t.Fatalf("event %+v, want ODD without data nor timestamp", ev)
	}
	// Cancelling the context ends the goroutine and closes the channel.
	cancel()
	expectEventsClosed(t, events)
}

// The events queued when the connection ends are delivered, then the
// channel is closed; the final SHUTDOWN is not lost.
func TestFakeMonitorEventsEndWithConnection(t *testing.T) {
	checkNoGoroutineLeak(t)
	f, c := newFake(t)
	events, _ := c.Monitor(context.Background()).Events(context.Background())
	f.send(`{"event": "SHUTDOWN", "data": {"guest": false, "reason": "host-signal"}}`)
	f.conn.Close()
	select { // not waitClosed: it would drain the queue
	case <-c.Done():
	case <-time.After(testTimeout):
		t.Fatal("Done not closed")
	}
	if ev := nextGoEvent(t, events); ev.Event != "SHUTDOWN" || ev.Data["reason"] != "host-signal" {
		t.Fatalf("event %+v, want SHUTDOWN", ev)
	}
	expectEventsClosed(t, events)
}

// A consumer that does not read its Events channel does not block the
// reader: commands go on, the Client's queue drops the oldest events, and
// the newest reach the consumer when it reads, in order.
func TestFakeMonitorSlowEventReaderDoesNotBlockRun(t *testing.T) {
	checkNoGoroutineLeak(t)
	f, c := newFake(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events, _ := c.Monitor(ctx).Events(ctx)
	const sent = eventQueueLen + 50
	for i := range sent {
		f.send(fmt.Sprintf(`{"event": "TICK", "data": {"n": %d}}`, i))
	}
	var st raw.StatusInfo
	result := goRaw(testCtx(t), c, func(m *raw.Monitor) (err error) { st, err = m.QueryStatus(); return err })
	f.reply(expectCommand(t, f, "query-status", `{}`), `{"status": "running", "running": true}`)
	if err := waitErr(t, result); err != nil || !st.Running {
		t.Fatalf("QueryStatus with %d unread events = %+v, %v", sent, st, err)
	}
	received, last := 0, -1
	for last < sent-1 {
		ev := nextGoEvent(t, events)
		n := int(ev.Data["n"].(float64))
		if n <= last {
			t.Fatalf("event %d after %d", n, last)
		}
		received, last = received+1, n
	}
	// One event may have been in the forwarding goroutine's hand, the
	// queue held the rest.
	if received > eventQueueLen+1 || uint64(received)+c.Stats().DroppedEvents != sent {
		t.Fatalf("received %d events and dropped %d of %d", received, c.Stats().DroppedEvents, sent)
	}
	cancel()
	expectEventsClosed(t, events)
}
