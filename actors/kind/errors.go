package kind

import (
	"errors"
	"fmt"
)

// The error classes. Every error a Client method returns for a reason the
// caller can act on matches exactly one of them with errors.Is; anything
// else is an internal failure.
var (
	ErrNotFound      = errors.New("not found")
	ErrAlreadyExists = errors.New("already exists")
	ErrInvalid       = errors.New("invalid")
	ErrConflict      = errors.New("conflict")
	ErrForbidden     = errors.New("forbidden")
	ErrUnavailable   = errors.New("unavailable")
)

// Error is a classified error. Msg is written for the client and never
// carries internals; Err, when set, is the cause, for the log.
type Error struct {
	Class error
	Msg   string
	Err   error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

// Is matches the error's class.
func (e *Error) Is(target error) bool { return target == e.Class }

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

func classed(class error, format string, args ...any) error {
	return &Error{Class: class, Msg: fmt.Sprintf(format, args...)}
}

// NotFound returns an ErrNotFound error with a client message.
func NotFound(format string, args ...any) error { return classed(ErrNotFound, format, args...) }

// AlreadyExists returns an ErrAlreadyExists error with a client message.
func AlreadyExists(format string, args ...any) error {
	return classed(ErrAlreadyExists, format, args...)
}

// Invalid returns an ErrInvalid error with a client message.
func Invalid(format string, args ...any) error { return classed(ErrInvalid, format, args...) }

// Conflict returns an ErrConflict error with a client message.
func Conflict(format string, args ...any) error { return classed(ErrConflict, format, args...) }

// Forbidden returns an ErrForbidden error with a client message.
func Forbidden(format string, args ...any) error { return classed(ErrForbidden, format, args...) }

// Unavailable returns an ErrUnavailable error with a client message and
// the cause.
func Unavailable(cause error, format string, args ...any) error {
	return &Error{Class: ErrUnavailable, Msg: fmt.Sprintf(format, args...), Err: cause}
}

// PublicMessage returns the message of a classified error, and false for
// an internal one whose text must not reach a client.
func PublicMessage(err error) (string, bool) {
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Msg, true
	}
	return "", false
}
