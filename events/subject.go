package events

import (
	"fmt"
	"strings"
)

// Prefix starts every labd event subject.
const Prefix = "labd.ev"

// ValidateComputeID reports whether id can be a compute id: one NATS subject
// token made of letters, digits, '-' and '_', at most 64 bytes.
func ValidateComputeID(id string) error {
	if id == "" || len(id) > 64 {
		return fmt.Errorf("compute id %q: must be 1 to 64 characters", id)
	}
	for _, r := range id {
		if !isIDRune(r) {
			return fmt.Errorf("compute id %q: only letters, digits, '-' and '_' are allowed", id)
		}
	}
	return nil
}

// ComputeIDFrom turns a host name into a valid compute id, replacing every
// character a subject token cannot hold with '-'.
func ComputeIDFrom(host string) string {
	var b strings.Builder
	for _, r := range host {
		if isIDRune(r) {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	id := b.String()
	if len(id) > 64 {
		id = id[:64]
	}
	if id == "" {
		return "labd"
	}
	return id
}

func isIDRune(r rune) bool {
	return r == '-' || r == '_' || ('0' <= r && r <= '9') || ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z')
}

// ComputeFilter matches every event of a compute.
func ComputeFilter(compute string) string { return Prefix + "." + compute + ".>" }

// ProjectFilter matches every event of one project: the project aggregate
// and all of its nodes.
func ProjectFilter(compute, projectID string) string {
	return Prefix + "." + compute + "." + projectID + ".>"
}

// ProjectSubject is the subject of a project aggregate.
func ProjectSubject(compute, projectID string) string {
	return Prefix + "." + compute + "." + projectID + ".project"
}

// NodeSubject is the subject of a node aggregate.
func NodeSubject(compute, projectID, nodeID string) string {
	return Prefix + "." + compute + "." + projectID + ".node." + nodeID
}

// ComputeSubject is the subject of compute-wide facts.
func ComputeSubject(compute string) string { return Prefix + "." + compute + ".compute" }

// Subject is a parsed event subject.
type Subject struct {
	Compute   string
	ProjectID string // empty for the compute subject
	NodeID    string // set for a node subject only
}

// ParseSubject parses a subject built by ProjectSubject, NodeSubject or
// ComputeSubject.
func ParseSubject(s string) (Subject, error) {
	rest, ok := strings.CutPrefix(s, Prefix+".")
	if !ok {
		return Subject{}, fmt.Errorf("events: subject %q is not under %s", s, Prefix)
	}
	tok := strings.Split(rest, ".")
	switch {
	case len(tok) == 2 && tok[1] == "compute":
		return Subject{Compute: tok[0]}, nil
	case len(tok) == 3 && tok[2] == "project" && tok[1] != "":
		return Subject{Compute: tok[0], ProjectID: tok[1]}, nil
	case len(tok) == 4 && tok[2] == "node" && tok[1] != "" && tok[3] != "":
		return Subject{Compute: tok[0], ProjectID: tok[1], NodeID: tok[3]}, nil
	}
	return Subject{}, fmt.Errorf("events: subject %q is not a labd aggregate subject", s)
}
