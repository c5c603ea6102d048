package actors

import "labd/actors/kind"

// The error classes of package kind, which the node kinds return too.
// Every error a Client method returns for a reason the caller can act on
// matches exactly one of them with errors.Is; anything else is an
// internal failure.
var (
	ErrNotFound      = kind.ErrNotFound
	ErrAlreadyExists = kind.ErrAlreadyExists
	ErrInvalid       = kind.ErrInvalid
	ErrConflict      = kind.ErrConflict
	ErrForbidden     = kind.ErrForbidden
	ErrUnavailable   = kind.ErrUnavailable
)

// Error is a classified error (kind.Error).
type Error = kind.Error

// NotFound returns an ErrNotFound error with a client message.
func NotFound(format string, args ...any) error { return kind.NotFound(format, args...) }

// AlreadyExists returns an ErrAlreadyExists error with a client message.
func AlreadyExists(format string, args ...any) error { return kind.AlreadyExists(format, args...) }

// Invalid returns an ErrInvalid error with a client message.
func Invalid(format string, args ...any) error { return kind.Invalid(format, args...) }

// Conflict returns an ErrConflict error with a client message.
func Conflict(format string, args ...any) error { return kind.Conflict(format, args...) }

// Forbidden returns an ErrForbidden error with a client message.
func Forbidden(format string, args ...any) error { return kind.Forbidden(format, args...) }

// Unavailable returns an ErrUnavailable error with a client message and
// the cause.
func Unavailable(cause error, format string, args ...any) error {
	return kind.Unavailable(cause, format, args...)
}

// PublicMessage returns the message of a classified error, and false for
// an internal one whose text must not reach a client.
func PublicMessage(err error) (string, bool) { return kind.PublicMessage(err) }
