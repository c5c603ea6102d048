// Package qmp is labd's client for the QEMU Machine Protocol: line-delimited
// JSON over QEMU's -qmp socket. It owns one connection to one QEMU process
// and nothing else; it imports only the standard library and go-qemu's qmp
// package (for the Monitor interface it implements), and must not import
// actors, events, replay or http/... (the QEMU node actor drives it).
//
// # Connection
//
// Dial connects, retrying while the socket is not there yet (QEMU just
// started), reads the greeting {"QMP":{"version":...}} (Version) and sends
// qmp_capabilities, without which QEMU refuses every command. New does the
// same on a connection the caller already has. QEMU serves one QMP client
// per socket, so the Client is the only one: a second Dial waits for the
// greeting until its context ends.
//
// # Commands
//
// Execute sends {"execute", "arguments", "id"} with an id of our own (a
// counter) and waits for the reply carrying that id, so any number of
// goroutines may run commands at once and replies may come in any order.
// Each command's time limit is its context: when it ends, Execute returns
// ctx.Err() at once, and the reply, if QEMU sends one later, is discarded by
// id and counted in Stats.UnmatchedReplies; no other command notices. (QEMU
// may still have run that command: a timeout says nothing about its effect.) Writes
// are serialised by a lock whose wait also ends with the context; a write
// cut in half by a context would leave QEMU with half a line, so it ends the
// connection. An {"error":{"class","desc"}} reply is returned as *Error
// (match it with errors.As). Typed commands are go-qemu's, through
// Monitor (below); the package has no wrappers of its own.
//
// # go-qemu
//
// Client.Monitor returns the Client as go-qemu's qmp.Monitor
// (github.com/digitalocean/go-qemu/qmp), so that go-qemu's generated typed
// commands in qmp/raw run over this connection:
// raw.NewMonitor(c.Monitor(ctx)).QueryStatus(). Its Run goes through
// Execute, bounded by the Monitor's context or DefaultRunTimeout, and
// returns the {"return": ...} object raw decodes. go-qemu's own
// SocketMonitor is not used: its reader blocks every command while an
// event consumer is slow, it has no timeouts, and it cannot read a line
// over 64 KiB.
//
// # Reader and events
//
// One goroutine per connection reads; it is the only one. It hands a reply
// to the buffered channel of the command waiting for it, and an event
// (SHUTDOWN, STOP, RESUME, RESET, POWERDOWN, ...) to the Events channel. It
// never blocks on a consumer: Events is a queue of 128 events and, when it
// is full, the reader drops the oldest queued event to make room for the
// new one and counts it in Stats.DroppedEvents. We chose drop-oldest over an
// unbounded queue because a consumer that stopped reading must not grow
// memory without bound (2,000 stop/cont pairs make 4,000 events), and over
// drop-newest because the newest events carry the current state: the last
// one after a quit is SHUTDOWN. A consumer that needs every event reads
// promptly; the node actor forwards each to its mailbox. Note that QEMU
// sends an event before the reply of the command that caused it (STOP
// before stop's reply), and one system_reset may give several RESET events.
//
// Lines that are not JSON objects are skipped and counted
// (Stats.MalformedLines): the stream stays framed by newlines, so one bad
// line costs at most the one reply it held. A line over 16 MiB ends the
// connection rather than buffering without bound.
//
// # End of the connection
//
// When QEMU exits or hangs up (EOF or "connection reset by peer"; both
// mean QEMU is gone) or Close is called, the reader closes the socket,
// every pending and later command fails with an error matching ErrClosed
// that names the cause, the Events channel is closed once drained, and Done
// is closed; Err tells why, and after Close the error also matches
// ErrClientClosed (so a quit that QEMU answered by exiting is told from a
// command cut short by our own Close). Close is idempotent and returns
// after the reader has ended, so a closed Client leaves no goroutine behind.
package qmp
