package replay

import (
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
	// Seq is the stream sequence the state reflects: every event of the
	// compute up to it has been folded.
	Seq uint64

	// udpOwner maps each held UDP port to the project holding it, to catch
	// a history in which two projects hold one port.
	udpOwner map[int]string
}

// New returns the state of a compute with no history.
func New() *State {
	return &State{Projects: map[string]*Project{}, udpOwner: map[int]string{}}
}

// Clone returns a copy of s that Apply can advance without changing s. The
// projects themselves are shared: they are immutable.
func (s *State) Clone() *State {
	return &State{Projects: maps.Clone(s.Projects), Seq: s.Seq, udpOwner: maps.Clone(s.udpOwner)}
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
	Projects []*Project `json:"projects"` // by id
}

// Summarize returns the summary of s.
func Summarize(s *State) Summary {
	ps := slices.SortedFunc(maps.Values(s.Projects), func(a, b *Project) int { return strings.Compare(a.ID, b.ID) })
	return Summary{Seq: s.Seq, Projects: ps}
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
