package api

import (
	"net/http"

	"github.com/julienschmidt/httprouter"

	"labd/actors"
	"labd/actors/cloud"
	"labd/actors/ethswitch"
	"labd/actors/hub"
	"labd/actors/qemu"
	"labd/actors/vpcs"
	"labd/replay"
)

// The route table: one entry per node kind, GNS3's node type, with the
// routes GNS3 has for it in each API version and the kind's wire shapes.
// Every node route is registered from it (kindRoutes), so adding a kind is
// one entry here and one wire type; the handlers themselves (nodes.go) are
// the same for every kind.

// nodeKind is one entry of the route table.
type nodeKind struct {
	// kind is the GNS3 node type, the kind actors knows the driver by.
	kind string
	// v2 and v1 are the kind's routes in each version; a zero v1 (no
	// segment): none, the kind is younger than GNS3 1.5.
	v2, v1 routeSet
	// wire is the kind's wire shapes; nil for a kind labd cannot run, whose
	// routes only answer what GNS3 answers when there is no such node, and
	// whose create is refused with the reason Client.Available gives.
	wire wire
	// exception is the class of the exceptions GNS3 2.2 raises for the
	// kind's nodes, which the v2 refusals of a kind labd cannot run carry.
	exception string
	// inventory is the compute-wide route listing what the kind could run
	// on this host (/docker/images, under /v1 and /v2/compute alike), ""
	// when it has none.
	inventory string
}

// routeSet is a kind's routes in one API version.
type routeSet struct {
	// segment follows the project's path: "vpcs/nodes", "qemu/vms",
	// "dynamips/devices".
	segment string
	// param names the node in route templates: node_id by default in v2,
	// vm_id in v1; device_id for GNS3 1.5's dynamips devices.
	param string
	// deviceType is the device_type that picks the kind on a segment that
	// several kinds share (GNS3 1.5's dynamips/devices).
	deviceType string
	ops        ops
}

// ops says which of the node routes (nodeRoutes) a kind has.
type ops uint32

const (
	opGet    ops = 1 << iota // GET the node
	opUpdate                 // PUT the node
	opDelete                 // DELETE the node
	opStart                  // start and stop
	// opStartReply: start answers 200 and the node, not 204 (GNS3 2.2's
	// VPCS and QEMU, as they really answer).
	opStartReply
	opSuspend
	opReload
	opResume
	opPause // Docker's pause and unpause
	opDuplicate
	opNIO       // POST and DELETE nio, start_capture, stop_capture
	opNIOUpdate // PUT nio
	opPCAP      // GET pcap
	opConsole   // console/ws, console/reset
	opIdlePC    // Dynamips: idlepc_proposals, auto_idlepc
	opVMNet     // VMware: interfaces/vmnet
	opConfigs   // GNS3 1.5's Dynamips and IOU: configs, configs/save
	// opDevicePorts: a port is ports/{port_number} with no adapter (0),
	// and a NIO comes wrapped with the port's settings, as GNS3 1.5's
	// dynamips devices have them.
	opDevicePorts
)

// opsNode are the routes GNS3 2.2 has for (nearly) every node type.
const opsNode = opGet | opUpdate | opDelete | opStart | opSuspend | opNIO | opPCAP

// opsDevice are GNS3 1.5's routes of a dynamips device.
const opsDevice = opGet | opUpdate | opDelete | opNIO | opDevicePorts

// devicesSegment is GNS3 1.5's segment of the dynamips devices: switches,
// hubs, Frame Relay and ATM switches, told apart by device_type.
const devicesSegment = "dynamips/devices"

// nodeKinds is the route table, in the order capabilities lists the kinds.
// The routes of each kind are GNS3's (§1.4 of the reference); labd adds
// to them only where its data plane does what GNS3's cannot: PUT nio
// (filters, suspend) on switches and hubs, and the switch's console.
var nodeKinds = []*nodeKind{
	{kind: vpcs.Kind, wire: vpcsWire{},
		v2: routeSet{segment: "vpcs/nodes", ops: opsNode | opStartReply | opReload | opNIOUpdate | opDuplicate | opConsole},
		v1: routeSet{segment: "vpcs/vms", ops: opsNode | opReload | opNIOUpdate}},
	{kind: qemu.Kind, wire: qemuWire{},
		v2: routeSet{segment: "qemu/nodes", ops: opsNode | opStartReply | opReload | opResume | opNIOUpdate | opDuplicate | opConsole},
		v1: routeSet{segment: "qemu/vms", ops: opsNode | opReload | opResume | opNIOUpdate}},
	{kind: ethswitch.Kind, wire: switchWire{},
		v2: routeSet{segment: "ethernet_switch/nodes", ops: opsNode | opNIOUpdate | opDuplicate | opConsole},
		v1: routeSet{segment: devicesSegment, param: "device_id", deviceType: "ethernet_switch", ops: opsDevice}},
	{kind: hub.Kind, wire: hubWire{},
		v2: routeSet{segment: "ethernet_hub/nodes", ops: opsNode | opNIOUpdate | opDuplicate},
		v1: routeSet{segment: devicesSegment, param: "device_id", deviceType: "ethernet_hub", ops: opsDevice}},
	{kind: cloud.Kind, wire: cloudWire{},
		v2: routeSet{segment: "cloud/nodes", ops: opsNode | opNIOUpdate}},

	// The kinds labd cannot run here (unavailable.go).
	{kind: "docker", exception: "DockerError", inventory: "/docker/images",
		v2: routeSet{segment: "docker/nodes", ops: opsNode&^opGet | opReload | opPause | opNIOUpdate | opDuplicate | opConsole},
		v1: routeSet{segment: "docker/vms", ops: opUpdate | opDelete | opStart | opSuspend | opReload | opNIO}},
	{kind: "dynamips", exception: "DynamipsError",
		v2: routeSet{segment: "dynamips/nodes", ops: opsNode | opReload | opResume | opNIOUpdate | opDuplicate | opConsole | opIdlePC},
		v1: routeSet{segment: "dynamips/vms", ops: opsNode&^opPCAP | opReload | opResume | opIdlePC | opConfigs}},
	{kind: "iou", exception: "IOUError",
		v2: routeSet{segment: "iou/nodes", ops: opsNode | opReload | opNIOUpdate | opDuplicate | opConsole},
		v1: routeSet{segment: "iou/vms", ops: opGet | opUpdate | opDelete | opStart | opReload | opNIO | opConfigs}},
	{kind: "virtualbox", exception: "VirtualBoxError", inventory: "/virtualbox/vms",
		v2: routeSet{segment: "virtualbox/nodes", ops: opsNode | opReload | opResume | opNIOUpdate | opConsole},
		v1: routeSet{segment: "virtualbox/vms", ops: opsNode&^opPCAP | opReload | opResume}},
	{kind: "vmware", exception: "VMwareError", inventory: "/vmware/vms",
		v2: routeSet{segment: "vmware/nodes", ops: opsNode | opReload | opResume | opNIOUpdate | opConsole | opVMNet},
		v1: routeSet{segment: "vmware/vms", ops: opsNode&^opPCAP | opReload | opResume | opVMNet}},
	{kind: "traceng", exception: "TraceNGError",
		v2: routeSet{segment: "traceng/nodes", ops: opsNode | opReload | opNIOUpdate | opDuplicate}},
	{kind: "frame_relay_switch", exception: "DynamipsError",
		v2: routeSet{segment: "frame_relay_switch/nodes", ops: opsNode | opDuplicate},
		v1: routeSet{segment: devicesSegment, param: "device_id", deviceType: "frame_relay_switch", ops: opsDevice}},
	{kind: "atm_switch", exception: "DynamipsError",
		v2: routeSet{segment: "atm_switch/nodes", ops: opsNode | opDuplicate},
		v1: routeSet{segment: devicesSegment, param: "device_id", deviceType: "atm_switch", ops: opsDevice}},
	{kind: "nat", exception: "NodeError",
		v2: routeSet{segment: "nat/nodes", ops: opsNode | opNIOUpdate}},
}

// A wire is one node kind's wire shapes: how the bodies of its creates and
// updates become commands, and how its nodes render, in each API version.
// Decoding is as strict as GNS3's schemas (decode.go); what only the kind
// can judge (ranges beyond the schema, duplicates, this host's devices) is
// the driver's, in actors.
type wire interface {
	// create decodes a create body into the command that creates a node in
	// project pid.
	create(v apiVersion, pid string, body []byte) (actors.CreateNode, error)
	// update decodes an update body into the command that changes node
	// ref. cur is the node as it is now when the route serves several
	// kinds (it was read to pick the wire), nil otherwise.
	update(v apiVersion, ref actors.NodeRef, cur *replay.Node, body []byte) (actors.UpdateNode, error)
	// render shows a node in version v's shape.
	render(s *Server, v apiVersion, n *replay.Node) any
}

// lookupKind returns the table's entry of a kind, nil if it has none.
func lookupKind(kind string) *nodeKind {
	for _, k := range nodeKinds {
		if k.kind == kind {
			return k
		}
	}
	return nil
}

// nodeView renders a node in the API version's shape for its kind.
func (s *Server) nodeView(n *replay.Node, v apiVersion) any {
	if k := lookupKind(n.Kind); k != nil && k.wire != nil {
		return k.wire.render(s, v, n)
	}
	// A kind recorded by a labd that ran it and this one cannot: what
	// every kind has.
	return genericNode{Name: n.Name, NodeID: n.ID, ProjectID: n.ProjectID, Status: status(n)}
}

// genericNode is a node of a kind this labd has no wire shape for.
type genericNode struct {
	Name      string `json:"name"`
	NodeID    string `json:"node_id"`
	ProjectID string `json:"project_id"`
	Status    string `json:"status"`
}

// nodeTypes are the kinds this host can run now, in the table's order:
// capabilities' node_types.
func (s *Server) nodeTypes() []string {
	out := []string{}
	for _, k := range nodeKinds {
		// A kind without a wire shape is not served here even if its
		// driver could run it.
		if k.wire != nil && s.cfg.Client.Available(k.kind) == nil {
			out = append(out, k.kind)
		}
	}
	return out
}

// routeGroup is the routes under one segment of one API version: one
// kind's, or on GNS3 1.5's dynamips/devices those of the kinds its
// device_type names.
type routeGroup struct {
	v apiVersion
	// base is the create route's template, node the node's.
	base, node string
	param      string
	ops        ops
	kinds      []*nodeKind
}

// routeGroups groups the table's route sets by segment.
func routeGroups() []*routeGroup {
	var groups []*routeGroup
	byBase := map[string]*routeGroup{}
	for _, k := range nodeKinds {
		for _, set := range []struct {
			v      apiVersion
			prefix string
			rs     routeSet
		}{{v2, "/v2/compute/projects/{project_id}/", k.v2}, {v1, "/v1/projects/{project_id}/", k.v1}} {
			if set.rs.segment == "" {
				continue
			}
			base := set.prefix + set.rs.segment
			g := byBase[base]
			if g == nil {
				param := set.rs.param
				if param == "" {
					param = "node_id"
					if set.v == v1 {
						param = "vm_id"
					}
				}
				g = &routeGroup{v: set.v, base: base, node: base + "/{" + param + "}", param: param}
				byBase[base] = g
				groups = append(groups, g)
			}
			g.ops |= set.rs.ops
			g.kinds = append(g.kinds, k)
		}
	}
	return groups
}

// routes returns the route set of kind k in the group's version.
func (g *routeGroup) routes(k *nodeKind) routeSet {
	if g.v == v1 {
		return k.v1
	}
	return k.v2
}

// kindOf returns the group's entry for a kind, nil when the group does not
// serve it.
func (g *routeGroup) kindOf(kind string) *nodeKind {
	for _, k := range g.kinds {
		if k.kind == kind {
			return k
		}
	}
	return nil
}

// runnable reports whether labd runs any of the group's kinds.
func (g *routeGroup) runnable() bool {
	for _, k := range g.kinds {
		if k.wire != nil {
			return true
		}
	}
	return false
}

// portPath is the template of a port's routes under the node's.
func (g *routeGroup) portPath() string {
	if g.ops&opDevicePorts != 0 {
		return g.node + "/ports/{port_number:\\d+}"
	}
	return g.node + "/adapters/{adapter_number:\\d+}/ports/{port_number:\\d+}"
}

// nodeRoute is one of the routes a node may have, relative to the node's
// template (or, port set, to its port's).
type nodeRoute struct {
	op     ops
	method string
	path   string
	port   bool
	// serve builds the route's handler for a group labd runs; nil for the
	// routes of kinds it does not.
	serve func(s *Server, g *routeGroup) handler
}

// nodeRoutes are every route of a node that GNS3 has, whatever its kind.
var nodeRoutes = []nodeRoute{
	{opGet, "GET", "", false, (*Server).getNode},
	{opUpdate, "PUT", "", false, (*Server).updateNode},
	{opDelete, "DELETE", "", false, func(s *Server, g *routeGroup) handler {
		return s.nodeCommand(g, func(r actors.NodeRef) actors.NodeCommand { return actors.DeleteNode{NodeRef: r} }, noContent)
	}},
	{opStart, "POST", "/start", false, (*Server).startNode},
	{opStart, "POST", "/stop", false, func(s *Server, g *routeGroup) handler {
		return s.nodeCommand(g, func(r actors.NodeRef) actors.NodeCommand { return actors.StopNode{NodeRef: r} }, noContent)
	}},
	{opSuspend, "POST", "/suspend", false, func(s *Server, g *routeGroup) handler {
		return s.nodeCommand(g, func(r actors.NodeRef) actors.NodeCommand { return actors.SuspendNode{NodeRef: r} }, noContent)
	}},
	{opReload, "POST", "/reload", false, func(s *Server, g *routeGroup) handler {
		return s.nodeCommand(g, func(r actors.NodeRef) actors.NodeCommand { return actors.ReloadNode{NodeRef: r} }, noContent)
	}},
	{opResume, "POST", "/resume", false, func(s *Server, g *routeGroup) handler {
		return s.nodeCommand(g, func(r actors.NodeRef) actors.NodeCommand { return actors.ResumeNode{NodeRef: r} }, noContent)
	}},
	{opPause, "POST", "/pause", false, nil},
	{opPause, "POST", "/unpause", false, nil},
	{opDuplicate, "POST", "/duplicate", false, (*Server).duplicateNode},
	{opNIO, "POST", "/nio", true, (*Server).addNIO},
	{opNIOUpdate, "PUT", "/nio", true, (*Server).updateNIO},
	{opNIO, "DELETE", "/nio", true, (*Server).removeNIO},
	{opNIO, "POST", "/start_capture", true, (*Server).startCapture},
	{opNIO, "POST", "/stop_capture", true, (*Server).stopCapture},
	{opPCAP, "GET", "/pcap", true, (*Server).streamCapture},
	{opConsole, "GET", "/console/ws", false, (*Server).consoleWS},
	{opConsole, "POST", "/console/reset", false, (*Server).resetConsole},
	{opIdlePC, "GET", "/idlepc_proposals", false, nil},
	{opIdlePC, "GET", "/auto_idlepc", false, nil},
	{opVMNet, "POST", "/interfaces/vmnet", false, nil},
	{opConfigs, "GET", "/configs", false, nil},
	{opConfigs, "POST", "/configs/save", false, nil},
}

// kindRoutes registers the routes of every kind of the table.
func (s *Server) kindRoutes() {
	for _, g := range routeGroups() {
		s.route("POST", g.base, s.createNode(g))
		runnable := g.runnable()
		for _, nr := range nodeRoutes {
			if g.ops&nr.op == 0 {
				continue
			}
			path := g.node + nr.path
			if nr.port {
				path = g.portPath() + nr.path
			}
			h := s.noSuchNode(g)
			if runnable {
				if nr.serve == nil {
					panic("api: no handler for " + nr.method + " " + path + " of a kind labd runs")
				}
				h = nr.serve(s, g)
			}
			s.route(nr.method, path, s.ofKind(g, h))
		}
	}
	for _, k := range nodeKinds {
		if k.inventory != "" {
			s.route("GET", "/v1"+k.inventory, s.inventory(k, v1))
			s.route("GET", "/v2/compute"+k.inventory, s.inventory(k, v2))
		}
	}
}

// ofKind serves h only for nodes of the group's kinds, as GNS3 does (each
// kind has its own manager): a route of one kind that names a node of
// another answers that the node does not exist. Malformed ids and unknown
// nodes are left to h.
func (s *Server) ofKind(g *routeGroup, h handler) handler {
	return func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
		if ref, err := nodeRefParam(ps, g.param); err == nil {
			if n, err := s.cfg.Client.Node(ref.ProjectID, ref.NodeID); err == nil && g.kindOf(n.Kind) == nil {
				return actors.NotFound("Node ID %s doesn't exist", ref.NodeID)
			}
		}
		return h(w, r, ps)
	}
}
