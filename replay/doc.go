// Package replay is the pure fold of labd's history: the state types, Apply
// (state, event) → state, and Rehydrate, which folds a compute's whole
// stream at startup. It does no I/O of its own, reads no clock and starts no
// goroutine: the same events always fold to the same state, whether they
// arrive one by one in an actor or all at once at startup.
//
// States are immutable once returned: Apply never modifies a *Project it
// was given, it returns a new one. Actors publish these values as snapshots
// for readers without copying them.
//
// It imports events and nothing else from labd.
package replay
