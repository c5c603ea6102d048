package qmp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// The tests in this file talk to a scripted QEMU over net.Pipe, to produce
// what a real QEMU will not: malformed lines, replies out of order or for
// ids we never sent, floods of events. The test goroutine plays QEMU.

const testGreeting = `{"QMP": {"version": {"qemu": {"micro": 3, "minor": 1, "major": 9}, "package": "test"}, "capabilities": ["oob"]}}`

// fakeQEMU is the QEMU side of a pipe.
type fakeQEMU struct {
	t    testing.TB
	conn net.Conn
	r    *bufio.Reader
}

// fakeCommand is a request as the fake receives it.
type fakeCommand struct {
	Execute   string          `json:"execute"`
	Arguments json.RawMessage `json:"arguments"`
	ID        json.RawMessage `json:"id"`
}

// newFake returns a pipe's QEMU side and a Client connected to the other
// side, after a handshake that the fake checks.
func newFake(t testing.TB) (*fakeQEMU, *Client) {
	t.Helper()
	f, clientSide := newFakeConn(t)
	result := goNew(t, clientSide)
	f.send(testGreeting)
	cmd := f.recv()
	if cmd.Execute != "qmp_capabilities" || cmd.Arguments != nil {
		t.Fatalf("first command %+v, want qmp_capabilities without arguments", cmd)
	}
	f.reply(cmd, `{}`)
	r := <-result
	if r.err != nil {
		t.Fatalf("New: %v", r.err)
	}
	t.Cleanup(func() { r.c.Close() })
	return f, r.c
}

func newFakeConn(t testing.TB) (*fakeQEMU, net.Conn) {
	server, client := net.Pipe()
	t.Cleanup(func() { server.Close() })
	return &fakeQEMU{t: t, conn: server, r: bufio.NewReader(server)}, client
}

type newResult struct {
	c   *Client
	err error
}

// goNew runs New in a goroutine: on a pipe it blocks until the fake speaks.
func goNew(t testing.TB, conn net.Conn) <-chan newResult {
	ctx := testCtx(t)
	result := make(chan newResult, 1)
	go func() {
		c, err := New(ctx, conn)
		result <- newResult{c, err}
	}()
	return result
}

// send writes one line to the client.
func (f *fakeQEMU) send(line string) {
	f.t.Helper()
	f.conn.SetWriteDeadline(time.Now().Add(testTimeout))
	if _, err := io.WriteString(f.conn, line+"\r\n"); err != nil {
		f.t.Fatalf("fake send: %v", err)
	}
}

// recv reads one command from the client.
func (f *fakeQEMU) recv() fakeCommand {
	f.t.Helper()
	f.conn.SetReadDeadline(time.Now().Add(testTimeout))
	line, err := f.r.ReadBytes('\n')
	if err != nil {
		f.t.Fatalf("fake recv: %v", err)
	}
	var cmd fakeCommand
	if err := json.Unmarshal(line, &cmd); err != nil {
		f.t.Fatalf("fake recv %q: %v", line, err)
	}
	return cmd
}

// reply answers cmd with a "return" value.
func (f *fakeQEMU) reply(cmd fakeCommand, ret string) {
	f.t.Helper()
	f.send(fmt.Sprintf(`{"return": %s, "id": %s}`, ret, cmd.ID))
}

type execResult struct {
	ret json.RawMessage
	err error
}

// goExecute runs one command in a goroutine.
func goExecute(ctx context.Context, c *Client, command string) <-chan execResult {
	result := make(chan execResult, 1)
	go func() {
		var ret json.RawMessage
		err := c.Execute(ctx, command, nil, &ret)
		result <- execResult{ret, err}
	}()
	return result
}

// wait returns the command's result, failing if it takes too long.
func wait(t testing.TB, result <-chan execResult) execResult {
	t.Helper()
	select {
	case r := <-result:
		return r
	case <-time.After(testTimeout):
		t.Fatal("command did not return")
		return execResult{}
	}
}

// expectReturn fails unless the command returned exactly want.
func expectReturn(t testing.TB, result <-chan execResult, want string) {
	t.Helper()
	r := wait(t, result)
	if r.err != nil || string(r.ret) != want {
		t.Fatalf("command = %s, %v; want %s", r.ret, r.err, want)
	}
}

func TestFakeHandshake(t *testing.T) {
	checkNoGoroutineLeak(t)
	_, c := newFake(t)
	if v := c.Version(); v != (Version{Major: 9, Minor: 1, Micro: 3, Package: "test"}) || v.String() != "9.1.3" {
		t.Fatalf("Version() = %+v", v)
	}
}

// QEMU sends the greeting from its main loop after accepting, so an event
// (RESUME as the machine starts) can come first; CI saw it on real QEMU.
func TestFakeEventBeforeGreetingIsQueued(t *testing.T) {
	checkNoGoroutineLeak(t)
	f, conn := newFakeConn(t)
	result := goNew(t, conn)
	f.send(`{"timestamp": {"seconds": 1795356358, "microseconds": 898011}, "event": "RESUME"}`)
	f.send(testGreeting)
	cmd := f.recv()
	if cmd.Execute != "qmp_capabilities" {
		t.Fatalf("first command %+v, want qmp_capabilities", cmd)
	}
	f.reply(cmd, `{}`)
	r := <-result
	if r.err != nil {
		t.Fatalf("New: %v", r.err)
	}
	defer r.c.Close()
	select {
	case ev := <-r.c.Events():
		if ev.Name != "RESUME" || ev.Time.Unix() != 1795356358 {
			t.Fatalf("event %+v, want the RESUME sent before the greeting", ev)
		}
	case <-time.After(testTimeout):
		t.Fatal("the event sent before the greeting was lost")
	}
}

func TestFakeHandshakeFailures(t *testing.T) {
	t.Run("no greeting", func(t *testing.T) {
		checkNoGoroutineLeak(t)
		f, conn := newFakeConn(t)
		result := goNew(t, conn)
		f.send(`{"return": {}}`)
		if r := <-result; r.err == nil || !strings.Contains(r.err.Error(), "not a greeting") {
			t.Fatalf("New = %v, want a greeting error", r.err)
		}
		if _, err := f.r.ReadByte(); err == nil {
			t.Fatal("New left the connection open")
		}
	})
	t.Run("only events", func(t *testing.T) {
		checkNoGoroutineLeak(t)
		f, conn := newFakeConn(t)
		result := goNew(t, conn)
		go func() {
			for range maxEventsBeforeGreeting + 1 {
				if _, err := fmt.Fprintf(f.conn, "{\"event\": \"RESET\"}\n"); err != nil {
					return
				}
			}
		}()
		if r := <-result; r.err == nil || !strings.Contains(r.err.Error(), "no greeting") {
			t.Fatalf("New = %v, want a no-greeting error", r.err)
		}
	})
	t.Run("negotiation refused", func(t *testing.T) {
		checkNoGoroutineLeak(t)
		f, conn := newFakeConn(t)
		result := goNew(t, conn)
		f.send(testGreeting)
		cmd := f.recv()
		f.send(fmt.Sprintf(`{"error": {"class": "GenericError", "desc": "no"}, "id": %s}`, cmd.ID))
		var qerr *Error
		if r := <-result; !errors.As(r.err, &qerr) || qerr.Desc != "no" {
			t.Fatalf("New = %v, want the *Error", r.err)
		}
	})
	t.Run("silent peer", func(t *testing.T) {
		checkNoGoroutineLeak(t)
		_, conn := newFakeConn(t)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		if _, err := New(ctx, conn); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("New = %v, want DeadlineExceeded", err)
		}
	})
}

func TestFakeMalformedLinesAreSkipped(t *testing.T) {
	f, c := newFake(t)
	result := goExecute(testCtx(t), c, "query-status")
	cmd := f.recv()
	for _, bad := range []string{`not json`, `{"return": `, `[1, 2]`, `"a string"`, `{"id": 1, "return": }`} {
		f.send(bad)
	}
	f.send(``) // blank lines are not errors
	f.reply(cmd, `"ok"`)
	expectReturn(t, result, `"ok"`)
	if s := c.Stats(); s.MalformedLines != 5 || s.UnmatchedReplies != 0 {
		t.Fatalf("Stats = %+v, want 5 malformed lines", s)
	}
}

func TestFakeOutOfOrderReplies(t *testing.T) {
	f, c := newFake(t)
	ctx := testCtx(t)
	results := map[string]<-chan execResult{}
	for _, name := range []string{"a", "b", "c"} {
		results[name] = goExecute(ctx, c, name)
	}
	var cmds []fakeCommand
	for range results {
		cmds = append(cmds, f.recv())
	}
	for i := len(cmds) - 1; i >= 0; i-- {
		f.reply(cmds[i], `"reply to `+cmds[i].Execute+`"`)
	}
	for name, result := range results {
		expectReturn(t, result, `"reply to `+name+`"`)
	}
}

func TestFakeRepliesForUnknownIDs(t *testing.T) {
	f, c := newFake(t)
	result := goExecute(testCtx(t), c, "query-status")
	cmd := f.recv()
	f.send(`{"return": "stray", "id": 999999}`)
	f.send(`{"return": "stray", "id": "not-ours"}`)
	f.send(`{"return": "stray"}`)
	f.send(`{"error": {"class": "GenericError", "desc": "JSON parse error"}}`)
	f.send(fmt.Sprintf(`{"id": %s}`, cmd.ID)) // neither return nor error
	f.reply(cmd, `"mine"`)
	expectReturn(t, result, `"mine"`)
	if s := c.Stats(); s.UnmatchedReplies != 5 {
		t.Fatalf("Stats = %+v, want 5 unmatched replies", s)
	}
}

func TestFakeLateReplyIsDiscarded(t *testing.T) {
	f, c := newFake(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	slow := goExecute(ctx, c, "slow")
	slowCmd := f.recv()
	if r := wait(t, slow); !errors.Is(r.err, context.DeadlineExceeded) {
		t.Fatalf("slow command = %v, want DeadlineExceeded", r.err)
	}
	next := goExecute(testCtx(t), c, "next")
	nextCmd := f.recv()
	f.reply(slowCmd, `"late"`)
	f.reply(nextCmd, `"next"`)
	expectReturn(t, next, `"next"`)
	if s := c.Stats(); s.UnmatchedReplies != 1 {
		t.Fatalf("Stats = %+v, want the late reply counted", s)
	}
}

// A write QEMU does not read ends with its context, without corrupting
// the stream for the next command; Close ends a blocked write too.
func TestFakeBlockedWriteHonoursContext(t *testing.T) {
	f, c := newFake(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if r := wait(t, goExecute(ctx, c, "unread")); !errors.Is(r.err, context.DeadlineExceeded) {
		t.Fatalf("unread command = %v, want DeadlineExceeded", r.err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	blocked := goExecute(ctx, c, "unread")
	eventually(t, "the command to reach its write", func() bool { return c.pendingCount() == 1 })
	cancel()
	if r := wait(t, blocked); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("cancelled command = %v, want Canceled", r.err)
	}
	result := goExecute(testCtx(t), c, "next")
	cmd := f.recv()
	if cmd.Execute != "next" {
		t.Fatalf("QEMU received %+v, want next", cmd)
	}
	f.reply(cmd, `1`)
	expectReturn(t, result, `1`)

	blocked = goExecute(context.Background(), c, "unread")
	eventually(t, "a pending command", func() bool { return c.pendingCount() == 1 })
	c.Close()
	if r := wait(t, blocked); !errors.Is(r.err, ErrClosed) {
		t.Fatalf("command blocked in write after Close = %v, want ErrClosed", r.err)
	}
}

func TestFakeEventQueueDropsOldest(t *testing.T) {
	f, c := newFake(t)
	const extra = 10
	for i := range eventQueueLen + extra {
		f.send(fmt.Sprintf(`{"timestamp": {"seconds": %d, "microseconds": 250}, "event": "TICK", "data": {"n": %d}}`, 1000+i, i))
	}
	// The reader was not blocked by the full queue: commands still work.
	result := goExecute(testCtx(t), c, "query-status")
	f.reply(f.recv(), `{}`)
	expectReturn(t, result, `{}`)
	if s := c.Stats(); s.DroppedEvents != extra {
		t.Fatalf("Stats = %+v, want %d dropped events", s, extra)
	}
	for i := extra; i < eventQueueLen+extra; i++ {
		ev := <-c.Events()
		if ev.Name != "TICK" || string(ev.Data) != fmt.Sprintf(`{"n": %d}`, i) {
			t.Fatalf("event = %s %s, want TICK n=%d", ev.Name, ev.Data, i)
		}
		if want := time.Unix(int64(1000+i), 250_000); !ev.Time.Equal(want) {
			t.Fatalf("event time %v, want %v", ev.Time, want)
		}
	}
}

func TestFakeHangupFailsPending(t *testing.T) {
	checkNoGoroutineLeak(t)
	f, c := newFake(t)
	result := goExecute(context.Background(), c, "query-status")
	f.recv()
	f.send(`{"event": "SHUTDOWN", "data": {"guest": false, "reason": "host-signal"}}`)
	f.conn.Close()
	r := wait(t, result)
	if !errors.Is(r.err, ErrClosed) || !errors.Is(r.err, io.EOF) {
		t.Fatalf("pending command = %v, want ErrClosed with io.EOF", r.err)
	}
	// The event sent before the hangup is still delivered, then Events ends.
	if ev, ok := <-c.Events(); !ok || ev.Name != "SHUTDOWN" || !ev.Time.IsZero() {
		t.Fatalf("event = %+v, %v; want SHUTDOWN without timestamp", ev, ok)
	}
	waitClosed(t, c)
	if !errors.Is(c.Err(), io.EOF) {
		t.Fatalf("Err() = %v", c.Err())
	}
}

func TestFakeLongLines(t *testing.T) {
	f, c := newFake(t)
	// A reply longer than the read buffer arrives whole.
	big := `"` + strings.Repeat("x", 1<<20) + `"`
	result := goExecute(testCtx(t), c, "query-qmp-schema")
	f.reply(f.recv(), big)
	expectReturn(t, result, big)

	// A line past the limit ends the connection.
	result = goExecute(testCtx(t), c, "query-status")
	f.recv()
	go func() { // the client stops reading mid-line; the write then fails
		io.WriteString(f.conn, `{"return": "`+strings.Repeat("y", maxLineLen)+`"}`+"\n")
	}()
	r := wait(t, result)
	if !errors.Is(r.err, ErrClosed) || !errors.Is(r.err, errLineTooLong) {
		t.Fatalf("command = %v, want ErrClosed by a too long line", r.err)
	}
}
