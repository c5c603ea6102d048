package qmp

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// qmpSeeds are lines QEMU 7.2 really sent, plus a few broken ones.
var qmpSeeds = []string{
	testGreeting,
	`{"return": {}, "id": 1}`,
	`{"return": {"status": "running", "singlestep": false, "running": true}, "id": 2}`,
	`{"return": "VM status: running\r\n", "id": 3}`,
	`{"id": 4, "error": {"class": "CommandNotFound", "desc": "The command no-such-command has not been found"}}`,
	`{"timestamp": {"seconds": 1795342279, "microseconds": 35339}, "event": "STOP"}`,
	`{"timestamp": {"seconds": 1795342282, "microseconds": 242347}, "event": "SHUTDOWN", "data": {"guest": false, "reason": "host-qmp-quit"}}`,
	`{"error": {"class": "GenericError", "desc": "JSON parse error"}}`,
	`{"id": "x", "return": 1}`,
	`{"id": 18446744073709551616, "return": 1}`,
	`{"event": 1}`,
	`[]`, `null`, `{`, ``,
}

// FuzzParseMessage checks that no line makes the decoder panic and that
// what it accepts is classified consistently.
func FuzzParseMessage(f *testing.F) {
	for _, s := range qmpSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		parseGreeting(line)
		m, err := parseMessage(line)
		if err != nil {
			return
		}
		if m.isEvent() {
			if ev := m.event(); ev.Name == "" {
				t.Fatal("event without a name")
			}
			return
		}
		if _, ok := m.replyID(); ok && m.Return == nil && m.Error == nil {
			t.Fatal("a reply with neither return nor error")
		}
	})
}

// FuzzClientStream feeds arbitrary bytes to a Client between a command
// and its reply: whatever they are, the reader survives them and the
// command gets an answer (from the fuzz input if it forged our id, else
// from the fake).
func FuzzClientStream(f *testing.F) {
	for _, s := range qmpSeeds {
		f.Add(s)
	}
	f.Add(strings.Join(qmpSeeds, "\n"))
	f.Fuzz(func(t *testing.T, junk string) {
		fake, c := newFake(t)
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		result := goExecute(ctx, c, "query-status")
		cmd := fake.recv()
		fake.send(junk)
		fake.reply(cmd, `"end"`)
		select {
		case r := <-result:
			var qerr *Error
			if r.err != nil && !errors.As(r.err, &qerr) {
				t.Fatalf("command = %v", r.err)
			}
		case <-time.After(testTimeout):
			t.Fatal("command did not return")
		}
	})
}
