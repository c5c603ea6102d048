package api

import (
	"net/http"
	"slices"
	"strconv"
	"strings"

	"labd/actors"
	"labd/actors/vpcs"
	"labd/replay"
)

// vmV1 is a VPCS VM as GNS3 1.5 shows it.
type vmV1 struct {
	Console           *int    `json:"console"`
	Name              string  `json:"name"`
	ProjectID         string  `json:"project_id"`
	StartupScript     *string `json:"startup_script"`
	StartupScriptPath *string `json:"startup_script_path"`
	Status            string  `json:"status"`
	VMDirectory       string  `json:"vm_directory"`
	VMID              string  `json:"vm_id"`
}

// vpcsV2 is a VPCS node as the GNS3 2.2 compute shows it: exactly the
// members of VPCS_OBJECT_SCHEMA.
type vpcsV2 struct {
	CommandLine   string `json:"command_line"`
	Console       *int   `json:"console"`
	ConsoleType   string `json:"console_type"`
	Name          string `json:"name"`
	NodeDirectory string `json:"node_directory"`
	NodeID        string `json:"node_id"`
	ProjectID     string `json:"project_id"`
	Status        string `json:"status"`
}

func consoleOf(n *replay.Node) *int {
	if n.Console == 0 {
		return nil
	}
	c := n.Console
	return &c
}

// status is a node status as GNS3 names it: GNS3 has no words for a
// machine saved to disk (it shows suspended, and a start or a resume
// restores it) or for a node in error (stopped).
func status(n *replay.Node) string {
	switch {
	case !n.Exists():
		return "stopped"
	case n.Status == replay.NodeRunning:
		return "started"
	case n.Status == replay.NodePaused, n.Status == replay.NodeSuspended:
		return "suspended"
	}
	return "stopped"
}

func (s *Server) v1VPCS(n *replay.Node) vmV1 {
	dir := s.cfg.Client.NodeDir(n)
	out := vmV1{Console: consoleOf(n), Name: n.Name, ProjectID: n.ProjectID, Status: status(n), VMDirectory: dir, VMID: n.ID}
	if script, ok, _ := vpcs.ReadScript(dir); ok {
		path := vpcs.ScriptName
		out.StartupScript, out.StartupScriptPath = &script, &path
	}
	return out
}

func (s *Server) v2VPCS(n *replay.Node) vpcsV2 {
	return vpcsV2{
		CommandLine: n.CommandLine, Console: consoleOf(n), ConsoleType: n.ConsoleType, Name: n.Name,
		NodeDirectory: s.cfg.Client.NodeDir(n), NodeID: n.ID, ProjectID: n.ProjectID, Status: status(n),
	}
}

// vpcsCreateV1 is the body of POST /v1/projects/{project_id}/vpcs/vms.
type vpcsCreateV1 struct {
	VMID              field[string]    `json:"vm_id"`
	StartupScriptPath nullable[string] `json:"startup_script_path"`
	vpcsCreateCommon
}

// nodeCreate are the members of a node's own in a create of a kind with
// a console.
type nodeCreate struct {
	Name    field[string] `json:"name"`
	Console nullable[int] `json:"console"`
}

// command checks the members and returns the create command of a node of
// kind, id (a fresh one if absent), in project pid.
func (c nodeCreate) command(pid string, id field[string], what, kind string) (actors.CreateNode, error) {
	cmd, err := newNode(pid, id, what, c.Name, kind)
	if err != nil {
		return cmd, err
	}
	cmd.Console, err = checkConsole(c.Console)
	return cmd, err
}

// createConsoleType sets a create's console type when the body has one,
// one of consoleTypes.
func createConsoleType(cmd *actors.CreateNode, t field[string], consoleTypes []string) error {
	ct, err := checkConsoleType(t, consoleTypes)
	if ct != nil {
		cmd.ConsoleType = *ct
	}
	return err
}

// vpcsCreateCommon are the members both versions' VPCS creates share.
type vpcsCreateCommon struct {
	nodeCreate
	StartupScript nullable[string] `json:"startup_script"`
}

// command checks the shared members and returns the create command of
// node id (a fresh one if absent) in project pid.
func (c vpcsCreateCommon) command(pid string, id field[string], what string) (actors.CreateNode, error) {
	cmd, err := c.nodeCreate.command(pid, id, what, vpcs.Kind)
	if err != nil {
		return cmd, err
	}
	if c.StartupScript.Set && !c.StartupScript.Null {
		// Props stays a nil interface otherwise: a typed nil would read
		// as a change.
		cmd.Props = &vpcs.Patch{StartupScript: &c.StartupScript.Value}
	}
	return cmd, nil
}

// vpcsUpdateV1 is the body of PUT /v1/projects/{project_id}/vpcs/vms/{vm_id}.
type vpcsUpdateV1 struct {
	Name              field[string]    `json:"name"`
	Console           nullable[int]    `json:"console"`
	StartupScript     nullable[string] `json:"startup_script"`
	StartupScriptPath nullable[string] `json:"startup_script_path"`
}

// vpcsCreateV2 is the body of POST /v2/compute/projects/{project_id}/vpcs/nodes.
type vpcsCreateV2 struct {
	NodeID      field[string] `json:"node_id"`
	ConsoleType field[string] `json:"console_type"`
	vpcsCreateCommon
}

// nodeUpdate are the members of a node's own in a v2 VPCS or QEMU update
// (and a v1 QEMU update); a kind whose update schema is its object's has
// objectUpdate instead.
type nodeUpdate struct {
	Name        nullable[string] `json:"name"`
	Console     nullable[int]    `json:"console"`
	ConsoleType field[string]    `json:"console_type"`
}

// command checks the members and returns the update of node ref; the
// console type must be one of consoleTypes.
func (u nodeUpdate) command(ref actors.NodeRef, consoleTypes []string) (actors.UpdateNode, error) {
	cmd := actors.UpdateNode{NodeRef: ref}
	var err error
	if u.Name.Set && !u.Name.Null {
		if cmd.Name, err = checkNodeName(field[string]{Set: true, Value: u.Name.Value}, false); err != nil {
			return cmd, err
		}
	}
	err = updateConsole(&cmd, u.Console, u.ConsoleType, consoleTypes)
	return cmd, err
}

// updateConsole checks a v2 update's console and console type (one of
// consoleTypes) into cmd.
func updateConsole(cmd *actors.UpdateNode, c nullable[int], t field[string], consoleTypes []string) error {
	var err error
	if cmd.Console, err = checkConsole(c); err != nil {
		return err
	}
	cmd.ConsoleType, err = checkConsoleType(t, consoleTypes)
	return err
}

// vpcsUpdateV2 is the body of PUT .../vpcs/nodes/{node_id}.
type vpcsUpdateV2 struct{ nodeUpdate }

// vpcsConsoleTypes are the console types of a VPCS node, the driver's.
func vpcsConsoleTypes() []string { return vpcs.Driver{}.Info().ConsoleTypes }

// checkConsole applies the schemas' console range.
func checkConsole(c nullable[int]) (*int, error) {
	if !c.Set || c.Null {
		return nil, nil
	}
	if c.Value < 1 || c.Value > 65535 {
		return nil, badRequest("field \"console\" must be a port number between 1 and 65535, not %d", c.Value)
	}
	return &c.Value, nil
}

// checkConsoleType checks a console type against a kind's; nil when absent.
func checkConsoleType(t field[string], allowed []string) (*string, error) {
	if !t.Set {
		return nil, nil
	}
	if !slices.Contains(allowed, t.Value) {
		return nil, badRequest("field \"console_type\" must be one of %s, not %q", quoteAll(allowed), t.Value)
	}
	return &t.Value, nil
}

// quoteAll lists strings as JSON strings, comma-separated.
func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}

func checkNodeName(n field[string], required bool) (*string, error) {
	switch {
	case !n.Set && required:
		return nil, badRequest("field \"name\" is required")
	case !n.Set:
		return nil, nil
	case n.Value == "":
		return nil, badRequest("field \"name\" must not be empty")
	}
	return &n.Value, nil
}

func badRequest(format string, args ...any) error {
	return newHTTPError(http.StatusBadRequest, "Invalid JSON: "+format, args...)
}

// vpcsWire is VPCS's wire: GNS3 1.5's VMs and GNS3 2.2's nodes.
type vpcsWire struct{}

func (vpcsWire) create(v apiVersion, pid string, b []byte) (actors.CreateNode, error) {
	if v == v1 {
		var body vpcsCreateV1
		if err := decodeObject(b, &body); err != nil {
			return actors.CreateNode{}, err
		}
		cmd, err := body.command(pid, body.VMID, "VM")
		cmd.ConsoleType = actors.ConsoleTelnet // 1.5 has no other
		return cmd, err
	}
	var body vpcsCreateV2
	if err := decodeObject(b, &body); err != nil {
		return actors.CreateNode{}, err
	}
	cmd, err := body.command(pid, body.NodeID, "Node")
	if err != nil {
		return cmd, err
	}
	err = createConsoleType(&cmd, body.ConsoleType, vpcsConsoleTypes())
	return cmd, err
}

func (vpcsWire) update(v apiVersion, ref actors.NodeRef, _ *replay.Node, b []byte) (actors.UpdateNode, error) {
	if v != v1 {
		var body vpcsUpdateV2
		if err := decodeObject(b, &body); err != nil {
			return actors.UpdateNode{}, err
		}
		return body.command(ref, vpcsConsoleTypes())
	}
	var body vpcsUpdateV1
	if err := decodeObject(b, &body); err != nil {
		return actors.UpdateNode{}, err
	}
	cmd := actors.UpdateNode{NodeRef: ref}
	var err error
	if cmd.Name, err = checkNodeName(body.Name, false); err != nil {
		return cmd, err
	}
	if cmd.Console, err = checkConsole(body.Console); err != nil {
		return cmd, err
	}
	if body.StartupScript.Set {
		script := body.StartupScript.Value // null: an empty script
		cmd.Props = &vpcs.Patch{StartupScript: &script}
	}
	return cmd, nil
}

func (vpcsWire) render(s *Server, v apiVersion, n *replay.Node) any {
	if v == v1 {
		return s.v1VPCS(n)
	}
	return s.v2VPCS(n)
}
