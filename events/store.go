package events

import (
	"context"
	"errors"
	"fmt"
)

// Store is an append-only event log with optimistic concurrency per
// aggregate subject. Implementations must pass the conformance suite in
// package eventstest.
type Store interface {
	// Append writes evs, in order and atomically, to subject, provided the
	// last event on subject has sequence expected (0: the subject must be
	// empty). cmdID identifies the command: the i-th event is written with
	// message id "<cmdID>/<i>", so retrying a command whose first attempt
	// did land returns the original sequence instead of writing twice. It
	// returns the sequence of the last event written. Message ids are
	// deduplicated across the whole stream, so cmdID must be unique (a
	// UUID), not merely unique per subject.
	//
	// A mismatched expectation fails with an error matching ErrConflict and
	// writes nothing. When the store cannot be reached, or cannot say
	// whether the write happened, the error matches ErrUnavailable.
	Append(ctx context.Context, subject string, expected uint64, cmdID string, evs ...Event) (uint64, error)

	// Load calls fn, in stream order, for every record whose subject
	// matches filter (a NATS subject, wildcards allowed) and whose sequence
	// is at least from, up to the end of the stream as it was when Load
	// started. It returns that end: everything matching filter up to and
	// including it has been delivered. An error from fn stops Load and is
	// returned.
	Load(ctx context.Context, filter string, from uint64, fn func(Record) error) (through uint64, err error)

	// Follow calls fn, in stream order, for every record matching filter
	// with a sequence of at least from: first those already stored, then
	// each new one as it is appended. It returns when ctx ends (with
	// ctx.Err()), when fn fails, or when the store fails.
	Follow(ctx context.Context, filter string, from uint64, fn func(Record) error) error

	// LastSequence returns the sequence of the last event in the stream,
	// over every subject.
	LastSequence(ctx context.Context) (uint64, error)
}

// Errors of the events package and of Store implementations.
var (
	// ErrConflict: the aggregate's subject did not end at the expected
	// sequence; somebody else wrote it first.
	ErrConflict = errors.New("events: conflicting append")
	// ErrUnavailable: the store could not be reached, or could not confirm
	// the outcome of an append.
	ErrUnavailable = errors.New("events: store unavailable")
	// ErrTooLarge: an event that does not fit in one stored message.
	ErrTooLarge = errors.New("events: event too large for the store")
	// ErrUnknownType: an event type this build does not know.
	ErrUnknownType = errors.New("unknown event type")
	// ErrSchema: a payload schema this build cannot read or write.
	ErrSchema = errors.New("unsupported event schema")
	// ErrMalformed: a stored event that does not decode.
	ErrMalformed = errors.New("malformed event")
)

// ConflictError details an ErrConflict.
type ConflictError struct {
	Subject  string
	Expected uint64
	Actual   uint64
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("events: %s: expected last sequence %d, found %d", e.Subject, e.Expected, e.Actual)
}

// Is makes a *ConflictError match ErrConflict.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// MsgID returns the message id of the i-th event of command cmdID.
func MsgID(cmdID string, i int) string { return fmt.Sprintf("%s/%d", cmdID, i) }
