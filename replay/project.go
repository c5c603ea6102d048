package replay

import (
	"fmt"
	"slices"
	"time"

	"labd/events"
)

// Status is a project's lifecycle state.
type Status string

// Project statuses. A closed or deleted project is no longer served, but
// its aggregate keeps its version so it can be created again.
const (
	StatusOpened  Status = "opened"
	StatusClosed  Status = "closed"
	StatusDeleted Status = "deleted"
)

// Project is the folded state of one project aggregate.
type Project struct {
	ID        string `json:"project_id"`
	Name      string `json:"name"`
	Temporary bool   `json:"temporary"`
	// Variables is nil when the project has none (GNS3 reports null).
	Variables []events.Variable `json:"variables"`
	Status    Status            `json:"status"`
	// UDPPorts are the UDP ports the project holds, ascending.
	UDPPorts []int `json:"udp_ports"`
	// Version is the stream sequence of the aggregate's last event: the
	// expectation of its next append.
	Version uint64 `json:"version"`
	// Opened is when the project was last created; Updated when its last
	// event was decided.
	Opened  time.Time `json:"opened"`
	Updated time.Time `json:"updated"`
}

// IsOpen reports whether the project is being served.
func (p *Project) IsOpen() bool { return p != nil && p.Status == StatusOpened }

// HoldsUDPPort reports whether the project holds port.
func (p *Project) HoldsUDPPort(port int) bool {
	_, ok := slices.BinarySearch(p.UDPPorts, port)
	return ok
}

// ApplyProject folds one event of a project aggregate. p is the project
// before the event, nil if the aggregate has no events yet; it is not
// modified. An event that is not legal in p's state is an error: the
// history is corrupt, or was written by a build with other rules.
func ApplyProject(p *Project, r events.Record) (*Project, error) {
	fail := func(why string) (*Project, error) {
		return nil, fmt.Errorf("replay: project %s: %s at sequence %d: %s", r.ProjectID, r.Type, r.Seq, why)
	}
	var next Project
	if p != nil {
		if r.Seq <= p.Version {
			return fail(fmt.Sprintf("sequence does not follow version %d", p.Version))
		}
		next = *p
	}
	next.Version = r.Seq
	next.Updated = r.At

	switch d := r.Data.(type) {
	case events.ProjectCreated:
		if p.IsOpen() {
			return fail("the project is already open")
		}
		next = Project{
			ID:        r.ProjectID,
			Name:      d.Name,
			Temporary: d.Temporary,
			Variables: d.Variables,
			Status:    StatusOpened,
			Version:   r.Seq,
			Opened:    r.At,
			Updated:   r.At,
		}
	case events.ProjectUpdated:
		if !p.IsOpen() {
			return fail("the project is not open")
		}
		next.Name, next.Temporary, next.Variables = d.Name, d.Temporary, d.Variables
	case events.ProjectClosed:
		if !p.IsOpen() {
			return fail("the project is not open")
		}
		next.Status, next.UDPPorts = StatusClosed, nil
	case events.ProjectDeleted:
		if !p.IsOpen() {
			return fail("the project is not open")
		}
		next.Status, next.UDPPorts = StatusDeleted, nil
	case events.UDPPortAllocated:
		if !p.IsOpen() {
			return fail("the project is not open")
		}
		i, held := slices.BinarySearch(p.UDPPorts, d.Port)
		if held {
			return fail(fmt.Sprintf("UDP port %d is already held", d.Port))
		}
		next.UDPPorts = slices.Insert(slices.Clip(p.UDPPorts), i, d.Port)
	case events.FileWritten:
		if !p.IsOpen() {
			return fail("the project is not open")
		}
	case events.EffectFailed:
		if p == nil {
			return fail("no such project")
		}
	default:
		return fail("not a project event")
	}
	return &next, nil
}
