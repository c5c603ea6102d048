package qmp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	goqmp "github.com/digitalocean/go-qemu/qmp"
)

// DefaultRunTimeout bounds a Monitor's Run when the Monitor's context has
// no deadline of its own. The QMP commands a node driver sends answer in
// milliseconds; a QEMU that does not answer within this is frozen
// (SIGSTOPped, or its main loop stuck), and waiting longer helps nobody.
// Long commands (savevm through HMP) need a context with a deadline.
const DefaultRunTimeout = 5 * time.Second

// Monitor is a Client seen through go-qemu's qmp.Monitor interface, so
// that go-qemu's generated, typed commands in qmp/raw run on our
// connection:
//
//	err := raw.NewMonitor(c.Monitor(ctx)).Stop()
//
// Commands sent through it share the Client's id-matched replies, its
// writer lock and its reader; nothing of go-qemu's SocketMonitor is used.
// A Monitor is a cheap value bound to one context: make one per operation.
type Monitor struct {
	c *Client
	// ctx bounds every Run. qmp.Monitor's Run takes no context, so the
	// context travels with the Monitor instead of with the call.
	ctx context.Context
}

var _ goqmp.Monitor = (*Monitor)(nil)

// Monitor returns the Client as a go-qemu qmp.Monitor whose Run ends with
// ctx, or after DefaultRunTimeout if ctx has no deadline. ctx must not be
// nil.
func (c *Client) Monitor(ctx context.Context) *Monitor {
	return &Monitor{c: c, ctx: ctx}
}

// Connect returns nil while the connection is up: Dial or New connected the
// Client and negotiated capabilities, so there is nothing left to do. A
// Client never reconnects: once the connection has ended, Connect returns
// Err (an error matching ErrClosed).
func (m *Monitor) Connect() error { return m.c.Err() }

// Disconnect closes the Client (see Client.Close): the connection ends
// for the Client itself and every Monitor of it. It always returns nil.
func (m *Monitor) Disconnect() error { return m.c.Close() }

// runCommand is the body Run accepts: what go-qemu's qmp.Command and
// qmp/raw encode, plus an optional id of the caller's.
type runCommand struct {
	Execute   string          `json:"execute"`
	Arguments json.RawMessage `json:"arguments"`
	ID        json.RawMessage `json:"id"`
}

// Run sends command, one JSON object {"execute", "arguments"} as go-qemu's
// qmp/raw encodes it, and returns QEMU's reply as the object
// {"return": ...}, which is what raw decodes (with the caller's "id"
// echoed if command had one; the id on the wire is the Client's own).
//
// Run waits for the reply until the Monitor's context ends, or
// DefaultRunTimeout if that context has no deadline, and then returns an
// error wrapping context.DeadlineExceeded (or Canceled); QEMU may still
// run the command. A command QEMU refused returns an error wrapping *Error
// with QEMU's class and description, and a connection that ended (QEMU
// exited, or Close) an error wrapping ErrClosed. A command that is not a
// single JSON object with "execute" and at most "arguments" and "id" is
// refused without being sent.
func (m *Monitor) Run(command []byte) ([]byte, error) {
	cmd, err := decodeRunCommand(command)
	if err != nil {
		return nil, fmt.Errorf("qmp: %w", err)
	}
	ctx := m.ctx
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultRunTimeout)
		defer cancel()
	}
	var args any // a nil interface, so that "arguments" is omitted
	if cmd.Arguments != nil {
		args = cmd.Arguments
	}
	var ret json.RawMessage
	if err := m.c.Execute(ctx, cmd.Execute, args, &ret); err != nil {
		return nil, err
	}
	// ret and the id are valid JSON (both were decoded from it), so the
	// reply is assembled rather than re-encoded: a query-qmp-schema reply
	// is 200 KiB.
	out := make([]byte, 0, len(ret)+len(cmd.ID)+18)
	out = append(out, `{"return":`...)
	out = append(out, ret...)
	if cmd.ID != nil {
		out = append(out, `,"id":`...)
		out = append(out, cmd.ID...)
	}
	return append(out, '}'), nil
}

// decodeRunCommand checks and decodes the command given to Run. Unknown
// members (exec-oob, control) are refused as QEMU would refuse them.
func decodeRunCommand(command []byte) (runCommand, error) {
	var cmd runCommand
	d := json.NewDecoder(bytes.NewReader(command))
	d.DisallowUnknownFields()
	if err := d.Decode(&cmd); err != nil {
		return runCommand{}, fmt.Errorf("decode command: %w", err)
	}
	if _, err := d.Token(); !errors.Is(err, io.EOF) {
		return runCommand{}, errors.New("decode command: data after the command object")
	}
	if cmd.Execute == "" {
		return runCommand{}, errors.New(`command without "execute"`)
	}
	return cmd, nil
}

// Events returns a channel of the Client's events as go-qemu Events. A
// goroutine, owned by ctx, takes them from the Client's event queue,
// converts them and sends them on; the channel is closed when ctx ends
// (cancel ctx to stop it; the close tells that it has ended), or once the
// connection has ended and every queued event has been delivered.
//
// The Client's reader never waits for this channel: a slow consumer only
// lets the Client's queue fill, and the queue drops its oldest events
// (Stats.DroppedEvents) while commands go on. There is one queue per
// Client, shared with Client.Events and every other Events channel: each
// event is received once, by whichever consumer takes it first, so a
// Client should have one event consumer.
//
// Data is the event's data object decoded as go-qemu does (numbers as
// float64), or nil when the event has no data or its data is not an
// object; Timestamp is zero when QEMU sent none. The error is always nil.
func (m *Monitor) Events(ctx context.Context) (<-chan goqmp.Event, error) {
	out := make(chan goqmp.Event)
	go func() {
		defer close(out)
		for {
			select {
			case ev, ok := <-m.c.events:
				if !ok {
					return
				}
				select {
				case out <- goEvent(ev):
				case <-ctx.Done():
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// goEvent converts ev to go-qemu's Event.
func goEvent(ev Event) goqmp.Event {
	out := goqmp.Event{Event: ev.Name}
	if len(ev.Data) > 0 {
		// The reader has checked that Data is JSON, so the only failure
		// is data that is not an object, which QEMU never sends; go-qemu's
		// Event cannot hold it, and the event still counts without it.
		if err := json.Unmarshal(ev.Data, &out.Data); err != nil {
			out.Data = nil
		}
	}
	if !ev.Time.IsZero() {
		out.Timestamp.Seconds = ev.Time.Unix()
		out.Timestamp.Microseconds = int64(ev.Time.Nanosecond() / 1000)
	}
	return out
}
