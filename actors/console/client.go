package console

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// clientReadSize is the buffer for one read of a client's input.
const clientReadSize = 4 << 10

// aLongTimeAgo is a deadline in the past: setting it interrupts a blocked
// Read or Write at once.
var aLongTimeAgo = time.Unix(1, 0)

// deadliner is the part of net.Conn that lets stop interrupt a client
// without closing it under a lock.
type deadliner interface {
	SetDeadline(time.Time) error
}

// client is one console client. The target reader appends output to
// pending; writeLoop sends it, two buffers swapped, so no output is
// allocated once both have grown.
type client struct {
	rw         io.ReadWriter
	queueBytes int
	wake       chan struct{} // pending has data; capacity 1
	done       chan struct{} // closed by stop
	stopOnce   sync.Once
	cause      error // why the client stopped; set once, inside stopOnce

	mu      sync.Mutex // guards pending
	pending []byte
}

func newClient(rw io.ReadWriter, queueBytes int) *client {
	return &client{
		rw:         rw,
		queueBytes: queueBytes,
		wake:       make(chan struct{}, 1),
		done:       make(chan struct{}),
	}
}

// greet queues the first bytes a client gets.
func (c *client) greet(negotiation []byte, recent *tail) {
	c.mu.Lock()
	c.pending = append(c.pending, negotiation...)
	c.pending = recent.appendTo(c.pending)
	c.mu.Unlock()
	c.signal()
}

// enqueue queues output for the client. It reports false, queueing
// nothing, if the queue would exceed its bound.
func (c *client) enqueue(b []byte) bool {
	c.mu.Lock()
	if len(c.pending)+len(b) > c.queueBytes {
		c.mu.Unlock()
		return false
	}
	c.pending = append(c.pending, b...)
	c.mu.Unlock()
	c.signal()
	return true
}

func (c *client) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// take returns the queued output and makes spare, emptied, the new queue.
func (c *client) take(spare []byte) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.pending
	c.pending = spare[:0]
	return out
}

// stop ends the client for cause (nil: it hung up) and interrupts its
// blocked Read and Write. Only the first call counts. It never blocks, so
// it may be called with the proxy's lock held.
func (c *client) stop(cause error) {
	c.stopOnce.Do(func() {
		c.cause = cause
		close(c.done)
		if d, ok := c.rw.(deadliner); ok {
			d.SetDeadline(aLongTimeAgo)
		} else if cl, ok := c.rw.(io.Closer); ok {
			cl.Close()
		}
	})
}

func (c *client) stopped() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// writeLoop sends queued output until the client stops or a write fails.
// A write blocked for longer than timeout stops the client.
func (c *client) writeLoop(timeout time.Duration) {
	stall := time.AfterFunc(timeout, func() { c.stop(errStalled) })
	stall.Stop()
	defer stall.Stop()

	var batch []byte
	for {
		select {
		case <-c.done:
			return
		case <-c.wake:
		}
		batch = c.take(batch)
		if len(batch) == 0 || c.stopped() {
			continue
		}
		stall.Reset(timeout)
		_, err := c.rw.Write(batch)
		stall.Stop()
		if err != nil {
			c.stop(fmt.Errorf("console: write to client: %w", err))
			return
		}
	}
}

// readLoop passes the client's input, telnet commands removed, to forward
// until the client stops or a read fails.
func (c *client) readLoop(forward func([]byte)) {
	buf := make([]byte, clientReadSize)
	var telnet inputFilter
	for {
		n, err := c.rw.Read(buf)
		if data := telnet.filter(buf[:n]); len(data) > 0 && !c.stopped() {
			forward(data)
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = nil
			} else {
				err = fmt.Errorf("console: read from client: %w", err)
			}
			c.stop(err)
			return
		}
	}
}
