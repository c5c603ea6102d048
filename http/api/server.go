// Package api is labd's HTTP front end: the GNS3 compute API, /v1 as in
// the GNS3 1.5 documentation and /v2/compute as GNS3 2.2 controllers speak
// it, on httprouter. Handlers decode and validate requests strictly, turn
// them into calls on actors.Client, and render replies and notification
// streams in GNS3's shapes; errors are mapped to statuses in one place
// (writeError). The node routes of every kind come from one route table
// (kinds.go), each kind's wire shapes in a type of their own.
//
// It imports actors, http/notify, http/access (its guards), events
// (notification payloads), replay (snapshots), nio (port ranges) and host.
package api

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/julienschmidt/httprouter"

	"labd/actors"
	"labd/actors/qemu"
	"labd/host"
	"labd/http/access"
	"labd/http/notify"
	"labd/nio"
)

// Config holds what the API serves from.
type Config struct {
	Client *actors.Client
	Hub    *notify.Hub
	Logger *slog.Logger
	// Version is the GNS3 version string reported to clients. A GNS3
	// controller refuses a compute whose version differs from its own.
	Version string
	// ConsolePorts is the console port range reported by network/ports.
	ConsolePorts nio.PortRange
	// ConsolePortsInUse lists the allocated console ports; nil: none.
	ConsolePortsInUse func() []int
	// AllowServerControl enables POST /v1/server/shutdown and
	// /v1/config/reload, refused with 403 otherwise.
	AllowServerControl bool
	// Shutdown is called once by an allowed /v1/server/shutdown. It asks
	// the daemon to stop and must not block.
	Shutdown func()
	// Reload is called by an allowed /v1/config/reload.
	Reload func() error
	// MaxBodyBytes caps JSON request bodies (413 beyond); zero: 256 KiB.
	// A body becomes an event, and an event must fit in one NATS message
	// (1 MiB by default), envelope included.
	MaxBodyBytes int64
	// MaxUploadBytes caps uploaded files; zero: 8 GiB.
	MaxUploadBytes int64
	// V1PingInterval and WSPingInterval space the pings of idle
	// notification streams: 5 s and 1 s, as GNS3, when zero.
	V1PingInterval time.Duration
	WSPingInterval time.Duration
	// StreamWriteTimeout bounds one write to a notification client: a
	// client that takes nothing for that long is gone. Zero: 10 s.
	StreamWriteTimeout time.Duration
	// Images is the image store the /qemu/images routes serve and
	// /qemu/img writes relative paths into.
	Images qemu.Images
	// QEMU finds the QEMU binaries the /qemu/binaries routes list, and
	// is the only source of the qemu-img /qemu/img runs.
	QEMU qemu.Finder
	// AuthUser and AuthPassword, when AuthUser is set, require HTTP Basic
	// on every route, as GNS3's auth = True does (consoles and
	// notification streams included, which GNS3 exempts).
	AuthUser, AuthPassword string
	// AllowOrigins are web origins besides the API's own whose pages may
	// call it; AllowHosts are host names besides IP literals and
	// localhost that requests may be addressed to (http/access).
	AllowOrigins, AllowHosts []string
}

// authRealm is GNS3's realm: a controller shows it when asking for the
// compute's credentials.
const authRealm = "GNS3 server"

// Server is the API's http.Handler.
type Server struct {
	cfg    Config
	router *httprouter.Router
	// handler is the router behind the guards: the browser checks, then
	// authentication.
	handler http.Handler
	log     *slog.Logger
	cpu     host.CPU
	// done is closed when the server stops, to end notification streams,
	// which would otherwise hold a graceful shutdown open.
	done chan struct{}
}

// New returns the API handler.
func New(cfg Config) *Server {
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = 256 << 10
	}
	if cfg.MaxUploadBytes == 0 {
		cfg.MaxUploadBytes = 8 << 30
	}
	if cfg.V1PingInterval == 0 {
		cfg.V1PingInterval = 5 * time.Second
	}
	if cfg.WSPingInterval == 0 {
		cfg.WSPingInterval = time.Second
	}
	if cfg.StreamWriteTimeout == 0 {
		cfg.StreamWriteTimeout = 10 * time.Second
	}
	if cfg.ConsolePortsInUse == nil {
		cfg.ConsolePortsInUse = func() []int { return nil }
	}
	s := &Server{cfg: cfg, router: httprouter.New(), log: cfg.Logger, done: make(chan struct{})}
	// A strict JSON API: no redirects to guessed paths, JSON errors for
	// unknown routes and methods.
	s.router.RedirectTrailingSlash = false
	s.router.RedirectFixedPath = false
	s.router.NotFound = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, newHTTPError(http.StatusNotFound, "%s %s: no such route", r.Method, r.URL.Path))
	})
	s.router.MethodNotAllowed = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, newHTTPError(http.StatusMethodNotAllowed, "%s is not allowed on %s", r.Method, r.URL.Path))
	})
	s.router.PanicHandler = func(w http.ResponseWriter, r *http.Request, v any) {
		s.log.Error("handler panicked", "method", r.Method, "path", r.URL.Path, "panic", v)
		s.writeError(w, r, errors.New("handler panicked"))
	}
	s.routes()
	s.handler = s.router
	if cfg.AuthUser != "" {
		s.handler = access.Basic{Realm: authRealm, User: cfg.AuthUser, Password: cfg.AuthPassword, Refuse: s.Refuse}.Wrap(s.handler)
	}
	s.handler = access.Browser{AllowOrigins: cfg.AllowOrigins, AllowHosts: cfg.AllowHosts, Refuse: s.Refuse}.Wrap(s.handler)
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Server", "labd GNS3/"+s.cfg.Version)
	s.handler.ServeHTTP(w, r)
}

// Close ends the open notification streams; call it when the HTTP server
// starts shutting down.
func (s *Server) Close() {
	select {
	case <-s.done:
	default:
		close(s.done)
	}
}

// handler is an API handler: it writes a reply, or returns an error for
// writeError to answer.
type handler func(w http.ResponseWriter, r *http.Request, p httprouter.Params) error

// route registers h for method on a GNS3 route template such as
// /v2/compute/projects/{project_id}/files/{path:.+}. The template is also
// the X-Route header GNS3 clients read.
func (s *Server) route(method, template string, h handler) {
	pattern, checks := routerPattern(template)
	s.router.Handle(method, pattern, func(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
		w.Header().Set("X-Route", template)
		rw := &responseWriter{ResponseWriter: w}
		start := time.Now()
		err := checkParams(p, checks)
		if err == nil {
			err = h(rw, r, p)
		}
		if err != nil {
			if rw.status != 0 {
				// The reply had started (a stream): it can only be cut.
				s.log.Debug("request ended with an error after its reply began", "method", r.Method, "path", r.URL.Path, "err", err)
			} else {
				if he, ok := errors.AsType[*httpError](err); ok && he.drain {
					drainBody(rw, r)
				}
				s.writeError(rw, r, err)
			}
		}
		// Checked first: the arguments would cost allocations on every
		// request even with debug logging off.
		if s.log.Enabled(r.Context(), slog.LevelDebug) {
			s.log.Debug("request", "method", r.Method, "path", r.URL.Path, "route", template, "status", rw.status, "duration", time.Since(start))
		}
	})
}

var templateParam = regexp.MustCompile(`\{([a-z_]+)(?::([^}]+))?\}`)

// paramCheck is a route parameter constrained by a pattern in its template.
type paramCheck struct {
	name string
	re   *regexp.Regexp
}

// routerPattern turns a GNS3 route template into an httprouter pattern.
// {name} becomes :name, a trailing {name:.+} the catch-all *name, and
// {name:regexp} a :name checked against ^regexp$.
func routerPattern(template string) (string, []paramCheck) {
	var checks []paramCheck
	pattern := templateParam.ReplaceAllStringFunc(template, func(m string) string {
		sub := templateParam.FindStringSubmatch(m)
		name, re := sub[1], sub[2]
		switch {
		case re == ".+" && strings.HasSuffix(template, m):
			return "*" + name
		case re != "":
			checks = append(checks, paramCheck{name, regexp.MustCompile("^(?:" + re + ")$")})
		}
		return ":" + name
	})
	return pattern, checks
}

func checkParams(p httprouter.Params, checks []paramCheck) error {
	for _, c := range checks {
		if v := p.ByName(c.name); !c.re.MatchString(v) {
			return newHTTPError(http.StatusNotFound, "%s %q is not valid here", c.name, v)
		}
	}
	return nil
}

// responseWriter remembers whether the reply has started, for the error
// path and the log.
type responseWriter struct {
	http.ResponseWriter
	status int
}

func (w *responseWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController and the WebSocket upgrade reach the
// underlying writer.
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Hijack marks the reply as started (switching protocols) and hands the
// connection over.
func (w *responseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	w.status = http.StatusSwitchingProtocols
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

// httpError is an error of the transport itself (a body too large, a
// malformed parameter) with its status.
type httpError struct {
	status int
	msg    string
	header http.Header
	// drain: read the request body's rest before answering (tooLarge).
	drain bool
}

func newHTTPError(status int, format string, args ...any) *httpError {
	return &httpError{status: status, msg: fmt.Sprintf(format, args...)}
}

func (e *httpError) Error() string { return e.msg }

// nodeError is a node error of a v2 route that GNS3 answers with the
// class of its exception beside the message ({"exception":
// "DynamipsError"}): the refusals of the kinds labd cannot run, whose
// clients may tell them apart by it.
type nodeError struct {
	exception string
	err       error
}

func (e *nodeError) Error() string { return e.err.Error() }
func (e *nodeError) Unwrap() error { return e.err }

// errorBody is GNS3's error shape.
type errorBody struct {
	Status  int    `json:"status"`
	Message string `json:"message"`
	// Image and Exception are set for a missing image, in the shape of
	// GNS3's ImageMissingError: a controller uploads the image and
	// retries. Exception alone is set for a nodeError.
	Image     string `json:"image,omitempty"`
	Exception string `json:"exception,omitempty"`
}

// Refuse answers a request the listener's guards refused (http/access),
// in GNS3's error shape.
func (s *Server) Refuse(w http.ResponseWriter, r *http.Request, status int, msg string) {
	s.writeError(w, r, newHTTPError(status, "%s", msg))
}

// writeError is the one place errors become statuses.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, msg := http.StatusInternalServerError, "Internal server error"
	var he *httpError
	switch {
	case errors.As(err, &he):
		status, msg = he.status, he.msg
		for k, v := range he.header {
			w.Header()[k] = v
		}
	case errors.Is(err, actors.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, actors.ErrAlreadyExists), errors.Is(err, actors.ErrConflict):
		status = http.StatusConflict
	case errors.Is(err, actors.ErrInvalid):
		status = http.StatusBadRequest
	case errors.Is(err, actors.ErrForbidden):
		status = http.StatusForbidden
	case errors.Is(err, actors.ErrUnavailable):
		status = http.StatusServiceUnavailable
		w.Header().Set("Retry-After", "1")
	case errors.Is(err, context.Canceled):
		// The client went away; GNS3 answers 408 to a cancelled request.
		status, msg = http.StatusRequestTimeout, "Request canceled"
	}
	if he == nil {
		if m, ok := actors.PublicMessage(err); ok {
			msg = m
		}
	}
	if status >= 500 {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
	} else {
		s.log.Debug("request refused", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
	}
	body := errorBody{Status: status, Message: msg}
	if missing, ok := errors.AsType[*qemu.MissingError](err); ok && status == http.StatusConflict {
		body.Image, body.Exception = missing.Image, "ImageMissingError"
	}
	if ne, ok := errors.AsType[*nodeError](err); ok && status == http.StatusConflict {
		body.Exception = ne.exception
	}
	writeJSON(w, status, body)
}
