// Package events is labd's event vocabulary: the event types and their
// payloads, the envelope and its JSON codec, the NATS subjects events live
// on, and the Store interface the rest of the daemon appends to and replays
// from. It imports no other labd package.
//
// # Subjects
//
// Every event of a compute lives on one subject per aggregate:
//
//	labd.ev.<compute>.<project_id>.project          the project aggregate
//	labd.ev.<compute>.<project_id>.node.<node_id>   one node aggregate
//	labd.ev.<compute>.compute                       compute-wide facts
//
// <compute> is the daemon's compute id, so several daemons can share one
// NATS cluster and each replays only labd.ev.<compute>.>. The subject scheme
// is a public interface: subscribers depend on it, and it changes only with
// a version bump of this package's documentation.
//
// # Encoding
//
// A message body is one JSON object:
//
//	{"type":"project.created","schema":1,"at":"2026-11-22T10:00:00Z",
//	 "project_id":"...","node_id":"...","data":{...}}
//
// "type" names the payload, "schema" its version. Headers carry
// Nats-Msg-Id (the command id and the event's index in the command, so a
// retried command is deduplicated) and Labd-Type (the type again, for
// subscribers that filter on headers).
//
// # Versioning
//
// Every stored event stays readable for ever: a history means what it
// meant when it was written. A reader that meets a type it does not know,
// or a schema newer than it knows, fails loudly (ErrUnknownType,
// ErrSchema) rather than folding a history it cannot understand. An older
// schema is brought up to date by the type's upcasters (payload.upcast[v]
// rewrites version v into v+1) before it is decoded, and the event comes
// out with the current schema; Marshal writes only the current one.
//
// How a payload may change:
//
//   - Adding an optional member keeps the schema: old payloads lack it and
//     still decode to its zero value (the strict decoder refuses unknown
//     members, never missing ones). The zero value must mean what the
//     history meant before the member existed.
//   - Renaming or removing a member, changing its type, or changing what
//     a value means bumps the schema, and comes with an upcaster from the
//     previous schema and a test of it (see upcast_test.go).
//   - Either way, the golden logs recorded from real sessions
//     (testdata/golden, folded by package replay's golden test) must still
//     fold to their recorded state. They are never re-recorded to make a
//     change pass; a new golden log is added beside them instead.
//
// # Appending
//
// Store.Append writes the events of one command atomically, and only if the
// aggregate's subject still ends at the sequence the caller last saw
// (optimistic concurrency; 0 means the aggregate must not exist yet). A
// command is acknowledged only after the store has acknowledged its events.
package events
