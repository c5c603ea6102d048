// Package nova is labd's OpenStack Nova dialect: the compute API's server
// calls (create, list, show, rename, delete, the server actions, remote
// consoles, instance actions), flavors and images, over labd's one node
// lifecycle (actors.Operate). It holds no state but its token table: a
// server is a node of a labd project, a Nova project is a labd project,
// and an instance action is an operation record.
//
// It is mounted at /v2.1/ and at the provider-style /v2/{project_id}/ (the
// seed's NTT SDPF paths). The project of /v2.1/ is the token's, from the
// token table; with no table (labd on loopback), it is a labd project
// named "nova" whose id derives from the compute id, created by the first
// server create.
//
// Decisions where Nova leaves room: a server is any node of a kind that
// runs a process (VPCS, QEMU: switches, hubs and clouds are not servers);
// a flavor is matched to a node by its CPUs and memory; a remote console's
// URL is vnc://host:port?VncPassword=... (RFC 7869), since labd has no
// noVNC proxy; a server of a VPCS node answers 501 to the actions VPCS
// does not have.
package nova

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
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

// Microversions: labd speaks 2.1 to MaxVersion (2.6 has remote consoles).
const (
	MinVersion = "2.1"
	MaxVersion = "2.6"
	maxMinor   = 6
)

// DefaultShutdownTimeout is Nova's shutdown_timeout.
const DefaultShutdownTimeout = 60 * time.Second

// maxBody bounds a request body.
const maxBody = 1 << 20

// Config is what the dialect needs.
type Config struct {
	Client *actors.Client
	// Images is the QEMU image store servers are made from.
	Images qemu.Images
	// Flavors is the flavor table; nil: DefaultFlavors.
	Flavors []Flavor
	// Tokens maps X-Auth-Token values to the project they act on.
	Tokens map[string]string
	// Open takes any token when Tokens is empty (labd on loopback), and
	// /v2.1/ then serves the default project; without it and without
	// Tokens, every request is refused.
	Open bool
	// AllowOrigins and AllowHosts widen the browser checks (see
	// access.Browser), as for GNS3's API.
	AllowOrigins, AllowHosts []string
	// ShutdownTimeout bounds how long os-stop and a SOFT reboot wait for
	// the guest before forcing; zero is DefaultShutdownTimeout.
	ShutdownTimeout time.Duration
	// ComputeID names the compute: the default project's id derives
	// from it.
	ComputeID string
	// Root serves GET / (Nova's version list): on a listener of Nova's
	// own, not on labd's main one, where GNS3 answers it.
	Root   bool
	Logger *slog.Logger
}

// Server is the dialect's http.Handler.
type Server struct {
	cfg     Config
	router  *httprouter.Router
	handler http.Handler // the router behind the browser checks
	log     *slog.Logger
	// defaultProject is the project of /v2.1/ without a token table.
	defaultProject string
}

// New returns the dialect's handler.
func New(cfg Config) *Server {
	if cfg.Flavors == nil {
		cfg.Flavors = DefaultFlavors()
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = DefaultShutdownTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, router: httprouter.New(), log: cfg.Logger,
		defaultProject: uuid.NewSHA1(uuid.NameSpaceOID, []byte("labd-nova:"+cfg.ComputeID)).String()}
	s.router.RedirectTrailingSlash = false
	s.router.RedirectFixedPath = false
	s.router.HandleMethodNotAllowed = true
	s.router.NotFound = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeFault(w, http.StatusNotFound, "The resource could not be found.")
	})
	s.router.MethodNotAllowed = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeFault(w, http.StatusMethodNotAllowed, "The method specified is not allowed for this resource.")
	})
	s.router.PanicHandler = func(w http.ResponseWriter, r *http.Request, v any) {
		s.log.Error("nova handler panicked", "path", r.URL.Path, "panic", v)
		writeFault(w, http.StatusInternalServerError, "Unexpected API Error. labd logged it.")
	}
	s.routes()
	s.handler = access.Browser{AllowOrigins: cfg.AllowOrigins, AllowHosts: cfg.AllowHosts,
		Refuse: func(w http.ResponseWriter, _ *http.Request, status int, msg string) { writeFault(w, status, msg) },
	}.Wrap(s.router)
	return s
}

// Owns reports whether a path of labd's main listener is Nova's: /v2.1
// and /v2/{project_id}/..., where the segment is not GNS3's compute (nor
// another dialect's, given in others).
func Owns(path string, others ...string) bool {
	if path == "/v2.1" || strings.HasPrefix(path, "/v2.1/") {
		return true
	}
	rest, ok := strings.CutPrefix(path, "/v2/")
	if !ok {
		return false
	}
	seg, _, _ := strings.Cut(rest, "/")
	if seg == "" || seg == "compute" {
		return false
	}
	for _, o := range others {
		if seg == o {
			return false
		}
	}
	return true
}

// ServeHTTP implements http.Handler: every reply has a request id and
// the microversion headers.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := "req-" + uuid.NewString()
	h := w.Header()
	h.Set("X-Openstack-Request-Id", id)
	h.Set("X-Compute-Request-Id", id)
	h.Set("Vary", "OpenStack-API-Version, X-OpenStack-Nova-API-Version")
	minor, err := microversion(r.Header)
	if err != nil {
		writeFault(w, http.StatusNotAcceptable, err.Error())
		return
	}
	v := "2." + strconv.Itoa(minor)
	h.Set("X-OpenStack-Nova-API-Version", v)
	h.Set("OpenStack-API-Version", "compute "+v)
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	ctx := context.WithValue(r.Context(), reqKey{}, &reqInfo{id: id, minor: minor})
	s.handler.ServeHTTP(w, r.WithContext(ctx))
}

type reqKey struct{}

// reqInfo is what ServeHTTP learnt of a request.
type reqInfo struct {
	id    string
	minor int
}

func info(r *http.Request) *reqInfo { return r.Context().Value(reqKey{}).(*reqInfo) }

var versionRE = regexp.MustCompile(`^2\.(0|[1-9][0-9]*)$`)

// microversion reads the requested microversion: 2.1 when none is asked.
func microversion(h http.Header) (int, error) {
	v := strings.TrimSpace(h.Get("X-OpenStack-Nova-API-Version"))
	if o := strings.TrimSpace(h.Get("OpenStack-API-Version")); o != "" {
		service, ver, _ := strings.Cut(o, " ")
		if strings.EqualFold(service, "compute") {
			v = strings.TrimSpace(ver)
		}
	}
	switch {
	case v == "":
		return 1, nil
	case strings.EqualFold(v, "latest"):
		return maxMinor, nil
	}
	m := versionRE.FindStringSubmatch(v)
	if m == nil {
		return 0, fmt.Errorf("Invalid API version request string %s", v)
	}
	minor, err := strconv.Atoi(m[1])
	if err != nil || minor < 1 || minor > maxMinor {
		return 0, fmt.Errorf("Version %s is not supported by the API. Minimum is %s and maximum is %s.", v, MinVersion, MaxVersion)
	}
	return minor, nil
}

// handler is a route's handler; an error is answered as a fault.
type handler func(w http.ResponseWriter, r *http.Request, p httprouter.Params) error

// route registers h at /v2.1/path and /v2/:project_id/path. scoped routes
// need a project: it is resolved (and the token checked) before h runs.
func (s *Server) route(method, path string, h func(w http.ResponseWriter, r *http.Request, c *call) error) {
	wrap := func(provider bool) httprouter.Handle {
		return func(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
			c, err := s.authorize(r, p, provider)
			if err == nil {
				err = h(w, r, c)
			}
			if err != nil {
				s.fail(w, r, err)
			}
		}
	}
	s.router.Handle(method, "/v2.1"+path, wrap(false))
	s.router.Handle(method, "/v2/:project_id"+path, wrap(true))
}

// call is one authorized request: its project, and the route's params.
type call struct {
	project string
	params  httprouter.Params
	info    *reqInfo
	// base is the URL prefix of the request's version (/v2.1 or
	// /v2/<project>), for links.
	base string
}

// fault is an error with a status, answered in Nova's shape.
type fault struct {
	status int
	msg    string
}

func (f *fault) Error() string { return f.msg }

func faultf(status int, format string, args ...any) error {
	return &fault{status: status, msg: fmt.Sprintf(format, args...)}
}

// fail answers an error: a fault as it is, a classified error of the core
// by its class, anything else as a compute fault that says nothing of
// labd's insides.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var f *fault
	if errors.As(err, &f) {
		writeFault(w, f.status, f.msg)
		return
	}
	status, msg, public := dialect.Status(err)
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	if !public {
		s.log.Error("nova request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		msg = "Unexpected API Error. labd logged it."
	}
	writeFault(w, status, msg)
}

// faultNames are Nova's fault names by status (wsgi.Fault).
var faultNames = map[int]string{
	400: "badRequest", 401: "unauthorized", 403: "forbidden", 404: "itemNotFound", 405: "badMethod",
	409: "conflictingRequest", 413: "overLimit", 415: "badMediaType", 429: "overLimit",
	501: "notImplemented", 503: "serviceUnavailable",
}

func writeFault(w http.ResponseWriter, status int, msg string) {
	name, ok := faultNames[status]
	if !ok {
		name = "computeFault"
	}
	writeJSON(w, status, map[string]any{name: map[string]any{"code": status, "message": msg}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"computeFault": {"code": 500, "message": "Unexpected API Error."}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// accepted answers 202 with an empty body, as Nova's actions do.
func accepted(w http.ResponseWriter) {
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
}

// decode reads a request body as exactly one JSON value into v, refusing
// unknown members.
func decode(r *http.Request, v any) error {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		if _, tooBig := errors.AsType[*http.MaxBytesError](err); tooBig {
			return faultf(http.StatusRequestEntityTooLarge, "Request is too large.")
		}
		return faultf(http.StatusBadRequest, "could not read the request body: %v", err)
	}
	switch err := dialect.Decode(b, v); {
	case errors.Is(err, dialect.ErrTrailing):
		return faultf(http.StatusBadRequest, "Malformed request body: more than one JSON value")
	case err != nil:
		return faultf(http.StatusBadRequest, "Invalid input for field/attribute: %v", err)
	}
	return nil
}

// authorize checks the token and resolves the request's project.
func (s *Server) authorize(r *http.Request, p httprouter.Params, provider bool) (*call, error) {
	c := &call{params: p, info: info(r), base: "/v2.1"}
	token := r.Header.Get("X-Auth-Token")
	tokenProject := ""
	if len(s.cfg.Tokens) == 0 && !s.cfg.Open {
		return nil, faultf(http.StatusUnauthorized, "The request you have made requires authentication.")
	}
	if len(s.cfg.Tokens) > 0 {
		var ok bool
		if tokenProject, ok = s.cfg.Tokens[token]; !ok || token == "" {
			return nil, faultf(http.StatusUnauthorized, "The request you have made requires authentication.")
		}
	}
	if !provider {
		c.project = s.defaultProject
		if tokenProject != "" {
			c.project = tokenProject
		}
		return c, nil
	}
	raw := p.ByName("project_id")
	id, ok := projectID(raw)
	if !ok {
		return nil, faultf(http.StatusBadRequest, "Malformed request URL: project_id '%s' is not a project id", raw)
	}
	if tokenProject != "" && tokenProject != id {
		return nil, faultf(http.StatusBadRequest, "Malformed request URL: URL's project_id '%s' doesn't match Context's project_id '%s'", raw, tokenProject)
	}
	if _, err := s.cfg.Client.Project(id); err != nil {
		return nil, faultf(http.StatusNotFound, "Project %s could not be found.", raw)
	}
	c.project, c.base = id, "/v2/"+raw
	return c, nil
}

// projectID reads a labd project id in the dashed or the 32-hex form.
func projectID(s string) (string, bool) {
	if len(s) != 36 && len(s) != 32 {
		return "", false
	}
	u, err := uuid.Parse(s)
	if err != nil {
		return "", false
	}
	return u.String(), true
}
