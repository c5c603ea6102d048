package danube

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"labd/actors"
	"labd/http/dialect"
	"labd/replay"
)

// Danube's VM statuses, and labd's own words for states Danube has not.
const (
	stRunning   = "running"
	stStopped   = "stopped"
	stStopping  = "stopping"
	stFrozen    = "frozen"
	stError     = "error"
	stPaused    = "paused"    // labd's: paused by GNS3, Nova or a signal
	stSuspended = "suspended" // labd's: saved to disk
)

// status is a node's Danube status.
func status(n *replay.Node) string {
	switch {
	case n.Task == replay.TaskStopping:
		return stStopping
	case n.Frozen:
		return stFrozen
	}
	return statusWord(n.Status)
}

func statusWord(s replay.NodeStatus) string {
	switch s {
	case replay.NodeRunning:
		return stRunning
	case replay.NodePaused:
		return stPaused
	case replay.NodeSuspended:
		return stSuspended
	case replay.NodeError:
		return stError
	}
	return stStopped
}

// operational are the statuses Danube's start, stop and reboot act on.
var operational = []string{stRunning, stStopped, stStopping, stFrozen}

// vms are the VMs the caller sees, in no order: the nodes that run a
// process, of its key's project, or of every open project without keys.
func (s *Server) vms(c *call) []*replay.Node {
	var projects []string
	if c.user.Project != "" {
		projects = []string{c.user.Project}
	} else {
		for _, p := range s.cfg.Client.Projects() {
			if p.IsOpen() {
				projects = append(projects, p.ID)
			}
		}
	}
	var out []*replay.Node
	for _, p := range projects {
		out = append(out, dialect.Machines(s.cfg.Client, p)...)
	}
	return out
}

// vm finds the VM a hostname or UUID names.
func (s *Server) vm(c *call, h string) (*replay.Node, error) {
	var named []*replay.Node
	for _, n := range s.vms(c) {
		if n.ID == h {
			return n, nil
		}
		if n.Name == h {
			named = append(named, n)
		}
	}
	switch len(named) {
	case 0:
		return nil, &apiError{status: http.StatusNotFound, detail: "VM not found"}
	case 1:
		return named[0], nil
	}
	return nil, &apiError{status: http.StatusBadRequest, detail: fmt.Sprintf("%d VMs are named %s: address the VM by its UUID", len(named), h)}
}

// renderStatus is Danube's VmStatusSerializer of a node.
func (s *Server) renderStatus(n *replay.Node) map[string]any {
	tasks := map[string]any{}
	if op := n.InFlight(); op != nil && op.RequestID != "" {
		tasks[op.RequestID] = apiview(n, *op)
	}
	changed := n.Updated
	for _, op := range n.Operations {
		if !op.Ended.IsZero() && op.Ended.After(changed) {
			changed = op.Ended
		}
	}
	return map[string]any{
		"hostname": n.Name, "uuid": n.ID, "alias": n.Name, "status": status(n),
		"status_change": changed.UTC().Format(time.RFC3339Nano), "node_status": "online",
		"tasks": tasks, "uptime": uptime(n),
	}
}

// uptime is how long a running node has run, in seconds: since the end
// of its last start.
func uptime(n *replay.Node) int {
	if !n.Running() {
		return 0
	}
	for i := len(n.Operations) - 1; i >= 0; i-- {
		op := n.Operations[i]
		if (op.Op == string(actors.OpStart) || op.Op == string(actors.OpReboot) || op.Op == string(actors.OpResume)) && op.State == "SUCCESS" {
			return int(time.Since(op.Ended).Seconds())
		}
	}
	return 0
}

func (s *Server) listStatus(w http.ResponseWriter, r *http.Request, c *call) error {
	errs := fieldErrors{}
	order := c.text("order_by", errs)
	if err := c.done(errs); err != nil {
		return err
	}
	nodes := s.vms(c)
	slices.SortFunc(nodes, func(a, b *replay.Node) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	switch strings.TrimPrefix(order, "-") {
	case "", "hostname":
	default:
		return fieldErrors{"order_by": {"Select a valid choice. labd orders by hostname."}}
	}
	if strings.HasPrefix(order, "-") {
		slices.Reverse(nodes)
	}
	out := []any{}
	for _, n := range nodes {
		out = append(out, s.renderStatus(n))
	}
	success(w, c, out)
	return nil
}

// getStatus is GET .../status (the record), and GET .../status/current
// (the node's process, now).
func (s *Server) getStatus(w http.ResponseWriter, r *http.Request, c *call, h, action string) error {
	if err := c.done(fieldErrors{}); err != nil {
		return err
	}
	n, err := s.vm(c, h)
	if err != nil {
		return err
	}
	if action != "current" {
		success(w, c, s.renderStatus(n))
		return nil
	}
	if !slices.Contains([]string{stRunning, stStopped, stStopping, stError}, status(n)) {
		return &apiError{status: http.StatusLocked, detail: "VM is not operational"}
	}
	p, err := s.cfg.Client.Probe(r.Context(), ref(n))
	if err != nil {
		return err
	}
	success(w, c, map[string]any{"status": statusWord(p.Actual), "status_changed": false, "message": p.Detail, "returncode": 0})
	return nil
}

func ref(n *replay.Node) actors.NodeRef { return actors.NodeRef{ProjectID: n.ProjectID, NodeID: n.ID} }

// putStatus is PUT .../status/{current,start,stop,reboot}, with Danube's
// preconditions in Danube's order.
func (s *Server) putStatus(w http.ResponseWriter, r *http.Request, c *call, h, action string) error {
	n, err := s.vm(c, h)
	if err != nil {
		return err
	}
	st := status(n)
	if action == "current" {
		if err := c.done(fieldErrors{}); err != nil {
			return err
		}
		return s.reconcile(w, r, c, n)
	}
	if !slices.Contains(operational, st) {
		return &apiError{status: http.StatusLocked, detail: "VM is not operational"}
	}
	errs := fieldErrors{}
	freeze, unfreeze := c.boolean("freeze", false, errs), c.boolean("unfreeze", false, errs)
	if len(errs) > 0 {
		return errs
	}
	switch {
	case action == "start" && st == stStopped && !freeze,
		action == "reboot" && st == stRunning && !freeze,
		action == "stop" && (st == stStopping || st == stRunning):
	case action == "stop" && st == stStopped && freeze:
		if err := c.done(errs); err != nil {
			return err
		}
		return s.dummy(w, r, c, n, actors.OpFreeze, fmt.Sprintf("VM %s is already stopped. Changing status to frozen.", n.Name))
	case action == "stop" && st == stFrozen && unfreeze:
		if err := c.done(errs); err != nil {
			return err
		}
		return s.dummy(w, r, c, n, actors.OpUnfreeze, fmt.Sprintf("Removing frozen status for VM %s.", n.Name))
	default:
		return &apiError{status: http.StatusExpectationFailed, detail: "Bad action"}
	}
	update := c.boolean("update", action != "stop", errs)
	apply := update && n.Definition != nil
	op := actors.Operate{NodeRef: ref(n), Apply: apply, RequestID: newTaskID(c.user.ID, false)}
	switch action {
	case "start":
		op.Op = actors.OpStart
		op.CDImage = c.text("cdimage", errs)
		op.CDImageOnce = c.boolean("cdimage_once", true, errs)
		if c.text("cdimage2", errs) != "" {
			errs["cdimage2"] = append(errs["cdimage2"], "labd boots one CD image: cdimage2 is not supported.")
		}
		if op.CDImage != "" && !s.hasImage(op.CDImage) {
			errs["cdimage"] = append(errs["cdimage"], fmt.Sprintf("Select a valid choice. %s is not one of the available choices.", op.CDImage))
		}
	default:
		op.Op = actors.OpStop
		if action == "reboot" {
			op.Op = actors.OpReboot
		}
		op.Force = c.boolean("force", false, errs)
		op.Timeout = time.Duration(c.integer("timeout", int(s.cfg.StopTimeout/time.Second), 1, 86400, errs)) * time.Second
		op.Freeze = action == "stop" && freeze
	}
	if err := c.done(errs); err != nil {
		return err
	}
	if st == stStopping {
		if apply {
			return &apiError{status: http.StatusPreconditionRequired, detail: "Cannot perform update while VM is stopping"}
		}
		if !op.Force {
			return &apiError{status: http.StatusLocked, detail: "VM is already stopping; try to use force"}
		}
	}
	out, err := s.cfg.Client.Operate(r.Context(), op)
	if err != nil {
		return refusal(err)
	}
	s.answerTask(w, r, c, out.Node, op.RequestID)
	return nil
}

// refusal words the core's refusal as Danube does: 409 for a VM with a
// task in flight, 417 for a state the action does not start from.
func refusal(err error) error {
	var se *actors.StateError
	if !errors.As(err, &se) {
		return err
	}
	if se.Busy {
		return &apiError{status: http.StatusConflict, detail: "VM has pending tasks"}
	}
	return &apiError{status: http.StatusExpectationFailed, detail: "Bad action"}
}

func (s *Server) hasImage(name string) bool {
	images, err := s.cfg.Images.List()
	if err != nil {
		return false
	}
	for _, im := range images {
		if im.Filename == name {
			return true
		}
	}
	return false
}

// dummy runs an operation with no job (freeze, unfreeze) and answers as
// Danube's dummy tasks: 200 SUCCESS at once.
func (s *Server) dummy(w http.ResponseWriter, r *http.Request, c *call, n *replay.Node, op actors.Op, msg string) error {
	id := dummyTaskID(c.user.ID)
	if _, err := s.cfg.Client.Operate(r.Context(), actors.Operate{NodeRef: ref(n), Op: op, RequestID: id}); err != nil {
		return refusal(err)
	}
	taskHeaders(w, id)
	writeJSON(w, http.StatusOK, envelope{Status: "SUCCESS", Result: map[string]any{"message": msg}, TaskID: id})
	return nil
}

// reconcile is PUT .../status/current: the node's process checked, and
// the record corrected to it.
func (s *Server) reconcile(w http.ResponseWriter, r *http.Request, c *call, n *replay.Node) error {
	id := newTaskID(c.user.ID, false)
	before := n.Status
	out, err := s.cfg.Client.Operate(r.Context(), actors.Operate{NodeRef: ref(n), Op: actors.OpReconcile, RequestID: id})
	if err != nil {
		return refusal(err)
	}
	taskHeaders(w, id)
	writeJSON(w, http.StatusOK, envelope{Status: "SUCCESS", TaskID: id, Result: map[string]any{
		"status": statusWord(out.Node.Status), "status_changed": out.Node.Status != before,
		"message": out.Op.Message, "returncode": 0,
	}})
	return nil
}

// Define.

// renderDefine is a VM's definition: the pending one (with what it does
// not change from the active), or the active one.
func (s *Server) renderDefine(n *replay.Node, active bool) (map[string]any, error) {
	cpus, ram, ok := s.cfg.Client.Size(n)
	if !ok {
		return nil, &apiError{status: http.StatusNotImplemented, detail: fmt.Sprintf("a %s node has no vcpus or ram to define", n.Kind)}
	}
	if d := n.Definition; d != nil && !active {
		if d.CPUs != 0 {
			cpus = d.CPUs
		}
		if d.RAMMB != 0 {
			ram = d.RAMMB
		}
	}
	return map[string]any{"hostname": n.Name, "uuid": n.ID, "alias": n.Name, "vcpus": cpus, "ram": ram,
		"changed": n.Definition != nil}, nil
}

func (s *Server) getDefine(w http.ResponseWriter, r *http.Request, c *call, h string) error {
	errs := fieldErrors{}
	active := c.boolean("active", false, errs)
	if err := c.done(errs); err != nil {
		return err
	}
	n, err := s.vm(c, h)
	if err != nil {
		return err
	}
	def, err := s.renderDefine(n, active)
	if err != nil {
		return err
	}
	success(w, c, def)
	return nil
}

// putDefine is PUT .../define: a pending vcpus and ram, which a start or
// reboot with update (their default) applies.
func (s *Server) putDefine(w http.ResponseWriter, r *http.Request, c *call, h string) error {
	errs := fieldErrors{}
	cpus := c.integer("vcpus", 0, 1, 1024, errs)
	ram := c.integer("ram", 0, 1, 1048576, errs)
	if err := c.done(errs); err != nil {
		return err
	}
	if cpus == 0 && ram == 0 {
		return fieldErrors{"vcpus": {"Give vcpus, ram or both."}}
	}
	n, err := s.vm(c, h)
	if err != nil {
		return err
	}
	if _, _, ok := s.cfg.Client.Size(n); !ok {
		return &apiError{status: http.StatusNotImplemented, detail: fmt.Sprintf("a %s node has no vcpus or ram to define", n.Kind)}
	}
	out, err := s.cfg.Client.Operate(r.Context(), actors.Operate{NodeRef: ref(n), Op: actors.OpDefine, CPUs: cpus, RAMMB: ram,
		RequestID: dummyTaskID(c.user.ID)})
	if err != nil {
		if errors.Is(err, actors.ErrInvalid) {
			msg, _ := actors.PublicMessage(err)
			return fieldErrors{"ram": {msg}}
		}
		return refusal(err)
	}
	def, err := s.renderDefine(out.Node, false)
	if err != nil {
		return err
	}
	success(w, c, def)
	return nil
}
