// Package actors is labd's core: the protoactor-go actor tree that owns the
// compute's state and serialises the requests to it.
//
// The registry actor routes every command to the actor of its aggregate and
// spawns and passivates project actors; a project actor owns its project
// aggregate and the ports the project holds (node actors, owned by project
// actors, come with the node kinds).
//
// Every command is handled in one order, inside the actor that owns the
// aggregate:
//
//  1. validate against the actor's current state (bad input: a clear error,
//     nothing written);
//  2. decide the events it implies;
//  3. append them to the event store with the aggregate's expected last
//     sequence and a command id, and wait for the acknowledgement (none: the
//     command fails and the state is unchanged);
//  4. apply them through replay.ApplyProject, the same fold that runs at
//     startup, and publish the new state as an immutable snapshot;
//  5. carry out the effects (directories, files, ports). An effect that
//     fails after the append is itself recorded (events.EffectFailed).
//
// Reads never queue behind writes: Client's read methods load the snapshot
// an actor published after its last apply. Commands carry an explicit reply
// channel instead of protoactor futures, so no actor ever blocks on
// another.
//
// Errors carry one of six classes (ErrNotFound, ErrAlreadyExists,
// ErrInvalid, ErrConflict, ErrForbidden, ErrUnavailable) and a message fit
// for the client; the HTTP layer maps classes to statuses in one place.
//
// It imports events, replay and nio, and must not import http/....
package actors
