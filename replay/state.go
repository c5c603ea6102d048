package replay

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"labd/events"
)

// State is the folded state of one compute.
type State struct {
	// Projects holds every project aggregate with history, open or not.
	Projects map[string]*Project
	// Nodes holds every node aggregate with history, by NodeKey.
	Nodes map[string]*Node
	// Seq is the stream sequence the state reflects: every event of the
	// compute up to it has been folded.
	Seq uint64

	// udpOwner maps each held UDP port to its holder (a project id, or a
	// node key for tunnel ports), and consoleOwner each console port to
	// its node: a history in which two holders share a port is refused.
	udpOwner     map[int]string
	consoleOwner map[int]string
}

// New returns the state of a compute with no history.
func New() *State {
	return &State{Projects: map[string]*Project{}, Nodes: map[string]*Node{}, udpOwner: map[int]string{}, consoleOwner: map[int]string{}}
}

// Clone returns a copy of s that Apply can advance without changing s. The
// projects themselves are shared: they are immutable.
func (s *State) Clone() *State {
	return &State{Projects: maps.Clone(s.Projects), Nodes: maps.Clone(s.Nodes), Seq: s.Seq,
		udpOwner: maps.Clone(s.udpOwner), consoleOwner: maps.Clone(s.consoleOwner)}
}

// Apply folds one record into s.
func (s *State) Apply(r events.Record) error {
	subj, err := events.ParseSubject(r.Subject)
	if err != nil {
		return fmt.Errorf("replay: sequence %d: %w", r.Seq, err)
	}
	if r.Seq <= s.Seq {
		return fmt.Errorf("replay: sequence %d after %d: records out of order", r.Seq, s.Seq)
	}
	switch {
	case subj.ProjectID != "" && subj.NodeID == "":
		if r.ProjectID != subj.ProjectID {
			return fmt.Errorf("replay: sequence %d on %s names project %q", r.Seq, r.Subject, r.ProjectID)
		}
		before := s.Projects[subj.ProjectID]
		after, err := ApplyProject(before, r)
		if err != nil {
			return err
		}
		if err := s.moveUDPPorts(before, after); err != nil {
			return fmt.Errorf("replay: sequence %d: %w", r.Seq, err)
		}
		s.Projects[subj.ProjectID] = after
		if !after.IsOpen() {
			s.closeNodes(after.ID)
		}
	case subj.NodeID != "":
		if r.ProjectID != subj.ProjectID || r.NodeID != subj.NodeID {
			return fmt.Errorf("replay: sequence %d on %s names project %q node %q", r.Seq, r.Subject, r.ProjectID, r.NodeID)
		}
		if _, ok := r.Data.(events.NodeCreated); ok && !s.Projects[subj.ProjectID].IsOpen() {
			return fmt.Errorf("replay: sequence %d: node %s created in project %s, which is not open", r.Seq, subj.NodeID, subj.ProjectID)
		}
		key := NodeKey(subj.ProjectID, subj.NodeID)
		before := s.Nodes[key]
		after, err := ApplyNode(before, r)
		if err != nil {
			return err
		}
		if err := s.moveNodePorts(key, before, after); err != nil {
			return fmt.Errorf("replay: sequence %d: %w", r.Seq, err)
		}
		s.Nodes[key] = after
	default:
		return fmt.Errorf("replay: sequence %d: no aggregate of this build lives on %s", r.Seq, r.Subject)
	}
	s.Seq = r.Seq
	return nil
}

// moveUDPPorts updates the port index for a project going from before to
// after.
func (s *State) moveUDPPorts(before, after *Project) error {
	if before != nil && sameSlice(before.UDPPorts, after.UDPPorts) {
		return nil // most events leave the ports alone
	}
	if before != nil {
		for _, p := range before.UDPPorts {
			if !after.HoldsUDPPort(p) {
				delete(s.udpOwner, p)
			}
		}
	}
	for _, p := range after.UDPPorts {
		if owner, ok := s.udpOwner[p]; ok && owner != after.ID {
			return fmt.Errorf("UDP port %d held by project %s and %s", p, owner, after.ID)
		}
		s.udpOwner[p] = after.ID
	}
	return nil
}

// moveNodePorts updates the port indexes for a node going from before to
// after.
func (s *State) moveNodePorts(key string, before, after *Node) error {
	c0, u0 := before.heldPorts()
	c1, u1 := after.heldPorts()
	if c0 != c1 {
		if c0 != 0 {
			delete(s.consoleOwner, c0)
		}
		if c1 != 0 {
			if owner, ok := s.consoleOwner[c1]; ok && owner != key {
				return fmt.Errorf("console port %d held by node %s and %s", c1, owner, key)
			}
			s.consoleOwner[c1] = key
		}
	}
	if slices.Equal(u0, u1) {
		return nil
	}
	for _, p := range u0 {
		delete(s.udpOwner, p)
	}
	for _, p := range u1 {
		if owner, ok := s.udpOwner[p]; ok && owner != key {
			return fmt.Errorf("UDP port %d held by %s and node %s", p, owner, key)
		}
		s.udpOwner[p] = key
	}
	return nil
}

// closeNodes releases what the nodes of a project that is no longer open
// still hold. labd records node.closed for each node before closing a
// project; this keeps the fold sound for a history cut between the two.
func (s *State) closeNodes(projectID string) {
	for key, n := range s.Nodes {
		if n.ProjectID != projectID || !n.Exists() {
			continue
		}
		closed := *n
		closed.Status, closed.Process, closed.Links = NodeClosed, nil, nil
		_ = s.moveNodePorts(key, n, &closed) // releasing cannot conflict
		s.Nodes[key] = &closed
	}
}

// ConsolePorts returns every console port held by a node.
func (s *State) ConsolePorts() []int {
	ports := make([]int, 0, len(s.consoleOwner))
	for p := range s.consoleOwner {
		ports = append(ports, p)
	}
	return ports
}

// NodesByProject returns the nodes with history of every project, each
// project's by id: one pass, for a startup that spawns every project.
func (s *State) NodesByProject() map[string][]*Node {
	out := map[string][]*Node{}
	for _, n := range s.Nodes {
		out[n.ProjectID] = append(out[n.ProjectID], n)
	}
	for _, ns := range out {
		slices.SortFunc(ns, func(a, b *Node) int { return strings.Compare(a.ID, b.ID) })
	}
	return out
}

// sameSlice reports whether a and b are the same slice (not merely equal):
// ApplyProject shares the ports slice between versions it does not change.
func sameSlice(a, b []int) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// UDPPorts returns every UDP port held by an open project.
func (s *State) UDPPorts() []int {
	ports := make([]int, 0, len(s.udpOwner))
	for p := range s.udpOwner {
		ports = append(ports, p)
	}
	return ports
}

// Summary is a stable, plain view of a State: for golden files, tools and
// anyone comparing two folds.
type Summary struct {
	Seq      uint64     `json:"seq"`
	Projects []*Project `json:"projects"`        // by id
	Nodes    []*Node    `json:"nodes,omitempty"` // by project id, then node id
}

// Summarize returns the summary of s.
func Summarize(s *State) Summary {
	ps := slices.SortedFunc(maps.Values(s.Projects), func(a, b *Project) int { return strings.Compare(a.ID, b.ID) })
	ns := slices.SortedFunc(maps.Values(s.Nodes), func(a, b *Node) int {
		return cmp.Or(strings.Compare(a.ProjectID, b.ProjectID), strings.Compare(a.ID, b.ID))
	})
	return Summary{Seq: s.Seq, Projects: ps, Nodes: ns}
}

// Loader is the part of events.Store Rehydrate needs.
type Loader interface {
	Load(ctx context.Context, filter string, from uint64, fn func(events.Record) error) (uint64, error)
}

// Rehydrate folds the whole history of compute, in one ordered read. If
// observe is not nil it is called after each record is folded, with the
// state as of that record: whoever needs more than the final state (the
// notification ring) gets it from the same read.
func Rehydrate(ctx context.Context, l Loader, compute string, observe func(*State, events.Record)) (*State, error) {
	s := New()
	through, err := l.Load(ctx, events.ComputeFilter(compute), 1, func(r events.Record) error {
		if err := s.Apply(r); err != nil {
			return err
		}
		if observe != nil {
			observe(s, r)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("replay: rehydrate compute %s: %w", compute, err)
	}
	s.Seq = through
	return s, nil
}
