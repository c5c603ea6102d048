// Package e24 is labd's e24cloud dialect: the virtual machine calls of
// e24cloud's REST API v2 (create, list, show, power on and off, shut
// down, reboot, reset, resize, console, rename, delete), over labd's one
// node lifecycle (actors.Operate). It holds no state but its key table: a
// virtual machine is a node of a labd project, and the project is the API
// key's.
//
// It is mounted at /v2/virtual-machines on labd's main listener (see
// Owns), and serves the same paths on a listener of its own.
//
// # The envelope
//
// Every reply is HTTP 200 with {"success": true, ...}, as e24cloud's
// clients expect: a refusal is {"success": false, "message": "...",
// "error": {"code": N, "message": "..."}}, where N is the HTTP status the
// refusal would have elsewhere (400 a bad body, 401 a bad signature, 403
// a refused browser page, 404 an unknown machine or route, 405 a method
// the route does not have, 409 a state the call does not apply to, 413 a
// body over 1 MiB, 500 labd's own failure). A refused request records
// nothing. The one reply that is not 200 is a CORS preflight of an
// allowed origin (204, from access.Browser).
//
// # Signatures
//
// A request is signed as e24cloud's clients sign it: X-Date is the time
// (RFC 1123, GMT; "UTC" and numeric zones are taken too), and
// Authorization is KEY:base64(HMAC-SHA256(SECRET, METHOD "\n" HOST "\n"
// X-Date "\n" PATH ["?" QUERY] "\n" BODY)), HOST the Host header, PATH
// the path as sent and BODY the body's bytes. A missing or unknown key, a
// bad signature, and an X-Date missing or more than MaxSkew from labd's
// clock are refused. With no key table and Config.Open (labd on
// loopback) nothing is checked and the calls act on a labd project named
// "e24cloud", whose id derives from the compute id, created by the first
// create; with neither, every call is refused. A key's project must exist
// (create it through GNS3's API): only the default project is created
// here.
//
// # Decisions where e24cloud leaves room
//
//   - A virtual machine is a node of a kind that runs a process (QEMU,
//     VPCS: switches, hubs and clouds are not machines). A create makes a
//     QEMU node, a linked clone of the store image "os" (its name, or the
//     id GET shows as system.id: the id Nova's dialect gives the image),
//     with a VNC console of its own password, and starts it in the
//     background: the reply comes before the machine runs.
//   - boot_type "cdrom" boots the store image "cdrom" (boot priority d),
//     with "os", when given, as the disk. "image" (the default) needs
//     "os".
//   - password, key_id and user_data are accepted and dropped: labd cannot
//     put a password, an SSH key or cloud-init data into an arbitrary
//     image, and keeps no secret of the caller's. key_id and os may be
//     JSON strings or integers (e24cloud's ids are integers).
//   - The one zone is the compute: zone.id is a UUID derived from the
//     compute id, zone.name the compute id. compute_zone_id (or zone_id,
//     which clients send) may be empty, that UUID or the compute id;
//     another zone is refused.
//   - wait_for is in minutes and may be fractional (0.05 is 3 s). shutdown
//     without it waits Config.ShutdownTimeout (DefaultShutdownTimeout) for
//     the guest, then forces; wait_for 0 forces at once. poweroff forces
//     at once, or after wait_for minutes of a graceful stop when given.
//     reboot asks the guest (ACPI) and resets the machine when it has not
//     rebooted within Config.ShutdownTimeout; reset is a hard reset.
//   - resize needs cores or ram (the other keeps its value). A running
//     machine is shut down gracefully for wait_for minutes (default
//     Config.ShutdownTimeout; 0 forces), resized and started again; a
//     stopped one is resized. Nothing is left to confirm.
//   - delete removes the node and its disks whether deleteResources is 0
//     or 1 (or absent, or a boolean): labd's disks belong to their node
//     and outlive it nowhere. The reply comes when the node is gone.
//   - console answers the VNC credentials of a running machine; its host
//     is labd's console host, or the request's host when that is a
//     wildcard address.
//
// # States
//
// state is "installing" while the first start of the machine is in
// flight, "deleting" while a delete is, "online" while the machine runs
// (a graceful shutdown, a reboot or the power-off of a resize in flight
// included) and "offline" otherwise: stopped, paused, suspended, in
// error, or being started again.
package e24

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/julienschmidt/httprouter"

	"labd/actors"
	"labd/actors/qemu"
	"labd/http/access"
	"labd/http/dialect"
)

// Prefix is the path of the dialect's calls.
const Prefix = "/v2/virtual-machines"

// DefaultShutdownTimeout is how long a shutdown without wait_for and a
// reboot wait for the guest before forcing (Nova's shutdown_timeout, the
// core's default).
const DefaultShutdownTimeout = 60 * time.Second

// MaxSkew is how far X-Date may be from labd's clock.
const MaxSkew = 5 * time.Minute

// maxBody bounds a request body.
const maxBody = 1 << 20

// Config is what the dialect needs.
type Config struct {
	Client *actors.Client
	// Images is the QEMU image store machines are made from.
	Images qemu.Images
	// Keys is the key table: API keys, their secrets and projects.
	Keys map[string]Key
	// Open takes unsigned requests when Keys is empty (labd on
	// loopback), which then act on the default project; without it and
	// without Keys, every request is refused.
	Open bool
	// ComputeID names the compute: the zone and the default project's
	// id derive from it.
	ComputeID string
	// ShutdownTimeout is the guest's time to power off when a call gives
	// none; zero is DefaultShutdownTimeout.
	ShutdownTimeout time.Duration
	// AllowOrigins and AllowHosts widen the browser checks (see
	// access.Browser), as for GNS3's API.
	AllowOrigins, AllowHosts []string
	// Now is the clock X-Date is checked against; nil is time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Server is the dialect's http.Handler.
type Server struct {
	cfg     Config
	router  *httprouter.Router
	handler http.Handler // the router behind the browser checks
	log     *slog.Logger
	// defaultProject is the project of an open dialect; zone is the
	// compute's zone id.
	defaultProject, zone string
}

// New returns the dialect's handler.
func New(cfg Config) *Server {
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = DefaultShutdownTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, router: httprouter.New(), log: cfg.Logger,
		defaultProject: uuid.NewSHA1(uuid.NameSpaceOID, []byte("labd-e24:"+cfg.ComputeID)).String(),
		zone:           uuid.NewSHA1(uuid.NameSpaceOID, []byte("labd-e24-zone:"+cfg.ComputeID)).String()}
	s.router.RedirectTrailingSlash = false
	s.router.RedirectFixedPath = false
	s.router.HandleMethodNotAllowed = true
	s.router.HandleOPTIONS = false
	s.router.NotFound = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		refuse(w, http.StatusNotFound, "There is no such call: "+r.Method+" "+r.URL.Path)
	})
	s.router.MethodNotAllowed = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		refuse(w, http.StatusMethodNotAllowed, "The method "+r.Method+" is not allowed for "+r.URL.Path)
	})
	s.router.PanicHandler = func(w http.ResponseWriter, r *http.Request, v any) {
		s.log.Error("e24 handler panicked", "path", r.URL.Path, "panic", v)
		refuse(w, http.StatusInternalServerError, "Unexpected API error. labd logged it.")
	}
	s.routes()
	s.handler = access.Browser{AllowOrigins: cfg.AllowOrigins, AllowHosts: cfg.AllowHosts,
		Refuse: func(w http.ResponseWriter, _ *http.Request, status int, msg string) { refuse(w, status, msg) },
	}.Wrap(s.router)
	return s
}

// Owns reports whether a path of labd's main listener is the dialect's.
func Owns(path string) bool {
	return path == Prefix || strings.HasPrefix(path, Prefix+"/")
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	s.handler.ServeHTTP(w, r)
}

// call is one authorized request: its project, body and route params.
type call struct {
	project string
	body    []byte
	params  httprouter.Params
	// id is the request's id, kept in the operation records.
	id string
}

// route registers h; the request is authorized (and its body read)
// before h runs.
func (s *Server) route(method, path string, h func(w http.ResponseWriter, r *http.Request, c *call) error) {
	s.router.Handle(method, path, func(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
		c, err := s.authorize(r, p)
		if err == nil {
			err = h(w, r, c)
		}
		if err != nil {
			s.fail(w, r, err)
		}
	})
}

// apiError is a refusal with its HTTP-like code.
type apiError struct {
	code int
	msg  string
}

func (e *apiError) Error() string { return e.msg }

func errorf(code int, format string, args ...any) error {
	return &apiError{code: code, msg: fmt.Sprintf(format, args...)}
}

// fail answers an error: a refusal as it is, a classified error of the
// core by its class, anything else as an error that says nothing of
// labd's insides.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var e *apiError
	if errors.As(err, &e) {
		if e.code == http.StatusUnauthorized {
			s.log.Debug("e24 request refused", "method", r.Method, "path", r.URL.Path, "why", e.msg)
		}
		refuse(w, e.code, e.msg)
		return
	}
	code, msg, public := dialect.Status(err)
	if !public {
		s.log.Error("e24 request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		msg = "Unexpected API error. labd logged it."
	}
	refuse(w, code, msg)
}

// refuse answers success false.
func refuse(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, map[string]any{"success": false, "message": msg, "error": map[string]any{"code": code, "message": msg}})
}

// ok answers success true with the members of v.
func ok(w http.ResponseWriter, v map[string]any) {
	out := map[string]any{"success": true}
	for k, x := range v {
		out[k] = x
	}
	writeJSON(w, out)
}

// writeJSON answers v with HTTP 200, the one status of the API.
func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		b = []byte(`{"success": false, "message": "Unexpected API error.", "error": {"code": 500, "message": "Unexpected API error."}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// readBody reads the whole body, refusing one over maxBody.
func readBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		if _, tooBig := errors.AsType[*http.MaxBytesError](err); tooBig {
			return nil, errorf(http.StatusRequestEntityTooLarge, "The request body is larger than %d bytes", maxBody)
		}
		return nil, errorf(http.StatusBadRequest, "Could not read the request body: %v", err)
	}
	return b, nil
}

// decode reads a body as exactly one JSON object into v, refusing
// unknown members. An empty body is an empty object.
func decode(body []byte, v any) error {
	if len(strings.TrimSpace(string(body))) == 0 {
		body = []byte("{}")
	}
	if err := dialect.Decode(body, v); err != nil {
		return errorf(http.StatusBadRequest, "Invalid request body: %v", err)
	}
	return nil
}

// authorize reads the body, checks the signature and resolves the
// request's project.
func (s *Server) authorize(r *http.Request, p httprouter.Params) (*call, error) {
	body, err := readBody(r)
	if err != nil {
		return nil, err
	}
	c := &call{body: body, params: p, id: "req-" + uuid.NewString()}
	switch {
	case len(s.cfg.Keys) > 0:
		project, err := s.verify(r, body)
		if err != nil {
			return nil, err
		}
		c.project = project
	case s.cfg.Open:
		c.project = s.defaultProject
	default:
		return nil, errorf(http.StatusUnauthorized, "Authentication failed: labd has no API keys for this API")
	}
	return c, nil
}

// ensureProject creates the default project when it is missing.
func (s *Server) ensureProject(ctx context.Context, c *call) error {
	if _, err := s.cfg.Client.Project(c.project); err == nil {
		return nil
	}
	if c.project != s.defaultProject {
		return errorf(http.StatusNotFound, "The project %s of the API key does not exist", c.project)
	}
	_, _, err := s.cfg.Client.CreateProject(ctx, actors.CreateProject{ProjectID: c.project, Name: "e24cloud", Mode: actors.CreateOrGet})
	return err
}
