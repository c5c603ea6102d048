package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/coder/websocket"
	"github.com/google/uuid"
	"github.com/julienschmidt/httprouter"

	"labd/actors"
	"labd/events"
	"labd/nio/pcap"
	"labd/replay"
)

// The handlers every node kind shares, built for one route group of the
// table (kinds.go): create, get, update, lifecycle, links (NIOs and
// captures), consoles. What differs between kinds is their wire.

// newNodeRef returns the node a create names, or a fresh id.
func newNodeRef(projectID string, id field[string], what string) (actors.NodeRef, error) {
	ref := actors.NodeRef{ProjectID: projectID, NodeID: uuid.NewString()}
	if id.Set {
		var err error
		if ref.NodeID, err = parseID(what, id.Value); err != nil {
			return ref, err
		}
	}
	return ref, nil
}

// nodeRefParam parses the {project_id} and the node id parameter of a route.
func nodeRefParam(ps httprouter.Params, param string) (actors.NodeRef, error) {
	pid, err := projectIDParam(ps)
	if err != nil {
		return actors.NodeRef{}, err
	}
	what := "Node"
	if param == "vm_id" {
		what = "VM"
	}
	nid, err := parseID(what, ps.ByName(param))
	return actors.NodeRef{ProjectID: pid, NodeID: nid}, err
}

// portNumbers parses {adapter_number} and {port_number} (digits by the
// route's pattern, bounded here).
func portNumbers(adapter, port string) (int, int, error) {
	a, err1 := strconv.Atoi(adapter)
	p, err2 := strconv.Atoi(port)
	if err1 != nil || err2 != nil || a > 65535 || p > 65535 {
		return 0, 0, newHTTPError(http.StatusBadRequest, "adapter and port numbers must be integers between 0 and 65535")
	}
	return a, p, nil
}

// nodeRef parses the node a route of g names.
func (g *routeGroup) nodeRef(ps httprouter.Params) (actors.NodeRef, error) {
	return nodeRefParam(ps, g.param)
}

// portRef parses the node and port a port route of g names: a GNS3 1.5
// device's ports have no adapter, which labd numbers 0.
func (g *routeGroup) portRef(ps httprouter.Params) (actors.NodeRef, int, int, error) {
	ref, err := g.nodeRef(ps)
	if err != nil {
		return ref, 0, 0, err
	}
	adapter := "0"
	if g.ops&opDevicePorts == 0 {
		adapter = ps.ByName("adapter_number")
	}
	a, p, err := portNumbers(adapter, ps.ByName("port_number"))
	return ref, a, p, err
}

// createNode serves a create: the wire of the kind the route (or, on a
// segment several kinds share, device_type) names decodes the body.
func (s *Server) createNode(g *routeGroup) handler {
	return func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
		pid, err := projectIDParam(ps)
		if err != nil {
			return err
		}
		body, err := readBody(r, s.cfg.MaxBodyBytes, false)
		if err != nil {
			return err
		}
		k, err := g.createKind(body)
		if err != nil {
			return err
		}
		if k.wire == nil {
			return s.refuseCreate(k, g.v, pid, body)
		}
		cmd, err := k.wire.create(g.v, pid, body)
		if err != nil {
			return err
		}
		n, err := s.cfg.Client.CreateNode(r.Context(), cmd)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusCreated, s.nodeView(n, g.v))
		return nil
	}
}

// createKind returns the kind a create on g makes.
func (g *routeGroup) createKind(body []byte) (*nodeKind, error) {
	if len(g.kinds) == 1 {
		return g.kinds[0], nil
	}
	// The kind's own body type is strict; this look is not, the rest of
	// the body is that type's to judge.
	var peek struct {
		DeviceType field[string] `json:"device_type"`
	}
	if err := json.Unmarshal(body, &peek); err != nil {
		return nil, newHTTPError(http.StatusBadRequest, "Invalid JSON: %s", describeJSONError(err))
	}
	if !peek.DeviceType.Set {
		return nil, badRequest("field \"device_type\" is required")
	}
	for _, k := range g.kinds {
		if g.routes(k).deviceType == peek.DeviceType.Value {
			return k, nil
		}
	}
	// GNS3 1.5's DynamipsError, a 409.
	return nil, actors.Conflict("Unknown device type: %s", peek.DeviceType.Value)
}

// routeNode reads the node a route of g names.
func (s *Server) routeNode(g *routeGroup, ps httprouter.Params) (*replay.Node, error) {
	ref, err := g.nodeRef(ps)
	if err != nil {
		return nil, err
	}
	return s.cfg.Client.Node(ref.ProjectID, ref.NodeID)
}

func (s *Server) getNode(g *routeGroup) handler {
	return func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
		n, err := s.routeNode(g, ps)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, s.nodeView(n, g.v))
		return nil
	}
}

// updateNode serves a PUT of the node: its kind's wire decodes the body.
func (s *Server) updateNode(g *routeGroup) handler {
	return func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
		ref, err := g.nodeRef(ps)
		if err != nil {
			return err
		}
		k, cur := g.kinds[0], (*replay.Node)(nil)
		if len(g.kinds) > 1 {
			// The node's kind picks the body's type.
			if cur, err = s.cfg.Client.Node(ref.ProjectID, ref.NodeID); err != nil {
				return err
			}
			k = g.kindOf(cur.Kind) // ofKind made sure it is one of g's
		}
		body, err := readBody(r, s.cfg.MaxBodyBytes, false)
		if err != nil {
			return err
		}
		if k.wire == nil {
			return s.unavailable(k, g.v)
		}
		cmd, err := k.wire.update(g.v, ref, cur, body)
		if err != nil {
			return err
		}
		n, err := s.cfg.Client.NodeDo(r.Context(), cmd)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, s.nodeView(n, g.v))
		return nil
	}
}

// runNode serves a request that is one node command: the command mk
// builds from the route's parameters, a POST's body empty (or {}), the
// reply written from the node as the command left it.
func (s *Server) runNode(mk func(httprouter.Params) (actors.NodeCommand, error), reply func(http.ResponseWriter, *replay.Node)) handler {
	return func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
		cmd, err := mk(ps)
		if err != nil {
			return err
		}
		if r.Method == http.MethodPost {
			if err := decodeBody(r, &struct{}{}, s.cfg.MaxBodyBytes, true); err != nil {
				return err
			}
		}
		n, err := s.cfg.Client.NodeDo(r.Context(), cmd)
		if err != nil {
			return err
		}
		reply(w, n)
		return nil
	}
}

// nodeCommand serves a node command that names only the node.
func (s *Server) nodeCommand(g *routeGroup, mk func(actors.NodeRef) actors.NodeCommand, reply func(http.ResponseWriter, *replay.Node)) handler {
	return s.runNode(func(ps httprouter.Params) (actors.NodeCommand, error) {
		ref, err := g.nodeRef(ps)
		return mk(ref), err
	}, reply)
}

func noContent(w http.ResponseWriter, _ *replay.Node) { w.WriteHeader(http.StatusNoContent) }

// startNode serves a start. GNS3 2.2 answers a VPCS or QEMU start with 200
// and the node (opStartReply); 1.5, and 2.2 for other kinds, with 204.
func (s *Server) startNode(g *routeGroup) handler {
	reply := noContent
	if g.ops&opStartReply != 0 {
		reply = func(w http.ResponseWriter, n *replay.Node) { writeJSON(w, http.StatusOK, s.nodeView(n, g.v)) }
	}
	return s.nodeCommand(g, func(r actors.NodeRef) actors.NodeCommand { return actors.StartNode{NodeRef: r} }, reply)
}

func (s *Server) duplicateNode(g *routeGroup) handler {
	return func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
		ref, err := g.nodeRef(ps)
		if err != nil {
			return err
		}
		var body struct {
			Destination field[string] `json:"destination_node_id"`
		}
		if err := decodeBody(r, &body, s.cfg.MaxBodyBytes, false); err != nil {
			return err
		}
		if !body.Destination.Set {
			return badRequest("field \"destination_node_id\" is required")
		}
		dest, err := parseID("Node", body.Destination.Value)
		if err != nil {
			return err
		}
		n, err := s.cfg.Client.NodeDo(r.Context(), actors.DuplicateNode{NodeRef: ref, Destination: dest})
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusCreated, s.nodeView(n, g.v))
		return nil
	}
}

// nioBody is a NIO as clients send it: NIO_SCHEMA's members of every type,
// so that a type labd does not run is told apart from a malformed body.
type nioBody struct {
	Type    field[string]           `json:"type"`
	LPort   field[int]              `json:"lport"`
	RHost   field[string]           `json:"rhost"`
	RPort   field[int]              `json:"rport"`
	Filters field[map[string][]any] `json:"filters"`
	Suspend field[bool]             `json:"suspend"`

	EthernetDevice field[string] `json:"ethernet_device"`
	TapDevice      field[string] `json:"tap_device"`
	LocalFile      field[string] `json:"local_file"`
	RemoteFile     field[string] `json:"remote_file"`
	ControlFile    field[string] `json:"control_file"`
	VMNet          field[string] `json:"vmnet"`
}

// nioTypes are the NIO types of GNS3's schema that labd does not run.
var nioTypes = map[string]bool{
	"nio_generic_ethernet": true, "nio_ethernet": true, "nio_linux_ethernet": true, "nio_nat": true,
	"nio_tap": true, "nio_unix": true, "nio_vde": true, "nio_vmnet": true, "nio_null": true,
}

// nioJSON is a UDP NIO as GNS3 echoes it.
type nioJSON struct {
	Type    string           `json:"type"`
	LPort   int              `json:"lport"`
	RHost   string           `json:"rhost"`
	RPort   int              `json:"rport"`
	Filters map[string][]any `json:"filters,omitempty"`
	Suspend *bool            `json:"suspend,omitempty"`
}

// decodeNIO reads and checks a NIO body.
func (s *Server) decodeNIO(r *http.Request) (events.NIO, error) {
	var b nioBody
	if err := decodeBody(r, &b, s.cfg.MaxBodyBytes, false); err != nil {
		return events.NIO{}, err
	}
	return checkNIO(b)
}

// checkNIO checks a decoded NIO.
func checkNIO(b nioBody) (events.NIO, error) {
	switch {
	case !b.Type.Set:
		return events.NIO{}, badRequest("field \"type\" is required")
	case nioTypes[b.Type.Value]:
		return events.NIO{}, actors.Conflict("NIO of type %s is not supported", b.Type.Value)
	case b.Type.Value != "nio_udp":
		return events.NIO{}, badRequest("field \"type\" %q is not a NIO type", b.Type.Value)
	case b.EthernetDevice.Set || b.TapDevice.Set || b.LocalFile.Set || b.RemoteFile.Set || b.ControlFile.Set || b.VMNet.Set:
		return events.NIO{}, badRequest("a nio_udp has only type, lport, rhost, rport, filters and suspend")
	case !b.LPort.Set || !b.RHost.Set || !b.RPort.Set:
		return events.NIO{}, badRequest("a nio_udp needs lport, rhost and rport")
	case b.LPort.Value < 1 || b.LPort.Value > 65535:
		return events.NIO{}, badRequest("field \"lport\" must be a port number between 1 and 65535, not %d", b.LPort.Value)
	case b.RPort.Value < 1 || b.RPort.Value > 65535:
		return events.NIO{}, badRequest("field \"rport\" must be a port number between 1 and 65535, not %d", b.RPort.Value)
	case b.RHost.Value == "":
		return events.NIO{}, badRequest("field \"rhost\" must not be empty")
	}
	return events.NIO{Type: b.Type.Value, LPort: b.LPort.Value, RHost: b.RHost.Value, RPort: b.RPort.Value,
		Filters: b.Filters.Value, Suspend: b.Suspend.Value}, nil
}

// addNIO serves POST nio. On a GNS3 1.5 device the NIO comes wrapped
// with the port's settings (deviceNIO).
func (s *Server) addNIO(g *routeGroup) handler {
	if g.ops&opDevicePorts != 0 {
		return s.deviceNIO(g)
	}
	return func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
		ref, a, p, err := g.portRef(ps)
		if err != nil {
			return err
		}
		n, err := s.decodeNIO(r)
		if err != nil {
			return err
		}
		if _, err := s.cfg.Client.NodeDo(r.Context(), actors.AddNIO{NodeRef: ref, Adapter: a, Port: p, NIO: n}); err != nil {
			return err
		}
		// GNS3 echoes the NIO without its filters and suspend.
		writeJSON(w, http.StatusCreated, nioJSON{Type: n.Type, LPort: n.LPort, RHost: n.RHost, RPort: n.RPort})
		return nil
	}
}

func (s *Server) updateNIO(g *routeGroup) handler {
	return func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
		ref, a, p, err := g.portRef(ps)
		if err != nil {
			return err
		}
		n, err := s.decodeNIO(r)
		if err != nil {
			return err
		}
		node, err := s.cfg.Client.NodeDo(r.Context(), actors.UpdateNIO{NodeRef: ref, Adapter: a, Port: p, NIO: n})
		if err != nil {
			return err
		}
		// GNS3 answers 201 with the NIO as it now is.
		l, _ := node.Link(a, p)
		suspend := l.NIO.Suspend
		writeJSON(w, http.StatusCreated, nioJSON{Type: l.NIO.Type, LPort: l.NIO.LPort, RHost: l.NIO.RHost, RPort: l.NIO.RPort,
			Filters: l.NIO.Filters, Suspend: &suspend})
		return nil
	}
}

func (s *Server) removeNIO(g *routeGroup) handler {
	return s.runNode(func(ps httprouter.Params) (actors.NodeCommand, error) {
		ref, a, p, err := g.portRef(ps)
		return actors.RemoveNIO{NodeRef: ref, Adapter: a, Port: p}, err
	}, noContent)
}

func (s *Server) startCapture(g *routeGroup) handler {
	return func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
		ref, a, p, err := g.portRef(ps)
		if err != nil {
			return err
		}
		var body struct {
			File     field[string] `json:"capture_file_name"`
			LinkType field[string] `json:"data_link_type"`
		}
		if err := decodeBody(r, &body, s.cfg.MaxBodyBytes, false); err != nil {
			return err
		}
		if !body.File.Set {
			return badRequest("field \"capture_file_name\" is required")
		}
		if err := actors.CaptureFileName(body.File.Value); err != nil {
			return err
		}
		if body.LinkType.Set && !slices.Contains(actors.LinkTypes, body.LinkType.Value) {
			return badRequest("field \"data_link_type\" must be one of %s, not %q", strings.Join(actors.LinkTypes, ", "), body.LinkType.Value)
		}
		path, err := s.cfg.Client.StartCapture(r.Context(), actors.StartCapture{NodeRef: ref, Adapter: a, Port: p,
			File: body.File.Value, LinkType: body.LinkType.Value})
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, map[string]string{"pcap_file_path": path})
		return nil
	}
}

func (s *Server) stopCapture(g *routeGroup) handler {
	return s.runNode(func(ps httprouter.Params) (actors.NodeCommand, error) {
		ref, a, p, err := g.portRef(ps)
		return actors.StopCapture{NodeRef: ref, Adapter: a, Port: p}, err
	}, noContent)
}

// streamCapture serves GET pcap: the capture file, followed live.
func (s *Server) streamCapture(g *routeGroup) handler {
	return func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
		ref, a, p, err := g.portRef(ps)
		if err != nil {
			return err
		}
		cp, err := s.cfg.Client.NodeCapture(ref.ProjectID, ref.NodeID, a, p)
		if err != nil {
			return err
		}
		if _, err := os.Stat(cp.Path()); err != nil {
			return actors.NotFound("The capture file %s does not exist", cp.Path())
		}
		w.Header().Set("Content-Type", "application/vnd.tcpdump.pcap")
		w.WriteHeader(http.StatusOK)
		rc := http.NewResponseController(w)
		err = pcap.Follow(r.Context(), cp.Path(), cp, w, func() { _ = rc.Flush() })
		if errors.Is(err, context.Canceled) {
			return nil // the client went away
		}
		return err
	}
}

// consoleWS serves console/ws: a WebSocket bridged to the node's console.
func (s *Server) consoleWS(g *routeGroup) handler {
	return func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
		ref, err := g.nodeRef(ps)
		if err != nil {
			return err
		}
		proxy, err := s.cfg.Client.NodeConsole(ref.ProjectID, ref.NodeID)
		if err != nil {
			return err
		}
		if err := checkWebSocketRequest(r); err != nil {
			return err
		}
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
		if err != nil {
			return nil // Accept has answered
		}
		defer c.CloseNow()
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		conn := websocket.NetConn(ctx, c, websocket.MessageBinary)
		_ = proxy.Serve(ctx, conn)
		c.Close(websocket.StatusNormalClosure, "")
		return nil
	}
}

func (s *Server) resetConsole(g *routeGroup) handler {
	return s.nodeCommand(g, func(r actors.NodeRef) actors.NodeCommand { return actors.ResetConsole{NodeRef: r} }, noContent)
}
