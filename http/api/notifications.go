package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/julienschmidt/httprouter"

	"labd/events"
	"labd/host"
	"labd/http/notify"
	"labd/replay"
)

// notification is one message of a notification stream: GNS3's
// {"action", "event", "project_id"} plus the event's stream sequence, which
// a client passes back as ?since= when it reconnects.
type notification struct {
	Action    string `json:"action"`
	Event     any    `json:"event"`
	ProjectID string `json:"project_id,omitempty"`
	Sequence  uint64 `json:"sequence,omitempty"`
}

// apiVersion selects the shapes a stream renders objects in.
type apiVersion int

const (
	v1 apiVersion = iota + 1
	v2
)

func (s *Server) notificationRoutes() {
	s.route("GET", "/v1/projects/{project_id}/notifications", func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
		return s.projectStream(w, r, ps, v1)
	})
	// GNS3 2.2 declares this route but answers 500; labd serves it, for
	// clients behind proxies that break WebSockets.
	s.route("GET", "/v2/compute/projects/{project_id}/notifications", func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
		return s.projectStream(w, r, ps, v2)
	})
	s.route("GET", "/v2/compute/notifications/ws", s.wsNotifications)
}

// sinceParam parses the optional ?since=<sequence>.
func sinceParam(r *http.Request) (*uint64, error) {
	v, ok := r.URL.Query()["since"]
	if !ok {
		return nil, nil
	}
	n, err := strconv.ParseUint(v[0], 10, 64)
	if err != nil || len(v) != 1 {
		return nil, newHTTPError(http.StatusBadRequest, "since must be one event sequence number, not %q", v)
	}
	return &n, nil
}

func (s *Server) subscribe(r *http.Request, match func(notify.Item) bool) (*notify.Sub, error) {
	since, err := sinceParam(r)
	if err != nil {
		return nil, err
	}
	sub, err := s.cfg.Hub.Subscribe(r.Context(), since, match)
	if errors.Is(err, notify.ErrFuture) {
		return nil, newHTTPError(http.StatusBadRequest, "%v", err)
	}
	return sub, err
}

// projectStream serves a project's notifications as a chunked stream of
// JSON lines, GNS3 1.x's only channel: a ping first, then one line per
// event, a ping after each idle interval. The stream ends after the
// project is closed or deleted.
func (s *Server) projectStream(w http.ResponseWriter, r *http.Request, ps httprouter.Params, v apiVersion) error {
	p, err := s.project(ps)
	if err != nil {
		return err
	}
	sub, err := s.subscribe(r, func(it notify.Item) bool { return it.ProjectID == p.ID })
	if err != nil {
		return err
	}
	defer sub.Close()

	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	send := func(n notification) error {
		b, err := json.Marshal(n)
		if err != nil {
			return err
		}
		rc.SetWriteDeadline(time.Now().Add(s.cfg.StreamWriteTimeout))
		if _, err := w.Write(append(b, '\n')); err != nil {
			return err
		}
		return rc.Flush()
	}
	ended := func(it notify.Item) bool {
		return it.Type == events.TypeProjectClosed || it.Type == events.TypeProjectDeleted
	}
	_, err = s.feed(r.Context(), sub, v, s.cfg.V1PingInterval, send, ended)
	return err
}

// wsNotifications serves every notification of the compute over a
// WebSocket, as GNS3 2.2 does: a ping first, then one text message per
// event, a ping after each idle interval. Client messages are read and
// ignored.
func (s *Server) wsNotifications(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	sub, err := s.subscribe(r, nil)
	if err != nil {
		return err
	}
	defer sub.Close()
	if err := checkWebSocketRequest(r); err != nil {
		return err
	}
	// The origin was checked by the server's guard, with a JSON answer.
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return err
	}
	c.SetReadLimit(64 << 10)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		// Reading is what answers pings and close frames; a read error
		// means the client is gone.
		defer cancel()
		for {
			if _, _, err := c.Read(ctx); err != nil {
				return
			}
		}
	})
	send := func(n notification) error {
		b, err := json.Marshal(n)
		if err != nil {
			return err
		}
		wctx, wcancel := context.WithTimeout(ctx, s.cfg.StreamWriteTimeout)
		defer wcancel()
		return c.Write(wctx, websocket.MessageText, b)
	}
	why, err := s.feed(ctx, sub, v2, s.cfg.WSPingInterval, send, nil)
	switch {
	case errors.Is(why, notify.ErrTooSlow):
		c.Close(websocket.StatusTryAgainLater, "too slow: reconnect with since")
	case errors.Is(why, notify.ErrClosed), errors.Is(why, errServerClosing):
		c.Close(websocket.StatusGoingAway, "labd is shutting down")
	default:
		c.Close(websocket.StatusNormalClosure, "")
	}
	return err
}

var errServerClosing = errors.New("api: server closing")

// checkWebSocketRequest refuses, with a JSON error, what the WebSocket
// library would refuse in plain text: a request that is not an upgrade.
// The Origin was checked by the server's guard (http/access), which lets
// the API's own origin and the allowed ones through, so the library's own
// origin check is skipped.
func checkWebSocketRequest(r *http.Request) error {
	if !headerHas(r.Header, "Connection", "upgrade") || !headerHas(r.Header, "Upgrade", "websocket") {
		return &httpError{status: http.StatusUpgradeRequired, msg: "This route is a WebSocket: send an upgrade request",
			header: http.Header{"Upgrade": {"websocket"}}}
	}
	return nil
}

func headerHas(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// feed delivers a subscription: a ping, the backlog, then live items, with
// a ping after each idle interval. It returns why the feed ended (the
// hub's reason, errServerClosing, or nil when ended said so or the client
// left) and the error of a failed send. A subscriber the hub drops as too
// slow gets a last message telling it where to resume.
func (s *Server) feed(ctx context.Context, sub *notify.Sub, v apiVersion, idle time.Duration,
	send func(notification) error, ended func(notify.Item) bool) (why, err error) {
	var last uint64
	deliver := func(it notify.Item) (bool, error) {
		for _, n := range s.render(it, v) {
			if err := send(n); err != nil {
				return true, err
			}
		}
		last = it.Seq
		return ended != nil && ended(it), nil
	}
	if err := send(s.ping()); err != nil {
		return nil, err
	}
	for _, it := range sub.Backlog {
		if stop, err := deliver(it); stop || err != nil {
			return nil, err
		}
	}
	timer := time.NewTimer(idle)
	defer timer.Stop()
	for {
		select {
		case it, ok := <-sub.C:
			if !ok {
				why := sub.Err()
				if errors.Is(why, notify.ErrTooSlow) {
					send(notification{Action: "labd.disconnected", Event: map[string]any{
						"reason":        "the client did not keep up with its notifications",
						"last_sequence": last,
					}})
				}
				return why, nil
			}
			if stop, err := deliver(it); stop || err != nil {
				return nil, err
			}
			timer.Reset(idle)
		case <-timer.C:
			if err := send(s.ping()); err != nil {
				return nil, err
			}
			timer.Reset(idle)
		case <-ctx.Done():
			return nil, nil
		case <-s.done:
			return errServerClosing, nil
		}
	}
}

func (s *Server) ping() notification {
	ev := map[string]float64{"cpu_usage_percent": s.cpu.Percent()}
	if mem, err := host.ReadMemory(); err == nil {
		ev["memory_usage_percent"] = mem.UsedPercent()
	}
	return notification{Action: "ping", Event: ev}
}

// render turns an event into its notifications. GNS3 defines no
// notification for labd's project lifecycle, and GNS3 controllers forward
// compute notifications they do not know to their GUIs, which act on
// "project.updated" and "project.closed" as controller events: labd's own
// actions are therefore namespaced "labd.", which GNS3 clients ignore.
// Node events become GNS3's own: vm.* in v1, node.updated / node.deleted
// in v2, and log.error when a node's process died; the lifecycle's
// operation records go out as labd.node.operation_started and _ended.
func (s *Server) render(it notify.Item, v apiVersion) []notification {
	n := notification{ProjectID: it.ProjectID, Sequence: it.Seq}
	one := func(action string, ev any) []notification {
		n.Action, n.Event = action, ev
		return []notification{n}
	}
	project := func(p *replay.Project) any {
		if v == v1 {
			return s.v1Project(p)
		}
		return v2Project(p)
	}
	if it.Node != nil {
		return s.renderNode(it, n, v)
	}
	switch d := it.Data.(type) {
	case events.ProjectCreated:
		return one("labd.project.created", project(it.Project))
	case events.ProjectUpdated:
		return one("labd.project.updated", project(it.Project))
	case events.ProjectClosed:
		return one("labd.project.closed", project(it.Project))
	case events.ProjectDeleted:
		return one("labd.project.deleted", project(it.Project))
	case events.UDPPortAllocated:
		return one("labd.project.udp_port_allocated", map[string]int{"udp_port": d.Port})
	case events.FileWritten:
		return one("labd.project.file_written", d)
	case events.EffectFailed:
		return one("log.error", map[string]string{
			"message": fmt.Sprintf("labd could not %s (project %s): %s", d.Effect, it.ProjectID, d.Error),
		})
	}
	return one("labd."+string(it.Type), it.Data)
}

// renderNode renders a node event.
func (s *Server) renderNode(it notify.Item, n notification, v apiVersion) []notification {
	node := it.Node
	var out []notification
	add := func(action string, ev any) {
		m := n
		m.Action, m.Event = action, ev
		out = append(out, m)
	}
	view := func() any { return s.nodeView(node, v) }
	if stop, ok := it.Data.(events.NodeStopped); ok && (stop.Reason == events.StopExited || stop.Reason == events.StopGuestShutdown) {
		// A stop nobody asked labd for is reported, as GNS3 reports an
		// exit; a guest that powered off is one too.
		add("log.error", map[string]string{"message": stop.Message})
	}
	switch d := it.Data.(type) {
	case events.NodeCreated:
		if v == v1 {
			add("vm.created", view())
		} else {
			add("node.updated", view())
		}
	case events.NodeStarted, events.NodeResumed:
		if v == v1 {
			add("vm.started", view())
		} else {
			add("node.updated", view())
		}
	case events.NodeSuspended, events.NodeSaved: // GNS3 shows both as suspended
		if v == v1 {
			add("vm.suspended", view())
		} else {
			add("node.updated", view())
		}
	case events.NodeStopped, events.NodeClosed:
		if v == v1 {
			add("vm.stopped", view())
		} else {
			add("node.updated", view())
		}
	case events.NodeDeleted:
		if v == v1 {
			add("vm.deleted", view())
		} else {
			add("node.deleted", view())
		}
	case events.NodeUpdated, events.NodeResized, events.ResizeReverted:
		if v == v1 {
			add("vm.updated", view())
		} else {
			add("node.updated", view())
		}
	case events.NodeStartFailed:
		add("log.error", map[string]string{"message": fmt.Sprintf("Node %s could not start: %s", node.Name, d.Error)})
	case events.EffectFailed:
		add("log.error", map[string]string{"message": fmt.Sprintf("labd could not %s (node %s): %s", d.Effect, node.Name, d.Error)})
	default:
		add("labd."+string(it.Type), it.Data)
	}
	return out
}

func (s *Server) routes() {
	s.versionRoutes()
	s.projectRoutes()
	s.fileRoutes()
	s.networkRoutes()
	s.notificationRoutes()
	s.kindRoutes()
	s.qemuImageRoutes()
}
