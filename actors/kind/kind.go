// Package kind is the contract between labd's generic node actor and the
// node kinds. The actor runs the lifecycle (validate, record, effect),
// owns the links, captures and console proxy of every node, and asks a
// Driver for what differs between kinds: their properties, their ports,
// how a node is launched, stopped, suspended, reset and adopted after a
// restart. Each kind is a package under actors/ implementing Driver
// (actors/vpcs, actors/qemu, actors/ethernet_switch...); a kind that runs
// no process builds an in-process fabric on nio instead.
//
// The package also holds what drivers and the actor share: the error
// classes, the node processes (started in their own session so that they
// outlive a labd crash) and the unprivileged account they run as. It
// imports nio and no other labd package; in particular it knows nothing of
// events: the actor turns what a driver reports into events.
package kind

import (
	"encoding/json"
	"errors"
)

// Port names a node port by GNS3's adapter and port numbers.
type Port struct{ Adapter, Port int }

// Info describes a kind.
type Info struct {
	// Kind is the node type in GNS3's words: "vpcs", "ethernet_switch".
	Kind string
	// Title names the kind in messages: "VPCS", "Ethernet switch".
	Title string
	// ConsoleTypes are the console types a node of the kind may have,
	// the default first; none means it has no console at all.
	ConsoleTypes []string
	// MACOffset says that each node of the kind takes a MAC offset unique
	// in its project (VPCS's -m).
	MACOffset bool
	// AutoStart says that a node runs from its creation on: GNS3's
	// built-in devices are started when created.
	AutoStart bool
	// AlwaysOn says that stop and suspend leave the node running: GNS3's
	// switches and hubs are always started.
	AlwaysOn bool
	// Caps are the lifecycle operations a running node of the kind has
	// beyond start and stop; the strict dialects refuse the others
	// before anything is recorded.
	Caps Caps
}

// HasConsole reports whether the kind's nodes may have a console.
func (i Info) HasConsole() bool { return len(i.ConsoleTypes) > 0 }

// Can reports whether the kind has all of the operations c.
func (i Info) Can(c Caps) bool { return i.Caps&c == c }

// Caps is a set of lifecycle operations of a kind.
type Caps uint8

// Lifecycle operations a kind may have.
const (
	// CanPause: Run.Suspend and Run.Resume pause and continue the node
	// in memory.
	CanPause Caps = 1 << iota
	// CanPowerButton: the Run is a PowerButton, so a stop can be
	// graceful (the guest is asked, then forced after a timeout).
	CanPowerButton
	// CanSave: the Run is a Saver (suspend to disk, restored by the next
	// Launch of a Node with Restore).
	CanSave
	// CanReset: Run.Reset resets the machine in place (a hard reboot).
	CanReset
)

// PowerButton is a Run whose guest can be asked to shut down (QEMU's ACPI
// power button). Pressing it returns at once; the process ends when the
// guest has powered off, if it ever does.
type PowerButton interface {
	PressPowerButton() error
}

// Saver is a Run that can save its machine's whole state to the node's
// disks (suspend to disk). The machine is left paused: the caller then
// ends the run, and a Launch of the node with Node.Restore resumes it.
type Saver interface {
	Save() error
}

// Sizer is a Driver whose nodes have a size: virtual CPUs and memory.
type Sizer interface {
	// Size returns the CPUs and the memory in MB the properties give.
	Size(props json.RawMessage) (cpus, ramMB int)
	// Resize returns n's properties with cpus and ramMB, settled as a
	// Settle of that change would.
	Resize(n Node, cpus, ramMB int) (json.RawMessage, error)
}

// Node is what a driver sees of a node.
type Node struct {
	ProjectID, ID, Name string
	// Console is the public console port, 0 when none.
	Console     int
	ConsoleType string
	// MACID is the node's MAC offset in its project (Info.MACOffset).
	MACID int
	// Properties are the kind's own settings, as the driver settled them.
	Properties json.RawMessage
	// Dir is the node's working directory, ProjectDir its project's.
	Dir, ProjectDir string
	// Links are the node's linked ports.
	Links []Link
	// ConsolePassword is the password of the node's VNC console, ""
	// for none.
	ConsolePassword string
	// Restore says that a Launch resumes the state a Saver saved.
	Restore bool
	// BootCD is a CD image a Launch boots from (a CDBooter's), "" for
	// none; once with BootCDOnce.
	BootCD     string
	BootCDOnce bool
}

// CDBooter is a kind that can boot a start from a CD image of its own
// (Danube Cloud's cdimage).
type CDBooter interface {
	// CheckCD says whether the image name can be booted.
	CheckCD(n Node, name string) error
}

// Link is a linked port of a node.
type Link struct {
	Port
	// Up is false while the link is suspended.
	Up bool
}

// Linked returns the link of port p.
func (n Node) Linked(p Port) (Link, bool) {
	for _, l := range n.Links {
		if l.Port == p {
			return l, true
		}
	}
	return Link{}, false
}

// A Driver is one node kind.
type Driver interface {
	// Info describes the kind.
	Info() Info
	// Available reports why this host cannot run the kind at this moment
	// (a program or an engine that is missing, in GNS3's words where GNS3
	// has them), nil when it can.
	Available() error
	// Settle applies patch, the kind's own change (nil: none), to the
	// properties n records (nil in a create) and checks the result against
	// the kind's schema and this host: it returns the properties to
	// record. n carries the node's new name and console type.
	Settle(n Node, patch any) (json.RawMessage, error)
	// Ports are the ports of a node with the properties props.
	Ports(props json.RawMessage) []Port
	// Prepare does what a recorded create (old nil) or update means for
	// the node's files: VPCS's startup script.
	Prepare(old *Node, n Node, patch any) error
	// Launch starts a node. On failure nothing of it is left running and
	// every port it took is released.
	Launch(h Host, n Node) (Run, error)
	// Adopt takes over the run rec records, which a labd before this one
	// started. On failure nothing of it is left open, and a process that
	// runs is left to the caller.
	Adopt(h Host, n Node, rec Record) (Run, error)
}

// A Run is a launched node. The node actor calls its methods one at a
// time.
type Run interface {
	// End returns the link end of a port, which the actor attaches the
	// port's link, filters and capture to; nil when it has none.
	End(p Port) End
	// Process is the run's process, nil for a kind that runs inside labd.
	Process() *Process
	// Console is the address the node's telnet console proxy forwards
	// to; "" when the kind serves its console itself, or has none.
	Console() string
	// Record is what the history keeps of the run, to adopt it after a
	// restart.
	Record() Record
	// Notices are what the node reports on its own (a pause or a reset
	// from inside the guest...), in order; the channel is closed when the
	// run ends, before its process's end is seen. Nil when it reports
	// nothing.
	Notices() <-chan Notice
	// Stop ends the run as mode says and returns its process's exit
	// code. Everything the run held is released.
	Stop(mode StopMode) int
	// Release closes labd's handles on the run and leaves its process
	// running and its ports held, for the next labd to adopt.
	Release()
	// Suspend pauses the node and Resume continues it; ErrUnsupported
	// when the kind cannot (GNS3 then answers 204 and does nothing).
	Suspend() error
	Resume() error
	// Reset resets the running machine (a reload); ErrUnsupported when a
	// reload must restart the node instead.
	Reset(n Node) error
	// Update applies the node's changed properties to the live run (a
	// switch's ports_mapping); properties that only a start applies are
	// left for the next one.
	Update(n Node) error
	// LinkChanged tells the run that a port's link came up or went down.
	LinkChanged(p Port, up bool)
}

// Notice is something a node reports on its own.
type Notice int

// Notices.
const (
	NoticePaused     Notice = iota + 1 // the guest, or QEMU, paused the machine
	NoticeResumed                      // ... or continued it
	NoticeReset                        // the guest reset the machine
	NoticePoweredOff                   // the guest powered off: the exit that follows is its doing
)

// Record is what the history keeps of a run (events.NodeStarted).
type Record struct {
	// PID and ProcStart name the process, 0 for an in-process run.
	PID       int
	ProcStart uint64
	// CommandLine is the process's command line.
	CommandLine string
	// InternalConsole is the TCP port the process serves its console on.
	InternalConsole int
	// Tunnels are the run's UDP tunnels, held while it runs.
	Tunnels []Tunnel
	// Control is the kind's control socket (QEMU's QMP).
	Control string
}

// Tunnel is the local UDP tunnel between one node port and labd's bridge
// (events.Tunnel).
type Tunnel struct {
	Port
	// NodePort is the node's own UDP port, BridgePort labd's end, both on
	// 127.0.0.1; RelayPort is a port the process binds besides (VPCS
	// before 0.8), 0 when none.
	NodePort, BridgePort, RelayPort int
}

// Ports returns the UDP ports the tunnel holds.
func (t Tunnel) Ports() []int {
	if t.RelayPort != 0 {
		return []int{t.NodePort, t.BridgePort, t.RelayPort}
	}
	return []int{t.NodePort, t.BridgePort}
}

// StopMode says how a run ends.
type StopMode int

// Stop modes.
const (
	StopWait    StopMode = iota // the process ended by itself: wait for it
	StopKill                    // end it at once (SIGTERM, then SIGKILL)
	StopRequest                 // end it the kind's way (QEMU: its on_close)
	StopClosing                 // as StopRequest, without waiting for a guest (project close, labd stop)
)

// ErrUnsupported is what a Run returns for an operation its kind does not
// have.
var ErrUnsupported = errors.New("not supported by this node kind")
