package qmp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// eventQueueLen is how many undelivered events a Client keeps. When the
// queue is full the oldest event is dropped (and counted in
// Stats.DroppedEvents) so that the reader never waits for the consumer.
const eventQueueLen = 128

// ErrClosed is returned, wrapped, by every command that could not complete
// because the connection ended: QEMU exited or hung up, or Close was
// called. The wrapping error names the cause.
var ErrClosed = errors.New("connection closed")

// ErrClientClosed is the cause that ErrClosed errors wrap when the
// connection ended because Close (or a Monitor's Disconnect) was called,
// rather than because QEMU exited or hung up: errors.Is(err,
// ErrClientClosed) tells the two apart.
var ErrClientClosed = errors.New("closed by the client")

// aLongTimeAgo is a deadline in the past, used to interrupt a blocked
// read or write at once.
var aLongTimeAgo = time.Unix(1, 0)

// Client is one QMP connection. All methods are safe for concurrent use.
type Client struct {
	conn    net.Conn
	lines   *lineReader
	version Version
	events  chan Event    // closed by the reader when it ends
	done    chan struct{} // closed by the reader when it ends, after err is set
	err     error         // why the connection ended; set before done closes
	wmu     chan struct{} // one writer at a time; a channel so waiting honours ctx
	reader  sync.WaitGroup
	close   sync.Once

	nextID           atomic.Uint64
	droppedEvents    atomic.Uint64
	malformedLines   atomic.Uint64
	unmatchedReplies atomic.Uint64

	mu      sync.Mutex                 // guards the following
	pending map[uint64]chan<- response // nil once the connection has ended
	cause   error                      // why we ended the connection, if we did
}

// response is what the reader hands to the command waiting for it.
type response struct {
	ret json.RawMessage
	err *Error
}

// Stats counts what the reader discarded instead of blocking or failing.
type Stats struct {
	// DroppedEvents counts events dropped, oldest first, because the
	// consumer left eventQueueLen (128) events unread.
	DroppedEvents uint64
	// MalformedLines counts lines that were not a JSON object; they are
	// skipped and the connection goes on.
	MalformedLines uint64
	// UnmatchedReplies counts replies whose id no command waits for:
	// late replies to commands whose context ended, or ids we never sent.
	UnmatchedReplies uint64
}

// Dial connects to the QMP socket at addr ("unix" and a path, or "tcp" and
// host:port), reads the greeting and negotiates capabilities. While the
// socket does not exist yet or refuses connections (QEMU is still
// starting) it retries until ctx ends. ctx also bounds the handshake: QEMU
// serves one QMP client at a time, and a second one gets no greeting until
// the first leaves.
func Dial(ctx context.Context, network, addr string) (*Client, error) {
	var d net.Dialer
	backoff := 5 * time.Millisecond
	for {
		conn, err := d.DialContext(ctx, network, addr)
		if err == nil {
			c, err := handshake(ctx, conn)
			if err != nil {
				return nil, fmt.Errorf("qmp dial %s: handshake: %w", addr, err)
			}
			return c, nil
		}
		if !errors.Is(err, syscall.ENOENT) && !errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("qmp dial %s: %w", addr, err)
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("qmp dial %s: %w (last attempt: %v)", addr, ctx.Err(), err)
		case <-t.C:
		}
		backoff = min(2*backoff, 100*time.Millisecond)
	}
}

// New runs the QMP handshake on an established connection and returns a
// Client that owns conn, closing it on failure too. ctx bounds the
// handshake only.
func New(ctx context.Context, conn net.Conn) (*Client, error) {
	c, err := handshake(ctx, conn)
	if err != nil {
		return nil, fmt.Errorf("qmp handshake: %w", err)
	}
	return c, nil
}

// handshake reads the greeting, starts the reader and negotiates
// capabilities; its errors are for Dial and New to wrap.
func handshake(ctx context.Context, conn net.Conn) (*Client, error) {
	c := &Client{
		conn:    conn,
		lines:   newLineReader(conn),
		events:  make(chan Event, eventQueueLen),
		done:    make(chan struct{}),
		wmu:     make(chan struct{}, 1),
		pending: make(map[uint64]chan<- response),
	}
	v, err := c.readGreeting(ctx)
	if err != nil {
		conn.Close()
		return nil, err
	}
	c.version = v
	c.reader.Go(c.readLoop)
	if err := c.execute(ctx, "qmp_capabilities", nil, nil); err != nil {
		c.Close()
		return nil, fmt.Errorf("qmp_capabilities: %w", err)
	}
	return c, nil
}

// readGreeting reads lines up to the greeting before the reader starts,
// with ctx turned into a read deadline. QEMU sends the greeting from its
// main loop after accepting the connection, so an event raised in between
// (RESUME when the machine starts, typically) can come first: such events
// are queued like any later one, not mistaken for a broken peer.
func (c *Client) readGreeting(ctx context.Context) (Version, error) {
	var v Version
	err := withDeadline(ctx, c.conn.SetReadDeadline, func() error {
		for range maxEventsBeforeGreeting + 1 {
			line, err := c.lines.next()
			if err != nil {
				return fmt.Errorf("read greeting: %w", err)
			}
			if m, err := parseMessage(line); err == nil && m.isEvent() {
				c.queueEvent(m.event())
				continue
			}
			v, err = parseGreeting(line)
			return err
		}
		return fmt.Errorf("no greeting after %d events", maxEventsBeforeGreeting)
	})
	return v, err
}

// maxEventsBeforeGreeting bounds how many events a peer may send before
// its greeting; one that sends more is not a QMP server.
const maxEventsBeforeGreeting = 16

// Version returns the QEMU version announced in the greeting.
func (c *Client) Version() Version { return c.version }

// Events returns the channel of asynchronous events. It is closed after the
// connection ends and the remaining events have been received. A consumer
// that falls behind by more than 128 events loses the oldest ones (see
// Stats); the newest, such as a final SHUTDOWN, are kept.
func (c *Client) Events() <-chan Event { return c.events }

// Done returns a channel closed when the connection has ended and every
// pending command has failed.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns nil while the connection is up, then why it ended: an error
// matching ErrClosed that wraps the cause (io.EOF, a read error, or Close).
func (c *Client) Err() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

// Stats returns the counters of discarded input.
func (c *Client) Stats() Stats {
	return Stats{
		DroppedEvents:    c.droppedEvents.Load(),
		MalformedLines:   c.malformedLines.Load(),
		UnmatchedReplies: c.unmatchedReplies.Load(),
	}
}

// Close closes the connection, fails pending commands with ErrClosed and
// waits for the reader to end. It is idempotent and always returns nil:
// there is nothing a caller could do about a failed close of a socket.
func (c *Client) Close() error {
	c.close.Do(func() {
		c.shutdown(ErrClientClosed)
		c.reader.Wait()
	})
	return nil
}

// Execute runs command with args (nil for none) and decodes its "return"
// value into result (nil to ignore it). It returns a wrapped *Error if QEMU
// refused the command, ctx's error if ctx ended first, or a wrapped
// ErrClosed if the connection ended. A command whose ctx ended after it was
// sent may still run in QEMU; its late reply is discarded.
func (c *Client) Execute(ctx context.Context, command string, args, result any) error {
	if err := c.execute(ctx, command, args, result); err != nil {
		return fmt.Errorf("qmp %s: %w", command, err)
	}
	return nil
}

func (c *Client) execute(ctx context.Context, command string, args, result any) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	id := c.nextID.Add(1)
	line, err := encodeCommand(command, args, id)
	if err != nil {
		return err
	}
	replies := make(chan response, 1)
	if !c.register(id, replies) {
		<-c.done
		return c.err
	}
	if err := c.write(ctx, line); err != nil {
		c.unregister(id)
		return err
	}
	select {
	case r := <-replies:
		return r.decode(result)
	case <-ctx.Done():
		c.unregister(id)
		return ctx.Err()
	case <-c.done:
		select {
		case r := <-replies: // the reply came just before the end
			return r.decode(result)
		default:
			return c.err
		}
	}
}

// decode turns a reply into the command's outcome.
func (r response) decode(result any) error {
	if r.err != nil {
		return r.err
	}
	if result == nil {
		return nil
	}
	if err := json.Unmarshal(r.ret, result); err != nil {
		return fmt.Errorf("decode reply: %w", err)
	}
	return nil
}

// register records that command id waits for a reply on replies. It
// returns false once the connection has ended.
func (c *Client) register(id uint64, replies chan<- response) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending == nil {
		return false
	}
	c.pending[id] = replies
	return true
}

func (c *Client) unregister(id uint64) {
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
}

// take removes and returns the channel waiting for id, if any.
func (c *Client) take(id uint64) (chan<- response, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	replies, ok := c.pending[id]
	delete(c.pending, id)
	return replies, ok
}

// write sends one request line. Waiting for the writer lock and the write
// itself both end with ctx. A write that failed otherwise, or that ctx cut
// midway (leaving half a line QEMU can no longer parse), ends the
// connection.
func (c *Client) write(ctx context.Context, line []byte) error {
	select {
	case c.wmu <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-c.done:
		return c.err
	}
	defer func() { <-c.wmu }()
	var n int
	err := withDeadline(ctx, c.conn.SetWriteDeadline, func() error {
		var err error
		n, err = c.conn.Write(line)
		return err
	})
	if err == nil {
		return nil
	}
	byCtx := errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
	if byCtx && n == 0 {
		return err // nothing was sent: the connection is intact
	}
	if byCtx {
		c.shutdown(fmt.Errorf("write cut short after %d of %d bytes: %w", n, len(line), err))
	} else {
		c.shutdown(fmt.Errorf("write: %w", err))
	}
	<-c.done
	return c.err
}

// shutdown records why the connection ends, unless a cause is already
// recorded, and closes the socket so that the reader ends.
func (c *Client) shutdown(cause error) {
	c.mu.Lock()
	if c.cause == nil {
		c.cause = cause
	}
	c.mu.Unlock()
	c.conn.Close()
}

// withDeadline runs op, a blocking read or write, with ctx's deadline set
// through setDeadline and a cancellation of ctx turned into an immediate
// deadline. It clears the deadline afterwards and reports a timeout as
// ctx's error.
func withDeadline(ctx context.Context, setDeadline func(time.Time) error, op func() error) error {
	if ctx.Done() == nil {
		return op()
	}
	dl, _ := ctx.Deadline()
	setDeadline(dl)
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		setDeadline(aLongTimeAgo)
		close(fired)
	})
	err := op()
	if !stop() {
		<-fired // so that clearing below is not undone by a late setDeadline
	}
	setDeadline(time.Time{})
	var ne net.Error
	if err != nil && errors.As(err, &ne) && ne.Timeout() {
		// The only deadlines here are ctx's; the socket's timer may fire
		// a moment before ctx's own, so ctx.Err() can still be nil.
		if ctxErr := ctx.Err(); ctxErr != nil {
			return ctxErr
		}
		return context.DeadlineExceeded
	}
	return err
}

// readLoop is the connection's only reader. It never blocks on anything
// but the socket: replies go to buffered per-command channels and events
// to the drop-oldest queue.
func (c *Client) readLoop() {
	var readErr error
	for {
		line, err := c.lines.next()
		if err != nil {
			readErr = err
			break
		}
		c.dispatch(line)
	}
	c.conn.Close()
	c.mu.Lock()
	if c.cause == nil { // QEMU hung up, or the stream broke
		c.cause = readErr
	}
	c.err = fmt.Errorf("%w: %w", ErrClosed, c.cause)
	c.pending = nil
	c.mu.Unlock()
	close(c.events)
	close(c.done)
}

// dispatch routes one line to the command waiting for it or to the event
// queue, and counts what it has to discard.
func (c *Client) dispatch(line []byte) {
	if len(bytes.TrimSpace(line)) == 0 {
		return
	}
	m, err := parseMessage(line)
	if err != nil {
		c.malformedLines.Add(1)
		return
	}
	if m.isEvent() {
		c.queueEvent(m.event())
		return
	}
	id, ok := m.replyID()
	if !ok {
		c.unmatchedReplies.Add(1)
		return
	}
	replies, ok := c.take(id)
	if !ok {
		c.unmatchedReplies.Add(1)
		return
	}
	replies <- response{ret: m.Return, err: m.Error} // buffered, never blocks
}

// queueEvent adds ev to the event queue, dropping the oldest events to make
// room. Only the reader sends on c.events, so every pass either sends or
// frees a slot, and the loop ends.
func (c *Client) queueEvent(ev Event) {
	for {
		select {
		case c.events <- ev:
			return
		default:
		}
		select {
		case <-c.events:
			c.droppedEvents.Add(1)
		default:
		}
	}
}
