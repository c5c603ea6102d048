package replay

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"labd/events"
)

// NodeStatus is a node's stable lifecycle state, named by no dialect: each
// API renders it in its own words (GNS3's started is running, its
// suspended is paused). A deleted or closed node is no longer served, but
// its aggregate keeps its version so the node can be created again (GNS3
// controllers re-create nodes with the same ids each time a project is
// opened).
type NodeStatus string

// Node statuses.
const (
	NodeStopped NodeStatus = "stopped"
	NodeRunning NodeStatus = "running"
	// NodePaused: the process runs, its machine is paused in memory.
	NodePaused NodeStatus = "paused"
	// NodeSuspended: the machine's state is saved to its disks and no
	// process runs; a start restores it.
	NodeSuspended NodeStatus = "suspended"
	// NodeError: an operation failed and left the node in doubt; no
	// process runs.
	NodeError   NodeStatus = "error"
	NodeDeleted NodeStatus = "deleted"
	NodeClosed  NodeStatus = "closed"
)

// The transitional states a node is in while an operation runs (Node.Task).
const (
	TaskStarting      = "starting"
	TaskStopping      = "stopping"
	TaskRebooting     = "rebooting"
	TaskRebootingHard = "rebooting_hard"
	TaskPausing       = "pausing"
	TaskUnpausing     = "unpausing"
	TaskSuspending    = "suspending"
	TaskResuming      = "resuming"
	TaskResizing      = "resizing"
	TaskDeleting      = "deleting"
)

// MaxOperations is how many operation records a node's state keeps, the
// most recent; the history keeps them all.
const MaxOperations = 100

// Operation is an operation record: what was asked, and what became of it.
type Operation struct {
	events.Operation
	// State is PENDING, STARTED, SUCCESS, FAILURE or REVOKED.
	State   string `json:"state"`
	Message string `json:"message,omitempty"`
	Error   string `json:"error,omitempty"`
	// Started is when it was accepted, Ended when it ended (zero while
	// it is in flight).
	Started time.Time `json:"started"`
	Ended   time.Time `json:"ended,omitzero"`
}

// InFlight reports whether the operation has not ended.
func (o Operation) InFlight() bool { return o.State == events.OpPending || o.State == events.OpStarted }

// Definition is a pending definition (events.NodeDefined): the size the
// node is to have when an operation applies it. Zero keeps the current.
type Definition struct {
	CPUs  int       `json:"cpus,omitempty"`
	RAMMB int       `json:"ram_mb,omitempty"`
	At    time.Time `json:"at"`
}

// Resize is a resize waiting to be confirmed or reverted.
type Resize struct {
	// Previous are the properties before it.
	Previous json.RawMessage `json:"previous"`
	At       time.Time       `json:"at"`
}

// Link is a node port with a NIO attached.
type Link struct {
	Adapter int        `json:"adapter"`
	Port    int        `json:"port"`
	NIO     events.NIO `json:"nio"`
	// Capture is the running capture of the port, nil when none.
	Capture *events.CaptureStarted `json:"capture,omitempty"`
}

// Node is the folded state of one node aggregate. Like Project, a Node is
// immutable once folded: ApplyNode returns a new one.
type Node struct {
	ProjectID   string `json:"project_id"`
	ID          string `json:"node_id"`
	Kind        string `json:"kind"`
	Name        string `json:"name"`
	Console     int    `json:"console"`
	ConsoleType string `json:"console_type"`
	MACID       int    `json:"mac_id"`
	// Properties are the kind's own settings (see events.NodeCreated).
	Properties json.RawMessage `json:"properties,omitempty"`
	Status     NodeStatus      `json:"status"`
	// Process is the running process, nil unless the node is started.
	Process *events.NodeStarted `json:"process,omitempty"`
	// CommandLine is the command line of the last start ("" before any).
	CommandLine string `json:"command_line"`
	// Links are the linked ports, by adapter then port.
	Links []Link `json:"links"`
	// LastStop says why the node last stopped, nil if it never ran.
	LastStop *events.NodeStopped `json:"last_stop,omitempty"`
	// Task is the node's transitional state ("stopping"...), "" when no
	// operation is in flight.
	Task string `json:"task,omitempty"`
	// Operations are the node's operation records, oldest first: the
	// last MaxOperations, the one in flight included.
	Operations []Operation `json:"operations,omitempty"`
	// Resize is the resize waiting to be confirmed, nil when none.
	Resize *Resize `json:"resize,omitempty"`
	// Definition is the pending definition, nil when none.
	Definition *Definition `json:"definition,omitempty"`
	// Frozen says nothing may start the node until it is unfrozen.
	Frozen bool `json:"frozen,omitempty"`
	// PauseCause is who paused a paused node (events.CauseRequested,
	// CauseGuest, CauseSignal).
	PauseCause string `json:"pause_cause,omitempty"`
	// ConsolePassword is the VNC console's password, "" for none.
	ConsolePassword string `json:"console_password,omitempty"`
	// Metadata are the creator's key-value pairs.
	Metadata map[string]string `json:"metadata,omitempty"`
	Version  uint64            `json:"version"`
	Created  time.Time         `json:"created"`
	Updated  time.Time         `json:"updated"`
}

// Exists reports whether the node is served: created, not deleted or
// closed.
func (n *Node) Exists() bool {
	return n != nil && n.Status != NodeDeleted && n.Status != NodeClosed && n.Status != ""
}

// Running reports whether the node has a process.
func (n *Node) Running() bool { return n.Exists() && n.Process != nil }

// InFlight returns the operation in flight, nil when none. It need not be
// the last record: one that ends as it is accepted (a rename, a define)
// may come while another is in flight.
func (n *Node) InFlight() *Operation {
	if n == nil {
		return nil
	}
	if i := inFlight(n.Operations); i >= 0 {
		return &n.Operations[i]
	}
	return nil
}

// inFlight is the index of the record in flight in ops, -1 when none.
func inFlight(ops []Operation) int {
	for i := len(ops) - 1; i >= 0; i-- {
		if ops[i].InFlight() {
			return i
		}
	}
	return -1
}

// Operation returns the record of an operation the state keeps, by its id
// or its request id.
func (n *Node) Operation(id string) (Operation, bool) {
	for i := len(n.Operations) - 1; i >= 0; i-- {
		if op := n.Operations[i]; op.ID == id || op.RequestID != "" && op.RequestID == id {
			return op, true
		}
	}
	return Operation{}, false
}

// Link returns the link of a port.
func (n *Node) Link(adapter, port int) (Link, bool) {
	i, ok := n.linkIndex(adapter, port)
	if !ok {
		return Link{}, false
	}
	return n.Links[i], true
}

func (n *Node) linkIndex(adapter, port int) (int, bool) {
	return slices.BinarySearchFunc(n.Links, [2]int{adapter, port}, func(l Link, k [2]int) int {
		return cmp.Or(cmp.Compare(l.Adapter, k[0]), cmp.Compare(l.Port, k[1]))
	})
}

// NodeKey is the key of a node in State.Nodes.
func NodeKey(projectID, nodeID string) string { return projectID + "/" + nodeID }

// ApplyNode folds one event of a node aggregate. n is the node before the
// event, nil if the aggregate has no events yet; it is not modified.
func ApplyNode(n *Node, r events.Record) (*Node, error) {
	fail := func(why string) (*Node, error) {
		return nil, fmt.Errorf("replay: node %s: %s at sequence %d: %s", r.NodeID, r.Type, r.Seq, why)
	}
	var next Node
	if n != nil {
		if r.Seq <= n.Version {
			return fail(fmt.Sprintf("sequence does not follow version %d", n.Version))
		}
		next = *n
	}
	next.Version, next.Updated = r.Seq, r.At
	switch r.Data.(type) {
	case events.NodeCreated:
	case events.EffectFailed:
		// An effect of the node's last event failed (removing a deleted
		// node's directory...): a record, no state change.
		if n == nil {
			return fail("no such node")
		}
		return &next, nil
	default:
		if !n.Exists() {
			return fail("the node does not exist")
		}
	}
	switch d := r.Data.(type) {
	case events.NodeCreated:
		if n.Exists() {
			return fail("the node already exists")
		}
		next = Node{
			ProjectID: r.ProjectID, ID: r.NodeID, Kind: d.Kind, Name: d.Name,
			Console: d.Console, ConsoleType: d.ConsoleType, MACID: d.MACID, Properties: d.Properties,
			ConsolePassword: d.ConsolePassword, Metadata: d.Metadata,
			Status: NodeStopped, Version: r.Seq, Created: r.At, Updated: r.At,
		}
	case events.NodeUpdated:
		next.Name, next.Console, next.ConsoleType = d.Name, d.Console, d.ConsoleType
		if d.Properties != nil {
			next.Properties = d.Properties
		}
	case events.NodeStarted:
		if n.Running() {
			return fail("the node is already running")
		}
		if n.Frozen {
			return fail("the node is frozen")
		}
		p := d
		next.Status, next.Process, next.CommandLine = NodeRunning, &p, d.CommandLine
	case events.NodeStopped:
		// A stop of a node in error, which has no process, clears it.
		if !n.Running() && n.Status != NodeError {
			return fail("the node is not running")
		}
		s := d
		next.Status, next.Process, next.LastStop, next.PauseCause = NodeStopped, nil, &s, ""
	case events.NodeSaved:
		if !n.Running() {
			return fail("the node is not running")
		}
		next.Status, next.Process, next.PauseCause = NodeSuspended, nil, ""
	case events.NodeResized:
		if n.Resize != nil {
			return fail("a resize waits to be confirmed or reverted")
		}
		next.Properties, next.Resize = d.Properties, &Resize{Previous: d.Previous, At: r.At}
	case events.ResizeConfirmed:
		if n.Resize == nil {
			return fail("no resize waits to be confirmed")
		}
		next.Resize = nil
	case events.ResizeReverted:
		if n.Resize == nil {
			return fail("no resize waits to be reverted")
		}
		next.Properties, next.Resize = d.Properties, nil
	case events.NodeDefined:
		next.Definition = &Definition{CPUs: d.CPUs, RAMMB: d.RAMMB, At: r.At}
	case events.DefinitionApplied:
		if n.Definition == nil {
			return fail("no definition is pending")
		}
		if n.Running() {
			return fail("a definition applies to a node that does not run")
		}
		next.Properties, next.Definition = d.Properties, nil
	case events.NodeFrozen:
		if n.Status != NodeStopped {
			return fail("only a stopped node can be frozen")
		}
		next.Frozen = true
	case events.NodeUnfrozen:
		if !n.Frozen {
			return fail("the node is not frozen")
		}
		next.Frozen = false
	case events.OperationStarted:
		if op := n.InFlight(); op != nil {
			return fail(fmt.Sprintf("operation %s (%s) is in flight", op.ID, op.Op))
		}
		next.Task = d.Task
		next.Operations = keepRecent(n.Operations, Operation{Operation: d.Operation, State: d.State, Started: r.At})
	case events.OperationEnded:
		if d.Record != nil {
			next.Operations = keepRecent(n.Operations, Operation{Operation: *d.Record, State: d.State,
				Message: d.Message, Error: d.Error, Started: r.At, Ended: r.At})
			break
		}
		op := n.InFlight()
		if op == nil || op.ID != d.ID {
			return fail(fmt.Sprintf("operation %s is not in flight", d.ID))
		}
		if d.Fault {
			if n.Running() {
				return fail("a node with a process cannot be in error")
			}
			next.Status = NodeError
		}
		ended := *op
		ended.State, ended.Message, ended.Error, ended.Ended = d.State, d.Message, d.Error, r.At
		next.Operations = slices.Clone(n.Operations)
		next.Operations[inFlight(next.Operations)] = ended
		next.Task = ""
	case events.NodeSuspended:
		if n.Status != NodeRunning {
			return fail("the node is not running")
		}
		next.Status, next.PauseCause = NodePaused, d.Cause
	case events.NodeResumed:
		if n.Status != NodePaused {
			return fail("the node is not suspended")
		}
		next.Status, next.PauseCause = NodeRunning, ""
	case events.NodeReset:
		if !n.Running() {
			return fail("the node is not running")
		}
	case events.NodeAdopted:
		if !n.Running() || n.Process.PID != d.PID || n.Process.ProcStart != d.ProcStart {
			return fail("no such process is recorded as running")
		}
	case events.NodeStartFailed:
		// A start that left nothing running: a record, no state change.
	case events.NodeDeleted:
		next.Status, next.Process, next.Links, next.Task = NodeDeleted, nil, nil, ""
	case events.NodeClosed:
		next.Status, next.Process, next.Links, next.Task = NodeClosed, nil, nil, ""
	case events.NIOAdded:
		i, taken := n.linkIndex(d.Adapter, d.Port)
		if taken {
			return fail(fmt.Sprintf("port %d/%d already has a NIO", d.Adapter, d.Port))
		}
		next.Links = slices.Insert(slices.Clip(n.Links), i, Link{Adapter: d.Adapter, Port: d.Port, NIO: d.NIO})
	case events.NIOUpdated:
		i, ok := n.linkIndex(d.Adapter, d.Port)
		if !ok {
			return fail(fmt.Sprintf("port %d/%d has no NIO", d.Adapter, d.Port))
		}
		next.Links = slices.Clone(n.Links)
		next.Links[i].NIO = d.NIO
	case events.NIORemoved:
		i, ok := n.linkIndex(d.Adapter, d.Port)
		if !ok {
			return fail(fmt.Sprintf("port %d/%d has no NIO", d.Adapter, d.Port))
		}
		next.Links = slices.Delete(slices.Clone(n.Links), i, i+1)
	case events.CaptureStarted:
		i, ok := n.linkIndex(d.Adapter, d.Port)
		if !ok {
			return fail(fmt.Sprintf("port %d/%d has no NIO", d.Adapter, d.Port))
		}
		if n.Links[i].Capture != nil {
			return fail(fmt.Sprintf("port %d/%d is already capturing", d.Adapter, d.Port))
		}
		c := d
		next.Links = slices.Clone(n.Links)
		next.Links[i].Capture = &c
	case events.CaptureStopped:
		i, ok := n.linkIndex(d.Adapter, d.Port)
		if !ok || n.Links[i].Capture == nil {
			return fail(fmt.Sprintf("port %d/%d is not capturing", d.Adapter, d.Port))
		}
		next.Links = slices.Clone(n.Links)
		next.Links[i].Capture = nil
	default:
		return fail("not a node event")
	}
	return &next, nil
}

// keepRecent appends op to ops, dropping the oldest records beyond
// MaxOperations but never the one in flight; ops is not modified.
func keepRecent(ops []Operation, op Operation) []Operation {
	out := slices.Clone(ops)
	for len(out) >= MaxOperations {
		drop := 0
		if inFlight(out) == 0 {
			drop = 1
		}
		out = slices.Delete(out, drop, drop+1)
	}
	return append(out, op)
}

// heldPorts returns the console port and the UDP tunnel ports n holds.
func (n *Node) heldPorts() (console int, udp []int) {
	if !n.Exists() {
		return 0, nil
	}
	if n.Process != nil {
		for _, t := range n.Process.Tunnels {
			udp = append(udp, t.Ports()...)
		}
	}
	return n.Console, udp
}
