package kind

import (
	"fmt"
	"net"
	"strconv"
	"sync"

	"labd/nio"
)

// What the kinds that run inside labd (switch, hub, cloud) share: their
// ports are the entries of a GNS3 ports_mapping, all on adapter 0, and
// their runs have no process.

// MappedPort is an entry of a ports_mapping: a name and a number.
type MappedPort interface {
	Number() int
	Label() string
}

// CheckMapping checks the names and numbers of a ports_mapping: every port
// named, numbered 0..65535, no number and no name twice.
func CheckMapping[P MappedPort](ports []P) error {
	numbers, names := map[int]bool{}, map[string]bool{}
	for _, p := range ports {
		switch n := p.Number(); {
		case p.Label() == "":
			return Invalid("ports_mapping: port %d has no name", n)
		case n < 0 || n > 65535:
			return Invalid("ports_mapping: port number %d is not between 0 and 65535", n)
		case numbers[n]:
			return Invalid("ports_mapping: port number %d appears twice", n)
		case names[p.Label()]:
			return Invalid("ports_mapping: port name %q appears twice", p.Label())
		}
		numbers[p.Number()], names[p.Label()] = true, true
	}
	return nil
}

// MappingPorts are the ports of a ports_mapping: adapter 0's, by number.
func MappingPorts[P MappedPort](ports []P) []Port {
	out := make([]Port, len(ports))
	for i, p := range ports {
		out[i] = Port{Port: p.Number()}
	}
	return out
}

// Mapped returns the entry of port number, false when there is none.
func Mapped[P MappedPort](ports []P, number int) (P, bool) {
	for _, p := range ports {
		if p.Number() == number {
			return p, true
		}
	}
	var zero P
	return zero, false
}

// EnsurePorts returns ports with the numbers not there yet added, each as
// mk makes it.
func EnsurePorts[P MappedPort](ports []P, numbers []int, mk func(number int) P) []P {
	for _, n := range numbers {
		if _, ok := Mapped(ports, n); !ok {
			ports = append(ports, mk(n))
		}
	}
	return ports
}

// KeepLinked refuses a new ports_mapping that lacks a port with a link.
func KeepLinked[P MappedPort](ports []P, links []Link) error {
	for _, l := range links {
		if _, ok := Mapped(ports, l.Port.Port); l.Adapter != 0 || !ok {
			return Conflict("port %d has a link: remove it before removing the port", l.Port.Port)
		}
	}
	return nil
}

// InProcess gives the run of a kind that runs inside labd the methods it
// has nothing for: no process to record or watch, no console of its own,
// no pause, reset or carrier; a run embeds it and keeps its own Stop,
// Release, Update and End.
type InProcess struct{}

func (InProcess) Process() *Process      { return nil }
func (InProcess) Console() string        { return "" }
func (InProcess) Record() Record         { return Record{} }
func (InProcess) Notices() <-chan Notice { return nil }
func (InProcess) Suspend() error         { return ErrUnsupported }
func (InProcess) Resume() error          { return ErrUnsupported }
func (InProcess) Reset(Node) error       { return ErrUnsupported }
func (InProcess) LinkChanged(Port, bool) {}

// ConsoleAddr is the address of a process's internal console, "" when it
// has none.
func ConsoleAddr(port int) string {
	if port == 0 {
		return ""
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// FabricPorts are the open ports of an in-process fabric (a switch's, a
// hub's), by number, as the node's ports_mapping has them.
type FabricPorts struct {
	mu    sync.Mutex // guards ports
	ports map[int]*nio.Bridge
}

// Sync makes the open ports those numbered in want: a new one is opened
// by open and wired to its link (h.Wire), one already open is given to
// keep (nil: left as it is), one no longer wanted is closed.
func (f *FabricPorts) Sync(h Host, want []int, open func(number int) (*nio.Bridge, error), keep func(number int) error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ports == nil {
		f.ports = map[int]*nio.Bridge{}
	}
	wanted := map[int]bool{}
	for _, n := range want {
		wanted[n] = true
		if f.ports[n] != nil {
			if keep != nil {
				if err := keep(n); err != nil {
					return fmt.Errorf("port %d: %w", n, err)
				}
			}
			continue
		}
		br, err := open(n)
		if err != nil {
			return fmt.Errorf("port %d: %w", n, err)
		}
		f.ports[n] = br
		if err := h.Wire(Port{Port: n}, br); err != nil {
			return err
		}
	}
	for n, br := range f.ports {
		if !wanted[n] {
			_ = br.Close()
			delete(f.ports, n)
		}
	}
	return nil
}

// End returns the end of port p, nil when it has none.
func (f *FabricPorts) End(p Port) End {
	f.mu.Lock()
	defer f.mu.Unlock()
	if br := f.ports[p.Port]; br != nil && p.Adapter == 0 {
		return br
	}
	return nil
}
