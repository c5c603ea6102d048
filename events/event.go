package events

import "time"

// Type names an event type, "<aggregate>.<what happened>".
type Type string

// Data is the payload of one event type. Each payload is a plain struct that
// names its own type, so an Event can never carry a payload under the wrong
// name.
type Data interface {
	EventType() Type
}

// Event is one fact about an aggregate: what happened (Data), to which
// project and node, and when the daemon decided it.
type Event struct {
	Type      Type
	Schema    int
	At        time.Time
	ProjectID string
	NodeID    string
	Data      Data
}

// New returns the event for payload d, stamped with its type and current
// schema version.
func New(at time.Time, projectID, nodeID string, d Data) Event {
	return Event{
		Type:      d.EventType(),
		Schema:    schemaOf(d.EventType()),
		At:        at.UTC(),
		ProjectID: projectID,
		NodeID:    nodeID,
		Data:      d,
	}
}

// Record is an event as stored: the event plus where the store put it.
type Record struct {
	Event
	// Seq is the stream sequence of the event, unique and increasing across
	// every subject of the stream.
	Seq uint64
	// Subject is the aggregate subject the event was appended to.
	Subject string
	// MsgID is the deduplication id the event was appended with.
	MsgID string
}

// The event types of the project aggregate.
const (
	TypeProjectCreated   Type = "project.created"
	TypeProjectUpdated   Type = "project.updated"
	TypeProjectClosed    Type = "project.closed"
	TypeProjectDeleted   Type = "project.deleted"
	TypeUDPPortAllocated Type = "project.udp_port_allocated"
	TypeFileWritten      Type = "project.file_written"
	TypeEffectFailed     Type = "project.effect_failed"
)

// Variable is one of a project's user variables (GNS3 2.2 "variables").
// Value is a pointer because GNS3 distinguishes an absent value from an
// empty one and echoes whichever it was given.
type Variable struct {
	Name  string  `json:"name"`
	Value *string `json:"value,omitempty"`
}

// ProjectCreated opens a project: the first event of a project aggregate,
// or the first after it was closed or deleted.
type ProjectCreated struct {
	Name      string     `json:"name"`
	Temporary bool       `json:"temporary,omitempty"`
	Variables []Variable `json:"variables"`
}

// ProjectUpdated carries the new values of every mutable project field.
// Carrying all of them, not only the changed ones, keeps the fold trivial
// and lets "variables": null be told apart from "not changed".
type ProjectUpdated struct {
	Name      string     `json:"name"`
	Temporary bool       `json:"temporary,omitempty"`
	Variables []Variable `json:"variables"`
}

// ProjectClosed closes a project: it stops being served, its ports are
// released, its files stay on disk.
type ProjectClosed struct{}

// ProjectDeleted closes a project and removes its directory.
type ProjectDeleted struct{}

// UDPPortAllocated records a UDP port reserved by a project (POST
// .../ports/udp). The port is held until the project closes.
type UDPPortAllocated struct {
	Port int `json:"port"`
}

// FileWritten records a file uploaded into a project directory. Path is
// relative to the project directory, with forward slashes.
type FileWritten struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	MD5Sum string `json:"md5sum"`
}

// EffectFailed records that an effect of an already appended event could
// not be carried out (a directory could not be created or removed...), so
// that the history never claims more than what happened.
type EffectFailed struct {
	Effect string `json:"effect"`
	Error  string `json:"error"`
}

// EventType implements Data.
func (ProjectCreated) EventType() Type { return TypeProjectCreated }

// EventType implements Data.
func (ProjectUpdated) EventType() Type { return TypeProjectUpdated }

// EventType implements Data.
func (ProjectClosed) EventType() Type { return TypeProjectClosed }

// EventType implements Data.
func (ProjectDeleted) EventType() Type { return TypeProjectDeleted }

// EventType implements Data.
func (UDPPortAllocated) EventType() Type { return TypeUDPPortAllocated }

// EventType implements Data.
func (FileWritten) EventType() Type { return TypeFileWritten }

// EventType implements Data.
func (EffectFailed) EventType() Type { return TypeEffectFailed }
