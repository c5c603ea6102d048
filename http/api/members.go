package api

import (
	"encoding/json"
	"slices"
	"strconv"

	"labd/actors"
	"labd/replay"
)

// The members and checks that several kinds' wire bodies share: how a
// create names its node, how a v2 update of a node whose update schema is
// its object schema begins, and a ports_mapping's items. Each kind's wire
// builds on them and adds what only it has.

// newNode begins the create of a node of kind in project pid, as every
// kind's create does: id names the node (a fresh one if absent; what is
// "Node", "VM" or "Device" in its error), name is required.
func newNode(pid string, id field[string], what string, name field[string], kind string) (actors.CreateNode, error) {
	cmd := actors.CreateNode{Kind: kind}
	var err error
	if cmd.NodeRef, err = newNodeRef(pid, id, what); err != nil {
		return cmd, err
	}
	cmd.Name, err = requiredName(name)
	return cmd, err
}

// requiredName checks a create's node name: present, a non-empty string.
func requiredName(name field[string]) (string, error) {
	n, err := checkNodeName(name, true)
	if err != nil {
		return "", err
	}
	return *n, nil
}

// objectUpdate are the members of a v2 update whose schema is the node's
// object schema, every member optional (the switch's, the hub's, the
// cloud's): the name, and the members a client may send back from the
// node it read, which nothing updates: node_id, project_id and status are
// checked and ignored.
type objectUpdate struct {
	Name      field[string] `json:"name"`
	NodeID    field[string] `json:"node_id"`
	ProjectID field[string] `json:"project_id"`
	Status    field[string] `json:"status"`
}

// command checks the members against the object schema and begins the
// update of node ref.
func (u objectUpdate) command(ref actors.NodeRef) (actors.UpdateNode, error) {
	if u.NodeID.Set {
		if _, err := parseID("Node", u.NodeID.Value); err != nil {
			return actors.UpdateNode{}, err
		}
	}
	if u.ProjectID.Set {
		if _, err := parseID("Project", u.ProjectID.Value); err != nil {
			return actors.UpdateNode{}, err
		}
	}
	if err := checkEnum("status", u.Status, []string{"started", "stopped", "suspended"}); err != nil {
		return actors.UpdateNode{}, err
	}
	name, err := checkNodeName(u.Name, false)
	return actors.UpdateNode{NodeRef: ref, Name: name}, err
}

// checkEnum checks a string member against its schema's enum.
func checkEnum(name string, f field[string], allowed []string) error {
	if f.Set && !slices.Contains(allowed, f.Value) {
		return badRequest("field %q must be one of %s, not %q", name, quoteAll(allowed), f.Value)
	}
	return nil
}

// mappedPortBody are the members every kind's ports_mapping item has, as
// clients send them: each kind's item type embeds it.
type mappedPortBody struct {
	Name       field[string] `json:"name"`
	PortNumber field[int]    `json:"port_number"`
}

// check applies GNS3's port schemas to the members of item
// ("ports_mapping[2]"). Duplicates are the driver's to refuse.
func (b mappedPortBody) check(item string) error {
	switch {
	case !b.Name.Set:
		return badRequest("field %q is required", item+".name")
	case b.Name.Value == "":
		return badRequest("field %q must not be empty", item+".name")
	case !b.PortNumber.Set:
		return badRequest("field %q is required", item+".port_number")
	case b.PortNumber.Value < 0:
		return badRequest("field %q must be 0 or more, not %d", item+".port_number", b.PortNumber.Value)
	}
	return nil
}

// A portItem is a kind's ports_mapping item as clients send it, P the
// driver's port mapping.
type portItem[P any] interface {
	// port checks the item, named item in errors ("ports_mapping[2]"),
	// against GNS3's schema and returns the port it maps.
	port(item string) (P, error)
}

// decodePorts decodes a ports_mapping member whose items are Ts into the
// driver's ports; nil when the body has no such member. Each item is
// decoded and checked on its own, so that an error names it.
func decodePorts[T portItem[P], P any](f field[[]json.RawMessage]) (*[]P, error) {
	if !f.Set {
		return nil, nil
	}
	items, err := decodeItems[T]("ports_mapping", f.Value)
	if err != nil {
		return nil, err
	}
	out := make([]P, len(items))
	for i, it := range items {
		if out[i], err = it.port("ports_mapping[" + strconv.Itoa(i) + "]"); err != nil {
			return nil, err
		}
	}
	return &out, nil
}

// portsPatch is the change a ports_mapping member whose items are Ts
// makes: patch wraps the ports into the driver's patch. It is a nil
// interface when the body has no such member: a typed nil in Props would
// read as a change.
func portsPatch[T portItem[P], P any](f field[[]json.RawMessage], patch func(*[]P) any) (any, error) {
	ports, err := decodePorts[T](f)
	if err != nil || ports == nil {
		return nil, err
	}
	return patch(ports), nil
}

// recorded returns a node's properties as labd recorded them, in its
// driver's type T; T's zero value when it has none.
func recorded[T any](n *replay.Node) T {
	var p T
	if len(n.Properties) > 0 {
		_ = json.Unmarshal(n.Properties, &p) // labd recorded them from this type
	}
	return p
}
