package danube

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"labd/actors"
	"labd/replay"
)

// Tasks. A Danube task is an operation record whose request id is the
// task id; its state is the record's, and so is its result.

func taskHeaders(w http.ResponseWriter, id string) {
	w.Header()["es_task_id"] = []string{id}
	w.Header()["es_task_response"] = []string{"true"}
}

// taskResult is a record's status code and envelope, as Danube's
// get_task_status gives them.
func taskResult(n *replay.Node, op replay.Operation, id string) (int, envelope) {
	e := envelope{Status: op.State, TaskID: id}
	switch op.State {
	case "SUCCESS":
		e.Result = map[string]any{"message": successMessage(n, op), "returncode": 0}
		return http.StatusOK, e
	case "FAILURE":
		msg := op.Error
		if op.Message != "" {
			msg += "; " + op.Message
		}
		e.Result = map[string]any{"message": msg, "returncode": 1}
		return http.StatusBadRequest, e
	case "REVOKED":
		e.Result = map[string]any{"message": "Task was revoked: " + op.Message, "returncode": -1}
		return http.StatusGone, e
	}
	// In flight: Danube's Celery does not track STARTED.
	e.Status = "PENDING"
	return http.StatusCreated, e
}

// successMessage is a task's result message, in Danube's words, with the
// record's own.
func successMessage(n *replay.Node, op replay.Operation) string {
	var msg string
	switch actors.Op(op.Op) {
	case actors.OpStart:
		msg = "Successfully started VM " + n.Name
	case actors.OpStop:
		msg = "Successfully stopped VM " + n.Name
	case actors.OpReboot:
		msg = "Successfully rebooted VM " + n.Name
	case actors.OpReconcile:
		return op.Message
	default:
		msg = fmt.Sprintf("Successfully completed %s of VM %s", op.Op, n.Name)
	}
	if op.Message != "" {
		msg += " (" + op.Message + ")"
	}
	return msg
}

// apiview is what Danube's task details say of the call that made it.
func apiview(n *replay.Node, op replay.Operation) map[string]any {
	v := map[string]any{"view": "vm_status", "method": "PUT", "hostname": n.Name, "action": op.Op,
		"force": op.Force, "update": op.Apply, "task_id": op.RequestID}
	if op.TimeoutMS > 0 {
		v["timeout"] = op.TimeoutMS / 1000
	}
	if op.Freeze {
		v["freeze"] = true
	}
	return v
}

// answerTask answers the call that made task id: its state now (201
// PENDING, as a rule), or, with ES-STREAM, a stream that waits for its
// end.
func (s *Server) answerTask(w http.ResponseWriter, r *http.Request, c *call, n *replay.Node, id string) {
	op, _ := n.Operation(id)
	code, e := taskResult(n, op, id)
	taskHeaders(w, id)
	mode := r.Header.Get("ES-STREAM")
	if mode == "" || code != http.StatusCreated {
		writeJSON(w, code, e)
		return
	}
	s.stream(w, r, ref(n), id, mode, e)
}

// stream is Danube's APISyncMiddleware: a 201 whose body is keep-alive
// spaces while the task runs, then (with ES-STREAM: es, after the final
// status code on a line of its own) the task's final status.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, nr actors.NodeRef, id, mode string, pending envelope) {
	h := w.Header()
	h["es_stream"] = []string{"True"}
	h.Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	keep := time.NewTicker(s.cfg.KeepAlive)
	defer keep.Stop()
	deadline := time.NewTimer(SyncTimeout)
	defer deadline.Stop()
	final := func(code int, body any) {
		b, _ := json.Marshal(body)
		if mode == "es" {
			fmt.Fprintf(w, "%d\n", code)
		}
		_, _ = w.Write(b)
		_ = rc.Flush()
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case <-deadline.C:
			final(http.StatusCreated, pending)
			return
		case <-keep.C:
			if _, err := w.Write([]byte(" ")); err != nil {
				return
			}
			_ = rc.Flush()
		case <-poll.C:
			n, err := s.cfg.Client.Node(nr.ProjectID, nr.NodeID)
			if err != nil || !n.Exists() {
				final(http.StatusNotFound, map[string]string{"detail": "Task does not exist (anymore)"})
				return
			}
			op, ok := n.Operation(id)
			if !ok {
				final(http.StatusNotFound, map[string]string{"detail": "Task does not exist (anymore)"})
				return
			}
			if !op.InFlight() {
				code, e := taskResult(n, op, id)
				final(code, e)
				return
			}
		}
	}
}

// findTask finds the record of task id among the caller's VMs.
func (s *Server) findTask(c *call, id string) (*replay.Node, replay.Operation, bool) {
	if dummy, ok := isTask(id); !ok || dummy {
		return nil, replay.Operation{}, false
	}
	for _, n := range s.vms(c) {
		if op, ok := n.Operation(id); ok && op.RequestID == id {
			return n, op, true
		}
	}
	return nil, replay.Operation{}, false
}

var errNoTask = &apiError{status: http.StatusNotFound, detail: "Task does not exist (anymore)"}

func (s *Server) taskStatus(w http.ResponseWriter, r *http.Request, c *call, id string, done bool) error {
	if err := c.done(fieldErrors{}); err != nil {
		return err
	}
	n, op, ok := s.findTask(c, id)
	if !ok {
		return errNoTask
	}
	code, e := taskResult(n, op, id)
	taskHeaders(w, id)
	if done {
		writeJSON(w, code, map[string]any{"task_id": id, "done": op.State == "SUCCESS"})
		return nil
	}
	writeJSON(w, code, e)
	return nil
}

// listTasks is GET /task: the caller's tasks in flight.
func (s *Server) listTasks(w http.ResponseWriter, r *http.Request, c *call) error {
	if err := c.done(fieldErrors{}); err != nil {
		return err
	}
	out := []string{}
	for _, n := range s.vms(c) {
		if op := n.InFlight(); op != nil {
			if dummy, ok := isTask(op.RequestID); ok && !dummy {
				out = append(out, op.RequestID)
			}
		}
	}
	success(w, c, out)
	return nil
}

// taskDetails is GET /task/{id}: the call behind a task in flight.
func (s *Server) taskDetails(w http.ResponseWriter, r *http.Request, c *call, id string) error {
	if err := c.done(fieldErrors{}); err != nil {
		return err
	}
	n, op, ok := s.findTask(c, id)
	if !ok || !op.InFlight() {
		return &apiError{status: http.StatusNotFound, detail: "Task does not exist"}
	}
	success(w, c, apiview(n, op))
	return nil
}

// cancelTask is PUT /task/{id}/cancel: a graceful wait is cancelled (the
// task ends REVOKED); any other task cannot be.
func (s *Server) cancelTask(w http.ResponseWriter, r *http.Request, c *call, id string) error {
	errs := fieldErrors{}
	c.boolean("force", false, errs)
	if err := c.done(errs); err != nil {
		return err
	}
	cannot := &apiError{status: http.StatusNotAcceptable, detail: "Task cannot be canceled"}
	n, op, ok := s.findTask(c, id)
	if !ok || !op.InFlight() {
		return cannot
	}
	out, err := s.cfg.Client.Operate(r.Context(), actors.Operate{NodeRef: ref(n), Op: actors.OpCancel, Target: id})
	if errors.Is(err, actors.ErrNotCancellable) {
		return cannot
	}
	if err != nil {
		return err
	}
	code, e := taskResult(out.Node, out.Op, id)
	taskHeaders(w, id)
	writeJSON(w, code, e)
	return nil
}
