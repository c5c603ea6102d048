package qmp

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
)

// maxLineLen bounds one line from QEMU. The largest reply QEMU 7.2 sends
// (query-qmp-schema) is about 200 KiB; a longer line means the peer is not
// a sane QEMU, and the connection is ended rather than buffering without
// bound.
const maxLineLen = 16 << 20

// errLineTooLong ends a connection whose peer sent a line past maxLineLen.
var errLineTooLong = fmt.Errorf("line longer than %d bytes", maxLineLen)

// Error is an error QEMU returned for a command:
// {"error":{"class":"CommandNotFound","desc":"..."}}. Execute returns it
// wrapped; match it with errors.As.
type Error struct {
	// Class is QEMU's error class: GenericError, CommandNotFound,
	// DeviceNotActive, DeviceNotFound, KVMMissingCap.
	Class string `json:"class"`
	// Desc is QEMU's human-readable description.
	Desc string `json:"desc"`
}

// Error returns "Class: Desc".
func (e *Error) Error() string { return e.Class + ": " + e.Desc }

// Event is an asynchronous QMP event such as STOP, RESUME, RESET,
// POWERDOWN or SHUTDOWN.
type Event struct {
	// Name is the event name, e.g. "SHUTDOWN".
	Name string
	// Data is the event's "data" object as sent, or nil if it had none
	// (STOP, RESUME and POWERDOWN have none).
	Data json.RawMessage
	// Time is when QEMU emitted the event (its "timestamp").
	Time time.Time
}

// Version is the QEMU version announced in the greeting.
type Version struct {
	Major, Minor, Micro int
	// Package is the distribution's package string, e.g.
	// "Debian 1:7.2+dfsg-7+deb12u18+b3"; it may be empty.
	Package string
}

// String returns "major.minor.micro".
func (v Version) String() string {
	return strconv.Itoa(v.Major) + "." + strconv.Itoa(v.Minor) + "." + strconv.Itoa(v.Micro)
}

// greeting is the first line QEMU sends on a new connection.
type greeting struct {
	QMP *struct {
		Version struct {
			QEMU struct {
				Major int `json:"major"`
				Minor int `json:"minor"`
				Micro int `json:"micro"`
			} `json:"qemu"`
			Package string `json:"package"`
		} `json:"version"`
		Capabilities []string `json:"capabilities"`
	} `json:"QMP"`
}

// parseGreeting decodes the greeting line into the version it announces.
func parseGreeting(line []byte) (Version, error) {
	var g greeting
	if err := json.Unmarshal(line, &g); err != nil {
		return Version{}, fmt.Errorf("decode greeting: %w", err)
	}
	if g.QMP == nil {
		return Version{}, fmt.Errorf("first line is not a greeting: %.80q", line)
	}
	v := g.QMP.Version
	return Version{Major: v.QEMU.Major, Minor: v.QEMU.Minor, Micro: v.QEMU.Micro, Package: v.Package}, nil
}

// command is one request line. Arguments is omitted when nil.
type command struct {
	Execute   string `json:"execute"`
	Arguments any    `json:"arguments,omitempty"`
	ID        uint64 `json:"id"`
}

// encodeCommand returns the request line, newline included.
func encodeCommand(name string, args any, id uint64) ([]byte, error) {
	b, err := json.Marshal(command{Execute: name, Arguments: args, ID: id})
	if err != nil {
		return nil, fmt.Errorf("encode arguments: %w", err)
	}
	return append(b, '\n'), nil
}

// message is any line after the greeting: a reply ("return" or "error",
// with our "id") or an event ("event", "data", "timestamp").
type message struct {
	ID        json.RawMessage `json:"id"`
	Return    json.RawMessage `json:"return"`
	Error     *Error          `json:"error"`
	Event     string          `json:"event"`
	Data      json.RawMessage `json:"data"`
	Timestamp *struct {
		Seconds      int64 `json:"seconds"`
		Microseconds int64 `json:"microseconds"`
	} `json:"timestamp"`
}

// parseMessage decodes one line. The RawMessage fields are copies, so the
// line's buffer may be reused afterwards.
func parseMessage(line []byte) (message, error) {
	var m message
	if err := json.Unmarshal(line, &m); err != nil {
		return message{}, err
	}
	return m, nil
}

// isEvent reports whether m is an asynchronous event.
func (m *message) isEvent() bool { return m.Event != "" }

// event converts m, which must be an event, to an Event.
func (m *message) event() Event {
	ev := Event{Name: m.Event, Data: m.Data}
	if m.Timestamp != nil {
		ev.Time = time.Unix(m.Timestamp.Seconds, m.Timestamp.Microseconds*int64(time.Microsecond))
	}
	return ev
}

// replyID returns the id of a reply, and false if m is not a reply to one
// of our commands: no "return" nor "error", or an id we never use (ours are
// unsigned integers).
func (m *message) replyID() (uint64, bool) {
	if m.Return == nil && m.Error == nil {
		return 0, false
	}
	id, err := strconv.ParseUint(string(m.ID), 10, 64)
	return id, err == nil
}

// lineReader splits the stream into lines without a length limit below
// maxLineLen and without allocating for lines that fit its buffer.
type lineReader struct {
	r    *bufio.Reader
	long []byte // holds a line longer than r's buffer
}

func newLineReader(r io.Reader) *lineReader {
	return &lineReader{r: bufio.NewReaderSize(r, 64<<10)}
}

// next returns the next line, valid until the following call. At the end
// of the stream it returns the read error (io.EOF for a clean close); a
// final line without a newline is dropped with it.
func (lr *lineReader) next() ([]byte, error) {
	if cap(lr.long) > 1<<20 {
		lr.long = nil // do not keep a huge reply's buffer for good
	}
	line, err := lr.r.ReadSlice('\n')
	if err == nil {
		return line, nil
	}
	if !errors.Is(err, bufio.ErrBufferFull) {
		return nil, err
	}
	lr.long = append(lr.long[:0], line...)
	for {
		line, err = lr.r.ReadSlice('\n')
		if len(lr.long)+len(line) > maxLineLen {
			return nil, errLineTooLong
		}
		lr.long = append(lr.long, line...)
		if err == nil {
			return lr.long, nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
	}
}
