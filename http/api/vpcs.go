package api

import (
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/julienschmidt/httprouter"

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

// status is a node status as GNS3 names it.
func status(n *replay.Node) string {
	if n.Exists() {
		return string(n.Status)
	}
	return string(replay.NodeStopped)
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

// nodeCreate are the members of a node's own in a create of any kind.
type nodeCreate struct {
	Name    field[string] `json:"name"`
	Console nullable[int] `json:"console"`
}

// command checks the members and returns the create command of a node of
// kind, id (a fresh one if absent), in project pid.
func (c nodeCreate) command(pid string, id field[string], what, kind string) (actors.CreateNode, error) {
	cmd := actors.CreateNode{Kind: kind}
	var err error
	if cmd.NodeRef, err = newNodeRef(pid, id, what); err != nil {
		return cmd, err
	}
	name, err := checkNodeName(c.Name, true)
	if err != nil {
		return cmd, err
	}
	cmd.Name = *name
	cmd.Console, err = checkConsole(c.Console)
	return cmd, err
}

// vpcsCreateCommon are the members both versions' VPCS creates share.
type vpcsCreateCommon struct {
	nodeCreate
	StartupScript nullable[string] `json:"startup_script"`
}

// command checks the shared members and returns the create command of
// node id (a fresh one if absent) in project pid.
func (c vpcsCreateCommon) command(pid string, id field[string], what string) (actors.CreateNode, error) {
	cmd, err := c.nodeCreate.command(pid, id, what, actors.KindVPCS)
	if err != nil {
		return cmd, err
	}
	if c.StartupScript.Set && !c.StartupScript.Null {
		cmd.StartupScript = &c.StartupScript.Value
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

// nodeUpdate are the members of a node's own in a v2 update of any kind
// (and a v1 QEMU update).
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
	if cmd.Console, err = checkConsole(u.Console); err != nil {
		return cmd, err
	}
	cmd.ConsoleType, err = checkConsoleType(u.ConsoleType, consoleTypes)
	return cmd, err
}

// vpcsUpdateV2 is the body of PUT .../vpcs/nodes/{node_id}.
type vpcsUpdateV2 struct{ nodeUpdate }

// vpcsConsoleTypes are the console types of a VPCS node.
var vpcsConsoleTypes = []string{actors.ConsoleTelnet, actors.ConsoleNone}

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

func (s *Server) vpcsRoutes() {
	const v1Base, v2Base = "/v1/projects/{project_id}/vpcs/vms", "/v2/compute/projects/{project_id}/vpcs/nodes"
	const v1Node, v2Node = v1Base + "/{vm_id}", v2Base + "/{node_id}"
	v1Out := func(n *replay.Node) any { return s.v1VPCS(n) }
	v2Out := func(n *replay.Node) any { return s.v2VPCS(n) }

	s.route("POST", v1Base, func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
		pid, err := projectIDParam(ps)
		if err != nil {
			return err
		}
		var body vpcsCreateV1
		if err := decodeBody(r, &body, s.cfg.MaxBodyBytes, false); err != nil {
			return err
		}
		cmd, err := body.command(pid, body.VMID, "VM")
		if err != nil {
			return err
		}
		cmd.ConsoleType = actors.ConsoleTelnet
		n, err := s.cfg.Client.CreateNode(r.Context(), cmd)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusCreated, s.v1VPCS(n))
		return nil
	})
	s.route("POST", v2Base, func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
		pid, err := projectIDParam(ps)
		if err != nil {
			return err
		}
		var body vpcsCreateV2
		if err := decodeBody(r, &body, s.cfg.MaxBodyBytes, false); err != nil {
			return err
		}
		cmd, err := body.command(pid, body.NodeID, "Node")
		if err != nil {
			return err
		}
		ct, err := checkConsoleType(body.ConsoleType, vpcsConsoleTypes)
		if err != nil {
			return err
		}
		if ct != nil {
			cmd.ConsoleType = *ct
		}
		n, err := s.cfg.Client.CreateNode(r.Context(), cmd)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusCreated, s.v2VPCS(n))
		return nil
	})

	s.route("GET", v1Node, s.getNode("vm_id", v1Out))
	s.route("GET", v2Node, s.getNode("node_id", v2Out))

	s.route("PUT", v1Node, func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
		ref, err := nodeRefParam(ps, "vm_id")
		if err != nil {
			return err
		}
		var body vpcsUpdateV1
		if err := decodeBody(r, &body, s.cfg.MaxBodyBytes, false); err != nil {
			return err
		}
		cmd := actors.UpdateNode{NodeRef: ref}
		if cmd.Name, err = checkNodeName(body.Name, false); err != nil {
			return err
		}
		if cmd.Console, err = checkConsole(body.Console); err != nil {
			return err
		}
		if body.StartupScript.Set {
			cmd.StartupScript = &body.StartupScript.Value // null: an empty script
		}
		n, err := s.cfg.Client.NodeDo(r.Context(), cmd)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, s.v1VPCS(n))
		return nil
	})
	s.route("PUT", v2Node, func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
		ref, err := nodeRefParam(ps, "node_id")
		if err != nil {
			return err
		}
		var body vpcsUpdateV2
		if err := decodeBody(r, &body, s.cfg.MaxBodyBytes, false); err != nil {
			return err
		}
		cmd, err := body.command(ref, vpcsConsoleTypes)
		if err != nil {
			return err
		}
		n, err := s.cfg.Client.NodeDo(r.Context(), cmd)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, s.v2VPCS(n))
		return nil
	})

	s.nodeLifecycleRoutes(v1Node, "vm_id", v1Out, false)
	s.nodeLifecycleRoutes(v2Node, "node_id", v2Out, true)
	s.nodeLinkRoutes(v1Node, "vm_id")
	s.nodeLinkRoutes(v2Node, "node_id")
	s.nodeConsoleRoutes(v2Node, "node_id")
	s.route("POST", v2Node+"/duplicate", s.duplicateNode("node_id", v2Out))
}
