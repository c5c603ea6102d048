// Package danube is labd's Danube Cloud dialect: the api.vm.status calls
// (list, status, current, start, stop, reboot with force, timeout,
// update, freeze and cdimage), a VM's define for vcpus and ram, and the
// task calls, over labd's one node lifecycle (actors.Operate). A VM is a
// node of a labd project, addressed by its name (Danube's hostname) or
// its UUID; a task is an operation record, whose request id is the task
// id.
//
// It is mounted at /api/ on labd's main listener, and may have one of its
// own. Danube's routes end with a slash; both forms are served.
//
// Decisions where Danube leaves room, or where labd differs:
//   - The statuses are Danube's (running, stopped, stopping, frozen,
//     error) and labd's own words for what Danube has not: paused (a
//     node paused by GNS3, Nova or a signal) and suspended (saved to
//     disk). Danube cannot act on those: a start, stop or reboot answers
//     423, as for any VM that is not operational.
//   - PUT .../status/current is answered at once (labd checks the
//     process in /proc, with no job on a compute node to wait for): 200
//     SUCCESS, with a task id that names the check's record.
//   - A task in flight is PENDING (Danube's Celery does not track
//     STARTED). A task's result is {"message", "returncode"}: 0 on
//     success, 1 on failure, with the record's words.
//   - PUT /task/{id}/cancel cancels the graceful wait of a stop or reboot
//     (labd then no longer forces the guest); anything else is 406.
//   - Parameters come as a JSON object body (as the es tool sends them)
//     or in the query string. An unknown parameter is refused (400
//     FAILURE), where Danube would ignore it: labd never drops what a
//     client asked silently.
//   - Without a key table (labd on loopback), every request acts as the
//     user "admin" and sees the VMs of every open project; with one, a
//     key sees its project's.
package danube

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"labd/actors"
	"labd/actors/qemu"
	"labd/http/access"
	"labd/http/dialect"
)

// DefaultStopTimeout is Danube's VMS_VM_STOP_TIMEOUT_DEFAULT: how long a
// graceful stop or reboot waits for the guest before forcing.
const DefaultStopTimeout = 180 * time.Second

// SyncTimeout is Danube's API_SYNC_TIMEOUT: how long an ES-STREAM reply
// waits for its task.
const SyncTimeout = time.Hour

// maxBody bounds a request body.
const maxBody = 1 << 20

// Config is what the dialect needs.
type Config struct {
	Client *actors.Client
	// Images is the image store CD images are booted from.
	Images qemu.Images
	// Keys is the API key table; empty: no keys (see Open).
	Keys map[string]Key
	// Open takes requests without a key when Keys is empty (labd on
	// loopback); without it and without Keys, every request is refused.
	Open bool
	// StopTimeout is the default graceful wait of a stop or reboot; zero
	// is DefaultStopTimeout.
	StopTimeout time.Duration
	// Version is the es_version header.
	Version string
	// KeepAlive is how often an ES-STREAM reply sends a space while it
	// waits; zero is one second.
	KeepAlive time.Duration
	// AllowOrigins and AllowHosts widen the browser checks (see
	// access.Browser).
	AllowOrigins, AllowHosts []string
	Logger                   *slog.Logger
}

// Server is the dialect's http.Handler.
type Server struct {
	cfg     Config
	handler http.Handler
	log     *slog.Logger
}

// New returns the dialect's handler.
func New(cfg Config) *Server {
	if cfg.StopTimeout == 0 {
		cfg.StopTimeout = DefaultStopTimeout
	}
	if cfg.KeepAlive == 0 {
		cfg.KeepAlive = time.Second
	}
	if cfg.Version == "" {
		cfg.Version = "labd"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: cfg.Logger}
	s.handler = access.Browser{AllowOrigins: cfg.AllowOrigins, AllowHosts: cfg.AllowHosts,
		Refuse: func(w http.ResponseWriter, _ *http.Request, status int, msg string) { writeDetail(w, status, msg) },
	}.Wrap(http.HandlerFunc(s.serve))
	return s
}

// Owns reports whether a path of labd's main listener is Danube's.
func Owns(path string) bool { return path == "/api" || strings.HasPrefix(path, "/api/") }

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// call is one authenticated request.
type call struct {
	user Key
	// data are the request's parameters: the body's members, then the
	// query's.
	data map[string]json.RawMessage
	// seen are the parameters a handler read; the rest are refused.
	seen map[string]bool
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.Error("danube handler panicked", "path", r.URL.Path, "panic", v)
			writeDetail(w, http.StatusInternalServerError, "A server error occurred. labd logged it.")
		}
	}()
	h := w.Header()
	h["es_version"] = []string{s.cfg.Version}
	h["es_dc"] = []string{"main"}
	user, err := s.authenticate(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	h["es_username"] = []string{user.User}
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	c := &call{user: user, seen: map[string]bool{}}
	if c.data, err = params(r); err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.route(w, r, c); err != nil {
		s.fail(w, r, err)
	}
}

// segments are a path's segments under /api/, with Danube's trailing
// slash or without.
func segments(path string) []string {
	rest := strings.Trim(strings.TrimPrefix(path, "/api"), "/")
	if rest == "" {
		return nil
	}
	return strings.Split(rest, "/")
}

// nameRE is Danube's hostname_or_uuid (and task id) pattern.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

func (s *Server) route(w http.ResponseWriter, r *http.Request, c *call) error {
	seg := segments(r.URL.Path)
	for _, p := range seg {
		if !nameRE.MatchString(p) {
			return notFound()
		}
	}
	method := func(ms ...string) error {
		for _, m := range ms {
			if r.Method == m {
				return nil
			}
		}
		return &apiError{status: http.StatusMethodNotAllowed, detail: fmt.Sprintf("Method \"%s\" not allowed.", r.Method)}
	}
	switch {
	case len(seg) == 2 && seg[0] == "vm" && seg[1] == "status":
		if err := method("GET"); err != nil {
			return err
		}
		return s.listStatus(w, r, c)
	case len(seg) == 3 && seg[0] == "vm" && seg[2] == "status":
		if err := method("GET"); err != nil {
			return err
		}
		return s.getStatus(w, r, c, seg[1], "")
	case len(seg) == 4 && seg[0] == "vm" && seg[2] == "status":
		switch seg[3] {
		case "current", "start", "stop", "reboot":
		default:
			return notFound()
		}
		if err := method("GET", "PUT"); err != nil {
			return err
		}
		if r.Method == "GET" {
			return s.getStatus(w, r, c, seg[1], seg[3])
		}
		return s.putStatus(w, r, c, seg[1], seg[3])
	case len(seg) == 3 && seg[0] == "vm" && seg[2] == "define":
		if err := method("GET", "PUT"); err != nil {
			return err
		}
		if r.Method == "GET" {
			return s.getDefine(w, r, c, seg[1])
		}
		return s.putDefine(w, r, c, seg[1])
	case len(seg) == 1 && seg[0] == "task":
		if err := method("GET"); err != nil {
			return err
		}
		return s.listTasks(w, r, c)
	case len(seg) == 2 && seg[0] == "task":
		if err := method("GET"); err != nil {
			return err
		}
		return s.taskDetails(w, r, c, seg[1])
	case len(seg) == 3 && seg[0] == "task":
		switch seg[2] {
		case "status", "state", "done":
			if err := method("GET"); err != nil {
				return err
			}
			return s.taskStatus(w, r, c, seg[1], seg[2] == "done")
		case "cancel":
			if err := method("PUT"); err != nil {
				return err
			}
			return s.cancelTask(w, r, c, seg[1])
		}
	}
	return notFound()
}

// apiError is an error answered as Danube's exception handler does:
// {"detail": ...} with its code.
type apiError struct {
	status int
	detail string
}

func (e *apiError) Error() string { return e.detail }

func notFound() error { return &apiError{status: http.StatusNotFound, detail: "Not found"} }

// fieldErrors are parameter errors, answered as Danube's failed
// serializers are: 400 FAILURE with the errors by field.
type fieldErrors map[string][]string

func (f fieldErrors) Error() string {
	var b strings.Builder
	for k, v := range f {
		fmt.Fprintf(&b, "%s: %s; ", k, strings.Join(v, " "))
	}
	return strings.TrimSuffix(b.String(), "; ")
}

// fail answers an error: Danube's shapes for its own, the core's by
// class, anything else as a 500 that says nothing of labd's insides.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var ae *apiError
	var fe fieldErrors
	switch {
	case errors.As(err, &ae):
		writeDetail(w, ae.status, ae.detail)
		return
	case errors.As(err, &fe):
		writeJSON(w, http.StatusBadRequest, envelope{Status: "FAILURE", Result: fe, TaskID: dummyTaskID(1)})
		return
	}
	status, msg, public := dialect.Status(err)
	if !public {
		s.log.Error("danube request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		msg = "A server error occurred. labd logged it."
	}
	writeDetail(w, status, msg)
}

// envelope is Danube's task response: a task's state and result.
type envelope struct {
	Status string `json:"status"`
	Result any    `json:"result"`
	TaskID string `json:"task_id"`
}

func writeDetail(w http.ResponseWriter, status int, detail string) {
	writeJSON(w, status, map[string]string{"detail": detail})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"detail": "A server error occurred."}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// success answers a synchronous call: 200 SUCCESS, with a dummy task id
// of the caller's, as Danube's SuccessTaskResponse.
func success(w http.ResponseWriter, c *call, result any) {
	writeJSON(w, http.StatusOK, envelope{Status: "SUCCESS", Result: result, TaskID: dummyTaskID(c.user.ID)})
}

// Task ids, in Danube's shape: <user>e<owner>d<dc>-<8 hex>-<4>-<4>-<4>,
// where e is an exec task and d a dummy one (a call with no job), and
// the last d says the task is bound to data center 1.
func newTaskID(user int, dummy bool) string {
	tt := "e"
	if dummy {
		tt = "d"
	}
	return fmt.Sprintf("%d%s%dd1-%s", user, tt, user, uuid.NewString()[:23])
}

func dummyTaskID(user int) string { return newTaskID(user, true) }

var taskRE = regexp.MustCompile(`^([0-9]+)([deamif])([0-9]+)([du])([0-9]+)-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}$`)

// isTask reports whether id is a task id in Danube's shape, and whether
// it is a dummy task's.
func isTask(id string) (dummy, ok bool) {
	m := taskRE.FindStringSubmatch(id)
	return m != nil && m[2] == "d", m != nil
}

// params reads a request's parameters: a JSON object body, then the
// query string (whose values are strings, as Danube's forms).
func params(r *http.Request) (map[string]json.RawMessage, error) {
	out := map[string]json.RawMessage{}
	b, err := io.ReadAll(r.Body)
	if err != nil {
		if _, tooBig := errors.AsType[*http.MaxBytesError](err); tooBig {
			return nil, &apiError{status: http.StatusRequestEntityTooLarge, detail: "Request is too large."}
		}
		return nil, &apiError{status: http.StatusBadRequest, detail: "Malformed request"}
	}
	if len(strings.TrimSpace(string(b))) > 0 {
		dec := json.NewDecoder(strings.NewReader(string(b)))
		if err := dec.Decode(&out); err != nil || dec.More() {
			return nil, &apiError{status: http.StatusBadRequest, detail: "Malformed request: the body must be one JSON object"}
		}
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, &apiError{status: http.StatusBadRequest, detail: "Malformed request: bad query string"}
	}
	for k, v := range q {
		if _, dup := out[k]; dup || len(v) != 1 {
			return nil, &apiError{status: http.StatusBadRequest, detail: fmt.Sprintf("Malformed request: %s is given more than once", k)}
		}
		raw, _ := json.Marshal(v[0])
		out[k] = raw
	}
	return out, nil
}

// boolean reads a boolean parameter as Danube's BooleanField does (true,
// false, "true", "1", "false", "0"...), def when absent.
func (c *call) boolean(name string, def bool, errs fieldErrors) bool {
	c.seen[name] = true
	raw, ok := c.data[name]
	if !ok || string(raw) == "null" {
		return def
	}
	var v any
	_ = json.Unmarshal(raw, &v)
	switch x := v.(type) {
	case bool:
		return x
	case string:
		switch strings.ToLower(x) {
		case "true", "1", "yes", "on":
			return true
		case "false", "0", "no", "off":
			return false
		}
	case float64:
		if x == 0 || x == 1 {
			return x == 1
		}
	}
	errs[name] = append(errs[name], "'"+strings.Trim(string(raw), `"`)+"' value must be either True or False.")
	return def
}

// integer reads an integer parameter in [lo, hi], def when absent.
func (c *call) integer(name string, def, lo, hi int, errs fieldErrors) int {
	c.seen[name] = true
	raw, ok := c.data[name]
	if !ok || string(raw) == "null" {
		return def
	}
	var v any
	_ = json.Unmarshal(raw, &v)
	var n float64
	switch x := v.(type) {
	case float64:
		n = x
	case string:
		f, err := strconv.ParseFloat(x, 64)
		if err != nil {
			errs[name] = append(errs[name], "A valid integer is required.")
			return def
		}
		n = f
	default:
		errs[name] = append(errs[name], "A valid integer is required.")
		return def
	}
	if n != float64(int(n)) {
		errs[name] = append(errs[name], "A valid integer is required.")
		return def
	}
	if int(n) < lo || int(n) > hi {
		errs[name] = append(errs[name], fmt.Sprintf("Ensure this value is between %d and %d.", lo, hi))
		return def
	}
	return int(n)
}

// text reads a string parameter, "" when absent.
func (c *call) text(name string, errs fieldErrors) string {
	c.seen[name] = true
	raw, ok := c.data[name]
	if !ok || string(raw) == "null" {
		return ""
	}
	var v string
	if err := json.Unmarshal(raw, &v); err != nil {
		errs[name] = append(errs[name], "Not a valid string.")
	}
	return v
}

// done checks the parameters: errors, and any the handler did not read.
func (c *call) done(errs fieldErrors) error {
	for k := range c.data {
		if !c.seen[k] {
			errs[k] = append(errs[k], "Unknown parameter: labd does not take it here.")
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}
