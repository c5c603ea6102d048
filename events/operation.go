package events

import (
	"encoding/json"
	"time"
)

// The lifecycle events: operation records, and the state changes only the
// lifecycle operations make (suspend to disk, resize).
const (
	TypeOperationStarted  Type = "node.operation_started"
	TypeOperationEnded    Type = "node.operation_ended"
	TypeNodeSaved         Type = "node.saved"
	TypeNodeResized       Type = "node.resized"
	TypeResizeConfirmed   Type = "node.resize_confirmed"
	TypeResizeReverted    Type = "node.resize_reverted"
	TypeNodeDefined       Type = "node.defined"
	TypeDefinitionApplied Type = "node.definition_applied"
	TypeNodeFrozen        Type = "node.frozen"
	TypeNodeUnfrozen      Type = "node.unfrozen"
)

// The states of an operation record, in Celery's words (Danube Cloud's
// tasks are Celery tasks; Nova's instance actions are rendered from them).
const (
	OpPending = "PENDING"
	OpStarted = "STARTED"
	OpSuccess = "SUCCESS"
	OpFailure = "FAILURE"
	OpRevoked = "REVOKED"
)

// Operation is what an operation record says of a request: which
// lifecycle operation, on whose behalf, and how it is to run.
type Operation struct {
	// ID names the record: unique, chosen by labd.
	ID string `json:"id"`
	// Op is the operation: start, stop, reboot, pause, resize...
	Op string `json:"op"`
	// RequestID is the caller's id of the request (Nova's
	// x-openstack-request-id), "" when it gave none.
	RequestID string `json:"request_id,omitempty"`
	// Task is the node's transitional state while the operation runs
	// (stopping, rebooting...); "" for one that has none.
	Task string `json:"task,omitempty"`
	// Force asks for the hard way: a stop that does not ask the guest, a
	// hard reboot.
	Force bool `json:"force,omitempty"`
	// TimeoutMS bounds a graceful wait for the guest, in milliseconds.
	TimeoutMS int64 `json:"timeout_ms,omitempty"`
	// Deadline is when a graceful wait gives up and forces: what a labd
	// restarted in the middle of it goes on from.
	Deadline *time.Time `json:"deadline,omitempty"`
	// CPUs and RAMMB are a resize's new size.
	CPUs  int `json:"cpus,omitempty"`
	RAMMB int `json:"ram_mb,omitempty"`
	// Confirm: a resize that takes effect with nothing to confirm or
	// revert (e24cloud's).
	Confirm bool `json:"confirm,omitempty"`
	// Apply: a start, stop or reboot that applies the node's pending
	// definition (Danube Cloud's update) while the node is off.
	Apply bool `json:"apply,omitempty"`
	// Freeze: a stop that leaves the node frozen.
	Freeze bool `json:"freeze,omitempty"`
	// CDImage is a CD image a start boots from (once, with CDImageOnce).
	CDImage     string `json:"cdimage,omitempty"`
	CDImageOnce bool   `json:"cdimage_once,omitempty"`
}

// OperationStarted records an accepted operation. It is in flight until
// its OperationEnded; a node has at most one in flight.
type OperationStarted struct {
	Operation
	// State is STARTED, or PENDING for one accepted but not yet begun.
	State string `json:"state"`
}

// OperationEnded records the outcome of an operation: SUCCESS, FAILURE
// or REVOKED (cancelled, or overtaken by a forced stop).
type OperationEnded struct {
	ID      string `json:"id"`
	State   string `json:"state"`
	Message string `json:"message,omitempty"`
	Error   string `json:"error,omitempty"`
	// Fault says that the failure left the node in error: it does not
	// run, and what it would run is in doubt.
	Fault bool `json:"fault,omitempty"`
	// Record is the whole record of an operation that ended as soon as
	// it was accepted (a lenient start of a running node), which has no
	// OperationStarted.
	Record *Operation `json:"record,omitempty"`
}

// NodeSaved records that a node's machine state was saved to its disks
// and its process ended (suspend to disk): the next start restores it.
type NodeSaved struct {
	ExitCode *int `json:"exit_code,omitempty"`
}

// NodeResized records a new size, with the properties before it: kept
// until the resize is confirmed, put back if it is reverted.
type NodeResized struct {
	Properties json.RawMessage `json:"properties,omitempty"`
	Previous   json.RawMessage `json:"previous,omitempty"`
}

// ResizeConfirmed drops the properties a resize kept.
type ResizeConfirmed struct{}

// ResizeReverted puts back the properties before a resize.
type ResizeReverted struct {
	Properties json.RawMessage `json:"properties,omitempty"`
}

// NodeDefined records a pending definition: the size the node is to
// have, applied by the next operation that asks for it (Apply) while the
// node is off. Zero values keep the current one.
type NodeDefined struct {
	CPUs  int `json:"cpus,omitempty"`
	RAMMB int `json:"ram_mb,omitempty"`
}

// DefinitionApplied records that the pending definition took effect: the
// new properties, and those before.
type DefinitionApplied struct {
	Properties json.RawMessage `json:"properties,omitempty"`
	Previous   json.RawMessage `json:"previous,omitempty"`
}

// NodeFrozen records that a stopped node was frozen: nothing starts it
// until it is unfrozen (Danube Cloud's freeze).
type NodeFrozen struct{}

// NodeUnfrozen records that a frozen node may be started again.
type NodeUnfrozen struct{}

// EventType implements Data.
func (NodeDefined) EventType() Type { return TypeNodeDefined }

// EventType implements Data.
func (DefinitionApplied) EventType() Type { return TypeDefinitionApplied }

// EventType implements Data.
func (NodeFrozen) EventType() Type { return TypeNodeFrozen }

// EventType implements Data.
func (NodeUnfrozen) EventType() Type { return TypeNodeUnfrozen }

// EventType implements Data.
func (OperationStarted) EventType() Type { return TypeOperationStarted }

// EventType implements Data.
func (OperationEnded) EventType() Type { return TypeOperationEnded }

// EventType implements Data.
func (NodeSaved) EventType() Type { return TypeNodeSaved }

// EventType implements Data.
func (NodeResized) EventType() Type { return TypeNodeResized }

// EventType implements Data.
func (ResizeConfirmed) EventType() Type { return TypeResizeConfirmed }

// EventType implements Data.
func (ResizeReverted) EventType() Type { return TypeResizeReverted }
