// Package jetstream implements events.Store on NATS JetStream and launches
// the embedded NATS server labd uses when no external cluster is given.
//
// One stream (default "LABD") holds every labd.ev.> subject: file storage,
// no age or size limit, Discard: new, a two-minute duplicate window, direct
// gets and atomic batch publishing enabled. Appends carry
// Nats-Expected-Last-Subject-Sequence and Nats-Msg-Id; a command with
// several events is one atomic batch.
//
// It imports events and nothing else from labd.
package jetstream
