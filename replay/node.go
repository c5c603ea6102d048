package replay

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"labd/events"
)

// NodeStatus is a node's lifecycle state. The first three are GNS3's; a
// deleted or closed node is no longer served, but its aggregate keeps its
// version so the node can be created again (GNS3 controllers re-create
// nodes with the same ids each time a project is opened).
type NodeStatus string

// Node statuses.
const (
	NodeStopped   NodeStatus = "stopped"
	NodeStarted   NodeStatus = "started"
	NodeSuspended NodeStatus = "suspended"
	NodeDeleted   NodeStatus = "deleted"
	NodeClosed    NodeStatus = "closed"
)

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
	Version  uint64              `json:"version"`
	Created  time.Time           `json:"created"`
	Updated  time.Time           `json:"updated"`
}

// Exists reports whether the node is served: created, not deleted or
// closed.
func (n *Node) Exists() bool {
	return n != nil && n.Status != NodeDeleted && n.Status != NodeClosed && n.Status != ""
}

// Running reports whether the node has a process.
func (n *Node) Running() bool { return n.Exists() && n.Process != nil }

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
		p := d
		next.Status, next.Process, next.CommandLine = NodeStarted, &p, d.CommandLine
	case events.NodeStopped:
		if !n.Running() {
			return fail("the node is not running")
		}
		s := d
		next.Status, next.Process, next.LastStop = NodeStopped, nil, &s
	case events.NodeSuspended:
		if n.Status != NodeStarted {
			return fail("the node is not running")
		}
		next.Status = NodeSuspended
	case events.NodeResumed:
		if n.Status != NodeSuspended {
			return fail("the node is not suspended")
		}
		next.Status = NodeStarted
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
		next.Status, next.Process, next.Links = NodeDeleted, nil, nil
	case events.NodeClosed:
		next.Status, next.Process, next.Links = NodeClosed, nil, nil
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
