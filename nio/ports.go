package nio

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// PortRange is an inclusive range of port numbers.
type PortRange struct {
	First, Last int
}

// ParsePortRange parses "FIRST-LAST".
func ParsePortRange(s string) (PortRange, error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return PortRange{}, fmt.Errorf("port range %q: want FIRST-LAST", s)
	}
	first, err1 := strconv.Atoi(strings.TrimSpace(a))
	last, err2 := strconv.Atoi(strings.TrimSpace(b))
	if err1 != nil || err2 != nil {
		return PortRange{}, fmt.Errorf("port range %q: not numbers", s)
	}
	r := PortRange{first, last}
	return r, r.Validate()
}

// Validate checks that the range is a non-empty range of valid ports.
func (r PortRange) Validate() error {
	if r.First < 1 || r.Last > 65535 || r.First > r.Last {
		return fmt.Errorf("port range %d-%d: want 1 <= FIRST <= LAST <= 65535", r.First, r.Last)
	}
	return nil
}

// Contains reports whether port is in the range.
func (r PortRange) Contains(port int) bool { return r.First <= port && port <= r.Last }

func (r PortRange) String() string { return fmt.Sprintf("%d-%d", r.First, r.Last) }

// ErrExhausted is returned when a pool has no free port left.
var ErrExhausted = errors.New("nio: no free port")

// ExhaustedError details ErrExhausted in GNS3's words.
type ExhaustedError struct {
	Range PortRange
	Host  string
}

func (e *ExhaustedError) Error() string {
	return fmt.Sprintf("Could not find a free port between %d and %d on host %s", e.Range.First, e.Range.Last, e.Host)
}

// Is makes an *ExhaustedError match ErrExhausted.
func (e *ExhaustedError) Is(target error) bool { return target == ErrExhausted }

// Pool hands out the ports of one protocol within a range. A port is free
// when the pool has not handed it out and nothing on the host is bound to
// it: ports held by processes outside labd (an orphan of another daemon, a
// user's program) are skipped, as GNS3 does.
type Pool struct {
	network string // "udp" or "tcp"
	host    string
	rng     PortRange

	mu   sync.Mutex // guards the following
	used map[int]bool
}

// NewPool returns a pool of network ("udp" or "tcp") ports in r on host.
func NewPool(network, host string, r PortRange) (*Pool, error) {
	if network != "udp" && network != "tcp" {
		return nil, fmt.Errorf("nio: pool network %q: want udp or tcp", network)
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return &Pool{network: network, host: host, rng: r, used: map[int]bool{}}, nil
}

// Range returns the pool's range.
func (p *Pool) Range() PortRange { return p.rng }

// Allocate hands out the lowest free port.
func (p *Pool) Allocate() (int, error) { return p.AllocateIn(p.rng) }

// AllocateIn hands out the lowest free port of the part of r inside the
// pool's range (a VNC console takes its port from the console pool, at or
// above 5900: one pool keeps telnet and VNC consoles from colliding).
func (p *Pool) AllocateIn(r PortRange) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r = PortRange{First: max(r.First, p.rng.First), Last: min(r.Last, p.rng.Last)}
	for port := r.First; port <= r.Last; port++ {
		if p.used[port] {
			continue
		}
		// Binding under the lock keeps two callers from testing and
		// taking the same port; it is one short syscall pair.
		if !p.bindable(port) {
			continue
		}
		p.used[port] = true
		return port, nil
	}
	return 0, &ExhaustedError{Range: r, Host: p.host}
}

// Reserve marks port as handed out, to restore allocations recorded in the
// history. Ports outside the range are accepted: the range may have been
// narrowed since they were handed out.
func (p *Pool) Reserve(port int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.used[port] {
		return fmt.Errorf("nio: %s port %d is already allocated", p.network, port)
	}
	p.used[port] = true
	return nil
}

// Take hands out a given port if it is free: not handed out, and not bound
// by anyone on the host. Unlike Reserve, it may be outside the range.
func (p *Pool) Take(port int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.used[port] {
		return fmt.Errorf("nio: %s port %d is already allocated", p.network, port)
	}
	if port < 1 || port > 65535 || !p.bindable(port) {
		return fmt.Errorf("nio: %s port %d is in use", p.network, port)
	}
	p.used[port] = true
	return nil
}

// Release returns port to the pool.
func (p *Pool) Release(port int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.used, port)
}

// Used returns the ports handed out, ascending.
func (p *Pool) Used() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	ports := make([]int, 0, len(p.used))
	for port := range p.used {
		ports = append(ports, port)
	}
	slices.Sort(ports)
	return ports
}

func (p *Pool) bindable(port int) bool {
	addr := net.JoinHostPort(p.host, strconv.Itoa(port))
	if p.network == "udp" {
		c, err := net.ListenPacket("udp", addr)
		if err != nil {
			return false
		}
		c.Close()
		return true
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	l.Close()
	return true
}
