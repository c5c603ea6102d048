package console

import (
	"context"
	"fmt"
	"net"
	"time"
)

const (
	targetReadSize     = 16 << 10
	dialRetryInterval  = 50 * time.Millisecond // between attempts while the process opens its console
	dialAttemptTimeout = time.Second
	minRedialDelay     = 50 * time.Millisecond // backoff after the target was lost
	maxRedialDelay     = 2 * time.Second
)

// disconnectedNotice is written to every client when the target closes
// the console by itself.
var disconnectedNotice = []byte("\r\n[console disconnected]\r\n")

// superviseTarget owns the connection to the target from Start to Close:
// it relays it, replaces it on Reset, and reconnects when it is lost.
func (p *Proxy) superviseTarget(conn net.Conn) {
	for conn != nil {
		p.setTarget(conn)
		reset := p.relayTarget(conn)
		p.setTarget(nil)
		conn = p.reconnect(reset)
	}
}

func (p *Proxy) setTarget(conn net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.target = conn
}

// relayTarget fans the target's output out until the connection is lost,
// a Reset asks for a new one (returned), or the proxy closes. It closes
// conn before returning.
func (p *Proxy) relayTarget(conn net.Conn) (reset chan<- error) {
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		p.readTarget(conn)
	}()
	select {
	case <-readerDone:
	case reset = <-p.resets:
	case <-p.ctx.Done():
	}
	conn.Close()
	<-readerDone
	return reset
}

func (p *Proxy) readTarget(conn net.Conn) {
	buf := make([]byte, targetReadSize)
	for {
		n, err := conn.Read(buf)
		if n > 0 {
			p.broadcast(buf[:n])
		}
		if err != nil {
			return
		}
	}
}

// broadcast queues b for every client and drops those that cannot take it.
func (p *Proxy) broadcast(b []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tail.write(b)
	for c := range p.clients {
		if !c.enqueue(b) {
			delete(p.clients, c)
			c.stop(errSlowClient)
			p.log.Warn("console client dropped: too slow", "clients", len(p.clients))
		}
	}
}

// reconnect returns the next target connection, or nil once the proxy
// closes. reset, if set, is the Reset that dropped the last one; it gets
// its answer here.
func (p *Proxy) reconnect(reset chan<- error) net.Conn {
	if p.ctx.Err() != nil {
		if reset != nil {
			reset <- errProxyClosed
		}
		return nil
	}
	if reset != nil {
		if conn := p.answerReset(reset); conn != nil {
			return conn
		}
	} else {
		p.log.Warn("console target disconnected; reconnecting")
		p.broadcast(disconnectedNotice)
	}
	return p.redial()
}

func (p *Proxy) answerReset(reply chan<- error) net.Conn {
	conn, err := dialUntil(p.ctx, p.cfg.Target, p.cfg.DialTimeout)
	if err != nil {
		reply <- err
		p.log.Warn("console reset: reconnect failed", "err", err)
		return nil
	}
	// Installed before Reset returns, so input typed right after it is
	// not dropped.
	p.setTarget(conn)
	reply <- nil
	p.log.Info("console reset")
	return conn
}

// redial tries to reach the target with exponential backoff until it
// succeeds or the proxy closes, answering Resets meanwhile.
func (p *Proxy) redial() net.Conn {
	delay := minRedialDelay
	timer := time.NewTimer(delay)
	defer timer.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return nil
		case reply := <-p.resets:
			if conn := p.answerReset(reply); conn != nil {
				return conn
			}
		case <-timer.C:
			conn, err := dialOnce(p.ctx, p.cfg.Target)
			if err == nil {
				p.log.Info("console target reconnected")
				return conn
			}
			delay = min(2*delay, maxRedialDelay)
			timer.Reset(delay)
		}
	}
}

// dialUntil connects to addr, retrying every dialRetryInterval until
// timeout passes or ctx ends.
func dialUntil(ctx context.Context, addr string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	retry := time.NewTicker(dialRetryInterval)
	defer retry.Stop()
	var lastErr error
	for {
		conn, err := dialOnce(ctx, addr)
		if err == nil {
			return conn, nil
		}
		if ctx.Err() == nil || lastErr == nil {
			// Keep the last refusal rather than the timeout that cut
			// the final attempt short.
			lastErr = err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("console: connect to %s: %w: %w", addr, ctx.Err(), lastErr)
		case <-retry.C:
		}
	}
}

func dialOnce(ctx context.Context, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: dialAttemptTimeout}
	return d.DialContext(ctx, "tcp", addr)
}

// writeTarget forwards one client's input to the target. Writes are
// serialised, so two clients' reads never interleave. Input is dropped
// while the target is disconnected or when it does not take it within
// the write timeout.
func (p *Proxy) writeTarget(b []byte) {
	p.inMu.Lock()
	defer p.inMu.Unlock()
	p.mu.Lock()
	conn := p.target
	p.mu.Unlock()
	if conn == nil {
		return
	}
	conn.SetWriteDeadline(time.Now().Add(p.cfg.writeTimeout))
	if _, err := conn.Write(b); err != nil {
		p.log.Debug("console input dropped", "err", err)
	}
}
