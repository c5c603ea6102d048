package actors

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"labd/events"
)

// appendFold is steps 3 and 4 of the core's rule for one aggregate: it
// appends the events of one command to subject, expecting the aggregate
// at version, waits for the ack, and folds them into state with apply.
// what names the aggregate in messages ("project <id>"). stale reports
// that the store may hold events the returned state does not reflect
// (an append whose outcome is unknown, a conflict, a fold of our own
// event that failed): the caller re-folds before its next command.
func appendFold[S any](cfg *Config, subject, projectID, nodeID, what string, state S, version uint64,
	apply func(S, events.Record) (S, error), ds []events.Data) (next S, stale bool, err error) {
	now := cfg.now()
	evs := make([]events.Event, len(ds))
	for i, d := range ds {
		evs[i] = events.New(now, projectID, nodeID, d)
	}
	cmdID := uuid.NewString()
	ctx, cancel := context.WithTimeout(context.Background(), cfg.StoreTimeout)
	defer cancel()
	last, err := cfg.Store.Append(ctx, subject, version, cmdID, evs...)
	switch {
	case err == nil:
	case errors.Is(err, events.ErrConflict):
		return state, true, &Error{Class: ErrConflict, Msg: fmt.Sprintf("%s was changed by another writer; retry the request", what), Err: err}
	case errors.Is(err, events.ErrTooLarge):
		// Refused before anything was stored: state is still exact.
		return state, false, &Error{Class: ErrInvalid, Msg: "the change is too large to be recorded", Err: err}
	case errors.Is(err, events.ErrUnavailable):
		return state, true, Unavailable(err, "the event store is unavailable")
	default:
		return state, true, fmt.Errorf("actors: append to %s: %w", subject, err)
	}
	next = state
	for i, ev := range evs {
		rec := events.Record{Event: ev, Seq: last - uint64(len(evs)-1-i), Subject: subject, MsgID: events.MsgID(cmdID, i)}
		if next, err = apply(next, rec); err != nil {
			// We decided an event our own fold refuses: a bug. The store
			// has it now, so re-read rather than guess.
			return state, true, fmt.Errorf("actors: folding our own event: %w", err)
		}
	}
	return next, false, nil
}

// loadFold re-reads an aggregate's whole history from its subject and
// folds it with apply; the zero S is "no history".
func loadFold[S any](cfg *Config, subject string, apply func(S, events.Record) (S, error)) (S, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cfg.StoreTimeout)
	defer cancel()
	var st S
	_, err := cfg.Store.Load(ctx, subject, 1, func(r events.Record) error {
		var err error
		st, err = apply(st, r)
		return err
	})
	return st, err
}

// admit is the start of serving a request in an aggregate's actor: a
// request nobody waits for any more is not acted on, and a stale actor
// re-folds first. It reports whether the request may be served; if not,
// it has been answered.
func admit(req *request, stale bool, refold func() error) bool {
	if err := req.ctx.Err(); err != nil {
		req.respond(nil, Unavailable(err, "the request was cancelled"))
		return false
	}
	if stale {
		if err := refold(); err != nil {
			req.respond(nil, Unavailable(err, "the event store is unavailable"))
			return false
		}
	}
	return true
}
