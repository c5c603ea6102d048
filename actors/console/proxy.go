package console

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"
)

// Tunables. The write timeout and queue size can be lowered by tests
// through Config's unexported fields.
const (
	defaultDialTimeout  = 10 * time.Second
	defaultWriteTimeout = 5 * time.Second // a client write, or a write to the target, stalled this long fails
	defaultQueueBytes   = 256 << 10       // output waiting for one client before it counts as too slow
	acceptRetryDelay    = 100 * time.Millisecond
)

// ErrPortInUse is returned by Start when the public console address is
// already bound.
var ErrPortInUse = errors.New("console: port in use")

var (
	errProxyClosed = fmt.Errorf("console: proxy closed: %w", net.ErrClosed)
	errSlowClient  = errors.New("console: client too slow: output queue full")
	errStalled     = errors.New("console: client too slow: write stalled")
)

// Config describes one console proxy.
type Config struct {
	// Listen is the public address, "host:port", bound by Start.
	Listen string
	// Target is the process's console, "127.0.0.1:port".
	Target string
	// DialTimeout is how long Start (and Reset) keep retrying to reach
	// Target, which the process needs a moment to open; 0 means 10 s.
	DialTimeout time.Duration
	// Logger receives the proxy's logs; nil discards them.
	Logger *slog.Logger
	// Lazy makes Start return once Listen is bound and reach Target in
	// the background, as after a lost connection: for a process that
	// already runs (labd adopting it) and may be slow to answer.
	Lazy bool

	writeTimeout time.Duration // 0: defaultWriteTimeout
	queueBytes   int           // 0: defaultQueueBytes
}

func (cfg Config) withDefaults() Config {
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = defaultDialTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.writeTimeout <= 0 {
		cfg.writeTimeout = defaultWriteTimeout
	}
	if cfg.queueBytes <= 0 {
		cfg.queueBytes = defaultQueueBytes
	}
	return cfg
}

// Proxy serves one node's public console and relays it to the process's
// console. It is safe for concurrent use.
type Proxy struct {
	cfg    Config
	ln     net.Listener
	addr   netip.AddrPort
	log    *slog.Logger
	ctx    context.Context // ends when Close begins; bounds every goroutine and dial
	cancel context.CancelFunc
	resets chan chan<- error // Reset's requests to the target supervisor
	wg     sync.WaitGroup

	inMu sync.Mutex // serialises client input to the target

	mu      sync.Mutex // guards the following
	closed  bool
	target  net.Conn // the process's console; nil while disconnected
	clients map[*client]struct{}
	tail    tail
}

// Start binds cfg.Listen, connects to cfg.Target, retrying until
// cfg.DialTimeout passes or ctx ends (unless cfg.Lazy), then serves
// clients until Close. ctx bounds Start only. On failure nothing is left open; a taken Listen
// address fails with an error wrapping ErrPortInUse.
func Start(ctx context.Context, cfg Config) (*Proxy, error) {
	cfg = cfg.withDefaults()
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", cfg.Listen)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("%w: %w", ErrPortInUse, err)
		}
		return nil, fmt.Errorf("console: %w", err)
	}
	var target net.Conn
	if !cfg.Lazy {
		if target, err = dialUntil(ctx, cfg.Target, cfg.DialTimeout); err != nil {
			ln.Close()
			return nil, err
		}
	}
	bound := ln.Addr().(*net.TCPAddr).AddrPort()
	p := &Proxy{
		cfg:     cfg,
		ln:      ln,
		addr:    netip.AddrPortFrom(bound.Addr().Unmap(), bound.Port()),
		log:     cfg.Logger.With("listen", ln.Addr().String(), "target", cfg.Target),
		resets:  make(chan chan<- error),
		clients: make(map[*client]struct{}),
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.wg.Go(p.acceptLoop)
	p.wg.Go(func() {
		if target == nil {
			target = p.redial()
		}
		p.superviseTarget(target)
	})
	p.log.Debug("console proxy started")
	return p, nil
}

// Addr returns the bound public address.
func (p *Proxy) Addr() netip.AddrPort { return p.addr }

// Clients returns how many clients are connected, telnet and Serve alike.
func (p *Proxy) Clients() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.clients)
}

// Serve serves one client that is not a telnet connection (a WebSocket
// console) exactly like a telnet client, until ctx ends, rw fails, or the
// proxy closes; a client that hangs up (io.EOF) ends it with nil.
//
// To interrupt a blocked Read or Write, Serve sets a past deadline when rw
// has SetDeadline (a net.Conn has), and otherwise closes rw if it is an
// io.Closer; either must not block. Serve returns only after its Read has
// returned, and closes rw on return if it is an io.Closer.
func (p *Proxy) Serve(ctx context.Context, rw io.ReadWriter) error {
	return p.serveClient(ctx, rw)
}

// Reset drops the connection to the target and reconnects, retrying for
// up to DialTimeout, as GNS3's console/reset does. Clients stay connected.
// If it fails, the proxy keeps reconnecting in the background.
func (p *Proxy) Reset() error {
	reply := make(chan error, 1)
	select {
	case p.resets <- reply:
	case <-p.ctx.Done():
		return errProxyClosed
	}
	// The supervisor answers every request it takes, even while closing.
	return <-reply
}

// Close closes the listener, every client and the target connection, and
// waits for every goroutine the proxy started. It is idempotent. A Serve
// call in progress returns an error wrapping net.ErrClosed.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.wg.Wait()
		return nil
	}
	p.closed = true
	for c := range p.clients {
		c.stop(errProxyClosed)
	}
	p.mu.Unlock()

	p.cancel()
	err := p.ln.Close()
	p.wg.Wait()
	p.log.Debug("console proxy closed")
	if err != nil {
		return fmt.Errorf("console: close listener: %w", err)
	}
	return nil
}

func (p *Proxy) acceptLoop() {
	for {
		conn, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait, don't spin.
			p.log.Warn("console accept failed", "err", err)
			select {
			case <-p.ctx.Done():
				return
			case <-time.After(acceptRetryDelay):
			}
			continue
		}
		p.wg.Go(func() {
			err := p.serveClient(context.Background(), conn)
			p.log.Debug("console client left", "client", conn.RemoteAddr().String(), "cause", err)
		})
	}
}

// serveClient runs one client from registration to removal: its reader on
// a goroutine of its own, its writer on the caller's.
func (p *Proxy) serveClient(ctx context.Context, rw io.ReadWriter) error {
	c := newClient(rw, p.cfg.queueBytes)
	n, ok := p.register(c)
	if !ok {
		closeIfCloser(rw)
		return errProxyClosed
	}
	p.log.Debug("console client joined", "clients", n)
	stopOnCancel := context.AfterFunc(ctx, func() { c.stop(ctx.Err()) })

	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		c.readLoop(p.writeTarget)
	}()
	c.writeLoop(p.cfg.writeTimeout)
	c.stop(nil)
	stopOnCancel()
	<-readerDone

	p.unregister(c)
	closeIfCloser(rw)
	return c.cause
}

// register adds c and queues its greeting: the telnet negotiation and the
// recent output. Both happen under mu, so c sees every byte of output from
// then on exactly once.
func (p *Proxy) register(c *client) (clients int, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return 0, false
	}
	c.greet(negotiation, &p.tail)
	p.clients[c] = struct{}{}
	return len(p.clients), true
}

func (p *Proxy) unregister(c *client) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.clients, c)
}

func closeIfCloser(rw io.ReadWriter) {
	if cl, ok := rw.(io.Closer); ok {
		cl.Close()
	}
}
