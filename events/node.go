package events

import "encoding/json"

// The event types of the node aggregate (subject NodeSubject).
const (
	TypeNodeCreated     Type = "node.created"
	TypeNodeUpdated     Type = "node.updated"
	TypeNodeStarted     Type = "node.started"
	TypeNodeStopped     Type = "node.stopped"
	TypeNodeStartFailed Type = "node.start_failed"
	TypeNodeDeleted     Type = "node.deleted"
	TypeNodeClosed      Type = "node.closed"
	TypeNIOAdded        Type = "node.nio_added"
	TypeNIOUpdated      Type = "node.nio_updated"
	TypeNIORemoved      Type = "node.nio_removed"
	TypeCaptureStarted  Type = "node.capture_started"
	TypeCaptureStopped  Type = "node.capture_stopped"
	TypeNodeSuspended   Type = "node.suspended"
	TypeNodeResumed     Type = "node.resumed"
	TypeNodeReset       Type = "node.reset"
	TypeNodeAdopted     Type = "node.adopted"
)

// NodeCreated creates a node in an open project: the first event of a node
// aggregate, or the first after it was deleted or closed.
type NodeCreated struct {
	// Kind is the node type in GNS3's words ("vpcs").
	Kind string `json:"kind"`
	Name string `json:"name"`
	// Console is the public console port, 0 when the node has none.
	Console     int    `json:"console"`
	ConsoleType string `json:"console_type"`
	// MACID is the VPCS MAC offset (-m): unique among a project's VPCS.
	MACID int `json:"mac_id"`
	// Properties are the kind's own settings as JSON (a QEMU node's
	// qemu.Config), absent for kinds that have none (VPCS). The events
	// package does not interpret them: the kind's package does.
	Properties json.RawMessage `json:"properties,omitempty"`
	// ConsolePassword is the password of the node's VNC console, absent
	// for none (GNS3's nodes have none; a Nova server has one).
	ConsolePassword string `json:"console_password,omitempty"`
	// Metadata are the creator's key-value pairs (Nova's metadata).
	Metadata map[string]string `json:"metadata,omitempty"`
}

// NodeUpdated carries the new values of every mutable node field.
type NodeUpdated struct {
	Name        string `json:"name"`
	Console     int    `json:"console"`
	ConsoleType string `json:"console_type"`
	// Properties are the kind's settings after the update (see
	// NodeCreated), absent for kinds that have none.
	Properties json.RawMessage `json:"properties,omitempty"`
}

// Tunnel is the local UDP tunnel between one node port and labd's bridge.
type Tunnel struct {
	Adapter int `json:"adapter"`
	Port    int `json:"port"`
	// NodePort is the node's own UDP port, BridgePort labd's end; both on
	// 127.0.0.1 and held from the UDP pool while the node runs.
	NodePort   int `json:"node_port"`
	BridgePort int `json:"bridge_port"`
	// RelayPort is a UDP port the node's process binds besides NodePort,
	// held from the pool too: VPCS before 0.8 cannot be told not to bind
	// its relay port (NodePort+9), which GNS3 turns off with -R.
	RelayPort int `json:"relay_port,omitempty"`
}

// Ports returns the UDP ports the tunnel holds.
func (t Tunnel) Ports() []int {
	if t.RelayPort != 0 {
		return []int{t.NodePort, t.BridgePort, t.RelayPort}
	}
	return []int{t.NodePort, t.BridgePort}
}

// NodeStarted records a running node process: what is needed to recognise
// it again (pid and start time) and the ports it holds while it runs.
type NodeStarted struct {
	PID int `json:"pid"`
	// ProcStart is the process start time in clock ticks since boot
	// (/proc/<pid>/stat field 22): with the pid, it names one process.
	ProcStart       uint64   `json:"proc_start"`
	CommandLine     string   `json:"command_line"`
	InternalConsole int      `json:"internal_console"`
	Tunnels         []Tunnel `json:"tunnels"`
	// QMP is the QEMU monitor socket labd controls the process through
	// (QEMU nodes only).
	QMP string `json:"qmp,omitempty"`
}

// Why a node stopped.
const (
	StopRequested = "requested" // a stop, reload or delete request
	StopExited    = "exited"    // the process ended without being asked
	StopRestarted = "labd_restarted"
	StopShutdown  = "labd_shutdown"
	// StopGuestShutdown: the guest powered itself off (QEMU's SHUTDOWN
	// event with guest true), and its process ended.
	StopGuestShutdown = "guest_shutdown"
)

// NodeStopped records that a node's process is gone.
type NodeStopped struct {
	Reason string `json:"reason"`
	// ExitCode is the process's exit status, -1 when it was killed by a
	// signal, absent when unknown.
	ExitCode *int `json:"exit_code,omitempty"`
	// Message explains an unexpected stop: the end of the node's log.
	Message string `json:"message,omitempty"`
}

// Who caused a suspend, resume or reset.
const (
	CauseRequested = "requested" // an API request
	CauseGuest     = "guest"     // the emulator reported it unasked (a QMP event)
	// CauseSignal: a status check found the process stopped (SIGSTOP) or
	// continued (SIGCONT) behind labd's back.
	CauseSignal = "signal"
)

// NodeSuspended records that a running node was paused (QEMU's stop).
type NodeSuspended struct {
	Cause string `json:"cause"`
}

// NodeResumed records that a suspended node runs again (QEMU's cont).
type NodeResumed struct {
	Cause string `json:"cause"`
}

// NodeReset records a reset of a running node's machine (a reload served
// by QEMU's system_reset, or a reset from inside the guest).
type NodeReset struct {
	Cause string `json:"cause"`
}

// NodeAdopted records that a restarted labd found the node's recorded
// process still running (same pid, same start time) and took it over: its
// bridges rebound on the recorded ports, its console and QMP re-attached.
type NodeAdopted struct {
	PID       int    `json:"pid"`
	ProcStart uint64 `json:"proc_start"`
}

// NodeStartFailed records a start that did not produce a running node.
type NodeStartFailed struct {
	Error string `json:"error"`
}

// NodeDeleted deletes a node and its directory.
type NodeDeleted struct{}

// NodeClosed closes a node because its project closed; its files stay.
type NodeClosed struct{}

// NIO is a link end attached to a node port. Only UDP NIOs exist in labd.
type NIO struct {
	Type  string `json:"type"`
	LPort int    `json:"lport"`
	RHost string `json:"rhost"`
	RPort int    `json:"rport"`
	// Filters is the normalised link filter object (see nio.ParseFilters).
	Filters map[string][]any `json:"filters,omitempty"`
	Suspend bool             `json:"suspend,omitempty"`
}

// NIOAdded attaches a NIO to a free node port.
type NIOAdded struct {
	Adapter int `json:"adapter"`
	Port    int `json:"port"`
	NIO     NIO `json:"nio"`
}

// NIOUpdated replaces the NIO of a port (new filters, suspend).
type NIOUpdated struct {
	Adapter int `json:"adapter"`
	Port    int `json:"port"`
	NIO     NIO `json:"nio"`
}

// NIORemoved detaches the NIO of a port, and stops its capture.
type NIORemoved struct {
	Adapter int `json:"adapter"`
	Port    int `json:"port"`
}

// CaptureStarted starts a packet capture on a linked port. File is the
// capture file's name inside the project's captures directory.
type CaptureStarted struct {
	Adapter  int    `json:"adapter"`
	Port     int    `json:"port"`
	File     string `json:"file"`
	LinkType string `json:"link_type"`
}

// CaptureStopped stops the capture of a port.
type CaptureStopped struct {
	Adapter int `json:"adapter"`
	Port    int `json:"port"`
}

// EventType implements Data.
func (NodeCreated) EventType() Type { return TypeNodeCreated }

// EventType implements Data.
func (NodeUpdated) EventType() Type { return TypeNodeUpdated }

// EventType implements Data.
func (NodeStarted) EventType() Type { return TypeNodeStarted }

// EventType implements Data.
func (NodeStopped) EventType() Type { return TypeNodeStopped }

// EventType implements Data.
func (NodeStartFailed) EventType() Type { return TypeNodeStartFailed }

// EventType implements Data.
func (NodeDeleted) EventType() Type { return TypeNodeDeleted }

// EventType implements Data.
func (NodeClosed) EventType() Type { return TypeNodeClosed }

// EventType implements Data.
func (NIOAdded) EventType() Type { return TypeNIOAdded }

// EventType implements Data.
func (NIOUpdated) EventType() Type { return TypeNIOUpdated }

// EventType implements Data.
func (NIORemoved) EventType() Type { return TypeNIORemoved }

// EventType implements Data.
func (CaptureStarted) EventType() Type { return TypeCaptureStarted }

// EventType implements Data.
func (CaptureStopped) EventType() Type { return TypeCaptureStopped }

// EventType implements Data.
func (NodeSuspended) EventType() Type { return TypeNodeSuspended }

// EventType implements Data.
func (NodeResumed) EventType() Type { return TypeNodeResumed }

// EventType implements Data.
func (NodeReset) EventType() Type { return TypeNodeReset }

// EventType implements Data.
func (NodeAdopted) EventType() Type { return TypeNodeAdopted }
