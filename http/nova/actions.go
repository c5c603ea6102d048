package nova

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"labd/actors"
	"labd/replay"
)

// An action of POST /servers/{id}/action: its body's one key, and what
// it is in the core.
type actionSpec struct {
	op actors.Op
	// code answers a success: 202 for most, 204 for confirmResize, 200
	// for a console.
	code int
}

var actionSpecs = map[string]actionSpec{
	"os-start":         {actors.OpStart, http.StatusAccepted},
	"os-stop":          {actors.OpStop, http.StatusAccepted},
	"reboot":           {actors.OpReboot, http.StatusAccepted},
	"pause":            {actors.OpPause, http.StatusAccepted},
	"unpause":          {actors.OpUnpause, http.StatusAccepted},
	"suspend":          {actors.OpSuspend, http.StatusAccepted},
	"resume":           {actors.OpResume, http.StatusAccepted},
	"resize":           {actors.OpResize, http.StatusAccepted},
	"confirmResize":    {actors.OpConfirmResize, http.StatusNoContent},
	"revertResize":     {actors.OpRevertResize, http.StatusAccepted},
	"os-getVNCConsole": {"", http.StatusOK},
}

func (s *Server) action(w http.ResponseWriter, r *http.Request, c *call) error {
	var body map[string]json.RawMessage
	if err := decode(r, &body); err != nil {
		return err
	}
	if len(body) != 1 {
		return faultf(http.StatusBadRequest, "There is either no action or more than one action in the request body: give exactly one")
	}
	var name string
	var arg json.RawMessage
	for name, arg = range body {
	}
	spec, ok := actionSpecs[name]
	if !ok {
		return faultf(http.StatusBadRequest, "There is no such action: %s", name)
	}
	n, err := s.server(c)
	if err != nil {
		return err
	}
	op := actors.Operate{NodeRef: ref(n), Op: spec.op, RequestID: c.info.id}
	switch name {
	case "os-getVNCConsole":
		return s.vncConsole(w, r, n, arg)
	case "reboot":
		var a struct {
			Type string `json:"type"`
		}
		if err := strictArg(arg, &a); err != nil {
			return err
		}
		switch a.Type {
		case "SOFT":
			op.Timeout = s.cfg.ShutdownTimeout
		case "HARD":
			op.Force = true
		default:
			return faultf(http.StatusBadRequest, "Invalid input for field/attribute type: %q is not one of 'SOFT', 'HARD'", a.Type)
		}
	case "resize":
		var a struct {
			FlavorRef  string `json:"flavorRef"`
			DiskConfig string `json:"OS-DCF:diskConfig"`
		}
		if err := strictArg(arg, &a); err != nil {
			return err
		}
		f, ok := s.flavor(a.FlavorRef)
		if !ok {
			return faultf(http.StatusBadRequest, "Unable to find flavor %s", a.FlavorRef)
		}
		if cur, ok := s.flavorOf(n); ok && cur.VCPUs == f.VCPUs && cur.RAM == f.RAM {
			return faultf(http.StatusBadRequest, "When resizing, instances must change flavor!")
		}
		op.CPUs, op.RAMMB, op.Timeout = f.VCPUs, f.RAM, s.cfg.ShutdownTimeout
	default:
		if string(arg) != "null" && string(arg) != "{}" {
			return faultf(http.StatusBadRequest, "Invalid input for field/attribute %s: it takes null", name)
		}
		if name == "os-stop" || name == "revertResize" {
			op.Timeout = s.cfg.ShutdownTimeout // both power the guest off first
		}
	}
	if _, err := s.cfg.Client.Operate(r.Context(), op); err != nil {
		return conflict(err, name, n)
	}
	if spec.code == http.StatusNoContent {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	accepted(w)
	return nil
}

// strictArg decodes an action's argument, refusing unknown members.
func strictArg(raw json.RawMessage, v any) error {
	dec := json.NewDecoder(bytesReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return faultf(http.StatusBadRequest, "Invalid input for the action: %v", err)
	}
	return nil
}

// conflict words the core's refusal as Nova does: the vm_state when the
// state does not allow the action, else the task_state in flight.
func conflict(err error, action string, n *replay.Node) error {
	var se *actors.StateError
	if !errors.As(err, &se) {
		return err
	}
	if se.Busy {
		task := taskState(n)
		if task == "" {
			task = se.Task
		}
		return faultf(http.StatusConflict, "Cannot '%s' instance %s while it is in task_state %s", action, n.ID, task)
	}
	return faultf(http.StatusConflict, "Cannot '%s' instance %s while it is in vm_state %s", action, n.ID, vmState(n))
}

func (s *Server) vncConsole(w http.ResponseWriter, r *http.Request, n *replay.Node, arg json.RawMessage) error {
	var a struct {
		Type string `json:"type"`
	}
	if err := strictArg(arg, &a); err != nil {
		return err
	}
	if a.Type != "novnc" && a.Type != "xvpvnc" {
		return faultf(http.StatusBadRequest, "Invalid input for field/attribute type: %q is not one of novnc, xvpvnc", a.Type)
	}
	url, err := s.consoleURL(r, n)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"console": map[string]string{"type": a.Type, "url": url}})
	return nil
}

func itoa(n int) string { return strconv.Itoa(n) }
