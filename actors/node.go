package actors

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"

	"labd/actors/console"
	"labd/actors/kind"
	"labd/events"
	"labd/nio/pcap"
	"labd/replay"
)

// NodeRef names a node: the project it belongs to and its id.
type NodeRef struct {
	ProjectID string
	NodeID    string
}

func (r NodeRef) projectID() string { return r.ProjectID }
func (r NodeRef) nodeID() string    { return r.NodeID }

// NodeCommand is a command for a node aggregate (sealed: the commands of
// this package). The registry routes it to the project actor, which
// forwards it to the node's actor.
type NodeCommand interface {
	command
	nodeID() string
}

// Console types.
const (
	ConsoleTelnet = "telnet"
	ConsoleVNC    = "vnc"
	ConsoleNone   = "none"
)

// CreateNode creates a node of a kind (GNS3's node type). Console, when
// set, is the wanted console port: if it is taken another is chosen, as
// GNS3 does. An empty ConsoleType is the kind's default.
type CreateNode struct {
	NodeRef
	Kind        string
	Name        string
	Console     *int
	ConsoleType string
	// Props is the kind's own part, of the type its driver takes
	// (*vpcs.Patch, *qemu.Patch...); nil: the kind's defaults.
	Props any
	// SecureConsole gives a VNC console a password of its own (see
	// Client.Console); GNS3's nodes have none.
	SecureConsole bool
	// Metadata are the creator's key-value pairs, kept with the node.
	Metadata map[string]string

	macID int // chosen by the project actor
}

// UpdateNode changes a node. Nil fields are left as they are.
type UpdateNode struct {
	NodeRef
	Name        *string
	Console     *int
	ConsoleType *string
	// Props changes the kind's own part (see CreateNode).
	Props any
}

// DeleteNode stops a node and deletes it with its directory.
type DeleteNode struct{ NodeRef }

// StartNode starts a node; starting a running node does nothing.
type StartNode struct{ NodeRef }

// StopNode stops a node; stopping a stopped node does nothing.
type StopNode struct{ NodeRef }

// ReloadNode stops and starts a node.
type ReloadNode struct{ NodeRef }

// SuspendNode pauses a running node (a no-op for a kind that cannot be
// paused, as in GNS3).
type SuspendNode struct{ NodeRef }

// ResumeNode resumes a suspended node.
type ResumeNode struct{ NodeRef }

// DuplicateNode copies a node's files into another node of the project,
// which must exist already (GNS3 2.2).
type DuplicateNode struct {
	NodeRef
	Destination string
}

// AddNIO attaches a link end to a node port (or replaces the one there).
type AddNIO struct {
	NodeRef
	Adapter, Port int
	NIO           events.NIO
}

// UpdateNIO replaces the NIO of a linked port: new filters, suspend.
type UpdateNIO struct {
	NodeRef
	Adapter, Port int
	NIO           events.NIO
}

// RemoveNIO detaches the NIO of a port.
type RemoveNIO struct {
	NodeRef
	Adapter, Port int
}

// StartCapture starts capturing a linked port to a file of the project's
// captures directory.
type StartCapture struct {
	NodeRef
	Adapter, Port int
	File          string
	LinkType      string
}

// StopCapture stops the capture of a port.
type StopCapture struct {
	NodeRef
	Adapter, Port int
}

// ResetConsole reconnects a running node's console proxy to its process.
type ResetConsole struct{ NodeRef }

// settleNode waits until a node has settled the process its history
// records (see Client.settleRecordedNodes).
type settleNode struct{ NodeRef }

// closeNode closes a node because its project closes.
type closeNode struct{ NodeRef }

// copyInto is DuplicateNode as the destination's actor receives it.
type copyInto struct {
	NodeRef
	from string // the source node's directory
}

// CreateNode creates a node and returns it.
func (c *Client) CreateNode(ctx context.Context, cmd CreateNode) (*replay.Node, error) {
	return call[*replay.Node](ctx, c, cmd)
}

// NodeDo runs a node command and returns the node as it is afterwards.
// It serves every node command but the capture ones.
func (c *Client) NodeDo(ctx context.Context, cmd NodeCommand) (*replay.Node, error) {
	return call[*replay.Node](ctx, c, cmd)
}

// StartCapture starts a capture and returns the capture file's path.
func (c *Client) StartCapture(ctx context.Context, cmd StartCapture) (string, error) {
	return call[string](ctx, c, cmd)
}

// nodeEntry is what readers can see of a served node without asking its
// actor.
type nodeEntry struct {
	pid  *actor.PID
	snap atomic.Pointer[replay.Node]
	live atomic.Pointer[nodeLive]
}

// nodeLive holds the handles of a running node that readers stream from.
type nodeLive struct {
	console  *console.Proxy
	captures map[[2]int]*pcap.Capture
}

// nodeTable is a project's served nodes. The project actor is its only
// writer.
type nodeTable struct {
	mu sync.RWMutex
	m  map[string]*nodeEntry
}

func (t *nodeTable) get(id string) *nodeEntry {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.m[id]
}

func (t *nodeTable) put(id string, e *nodeEntry) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[string]*nodeEntry{}
	}
	t.m[id] = e
}

func (t *nodeTable) remove(id string, pid *actor.PID) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.m[id]; ok && e.pid.Equal(pid) {
		delete(t.m, id)
		return true
	}
	return false
}

func (t *nodeTable) all() []*nodeEntry {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make([]*nodeEntry, 0, len(t.m))
	for _, e := range t.m {
		out = append(out, e)
	}
	return out
}

func (c *Client) nodeEntry(projectID, nodeID string) (*nodeEntry, error) {
	e := c.dir.get(projectID)
	if e == nil || !e.snap.Load().IsOpen() {
		return nil, NotFound("Project ID %s doesn't exist", projectID)
	}
	if ne := e.nodes.get(nodeID); ne != nil && ne.snap.Load().Exists() {
		return ne, nil
	}
	return nil, NotFound("Node ID %s doesn't exist", nodeID)
}

// Node returns the snapshot of a node of an open project.
func (c *Client) Node(projectID, nodeID string) (*replay.Node, error) {
	ne, err := c.nodeEntry(projectID, nodeID)
	if err != nil {
		return nil, err
	}
	return ne.snap.Load(), nil
}

// Nodes returns the nodes of an open project, by id.
func (c *Client) Nodes(projectID string) ([]*replay.Node, error) {
	e := c.dir.get(projectID)
	if e == nil || !e.snap.Load().IsOpen() {
		return nil, NotFound("Project ID %s doesn't exist", projectID)
	}
	var out []*replay.Node
	for _, ne := range e.nodes.all() {
		if n := ne.snap.Load(); n.Exists() {
			out = append(out, n)
		}
	}
	slices.SortFunc(out, func(a, b *replay.Node) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// NodeDir returns the working directory of a node.
func (c *Client) NodeDir(n *replay.Node) string { return nodeDir(c.cfg, n.ProjectID, n.Kind, n.ID) }

func nodeDir(cfg *Config, projectID, kind, nodeID string) string {
	return filepath.Join(cfg.ProjectsDir, projectID, "project-files", kind, nodeID)
}

func projectDir(cfg *Config, projectID string) string {
	return filepath.Join(cfg.ProjectsDir, projectID)
}

// CapturesDir returns the directory a project's captures are written to.
func (c *Client) CapturesDir(projectID string) string { return capturesDir(c.cfg, projectID) }

func capturesDir(cfg *Config, projectID string) string {
	return filepath.Join(cfg.ProjectsDir, projectID, "project-files", "captures")
}

// NodeConsole returns the console proxy of a running node.
func (c *Client) NodeConsole(projectID, nodeID string) (*console.Proxy, error) {
	ne, err := c.nodeEntry(projectID, nodeID)
	if err != nil {
		return nil, err
	}
	if l := ne.live.Load(); l != nil && l.console != nil {
		return l.console, nil
	}
	n := ne.snap.Load()
	if !n.Running() {
		return nil, Conflict("Node %s is not started", n.Name)
	}
	return nil, Conflict("Node %s has no console", n.Name)
}

// NodeCapture returns the running capture of a node port.
func (c *Client) NodeCapture(projectID, nodeID string, adapter, port int) (*pcap.Capture, error) {
	ne, err := c.nodeEntry(projectID, nodeID)
	if err != nil {
		return nil, err
	}
	if l := ne.live.Load(); l != nil {
		if cp := l.captures[[2]int{adapter, port}]; cp != nil {
			return cp, nil
		}
	}
	return nil, Conflict("No capture is running on adapter %d port %d", adapter, port)
}

// nodeActor owns one node aggregate and the node's processes, bridges,
// console and captures. Its mailbox serialises every request to the node.
type nodeActor struct {
	cfg     *Config
	ref     NodeRef
	subject string
	entry   *nodeEntry
	log     *slog.Logger

	state *replay.Node // nil: no history
	stale bool
	// passivating: the node no longer exists and the project actor has
	// been told; requests are bounced back to it.
	passivating bool

	self *actor.PID
	sys  *actor.ActorSystem
	drv  kind.Driver
	rt   runtime
}

func newNodeActor(cfg *Config, ref NodeRef, e *nodeEntry, restarted bool) *nodeActor {
	return &nodeActor{
		cfg:     cfg,
		drv:     cfg.driver(kindOf(e.snap.Load())),
		ref:     ref,
		subject: events.NodeSubject(cfg.ComputeID, ref.ProjectID, ref.NodeID),
		entry:   e,
		log:     cfg.Logger.With("project_id", ref.ProjectID, "node_id", ref.NodeID),
		state:   e.snap.Load(),
		stale:   restarted,
	}
}

// nodeGone tells the project actor a node no longer exists (or never came
// to exist): it stops the actor after the messages already sent to it.
type nodeGone struct {
	id    string
	pid   *actor.PID
	state *replay.Node
}

// reconcile asks a node actor to bring a recorded process in line with
// reality (sent once when the actor starts on a history).
type reconcile struct{}

func (a *nodeActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		a.self, a.sys = ctx.Self(), ctx.ActorSystem()
		switch {
		case a.state.Running():
			ctx.Send(ctx.Self(), reconcile{})
		case a.state.Exists():
			// A process that labd started but could not record before it
			// died runs unowned in the node directory: end it, or a start
			// would run the node twice.
			if n := kind.KillStragglers(a.dir()); n > 0 {
				a.log.Warn("killed processes of an unrecorded start", "count", n)
			}
		}
		if a.state.Exists() {
			a.resumeCaptures()
		}
		if a.state.InFlight() != nil {
			ctx.Send(ctx.Self(), resumeOp{})
		}
	case reconcile:
		a.reconcileRecorded()
	case resumeOp:
		a.resumeOperation()
	case offDeadline:
		a.offEnded(m.id, true)
	case offRetry:
		a.retryPowerOff(m.id)
	case *request:
		if a.passivating {
			ctx.Send(ctx.Parent(), m)
			return
		}
		a.serve(m)
		if !a.state.Exists() {
			a.passivating = true
			ctx.Send(ctx.Parent(), &nodeGone{id: a.ref.NodeID, pid: ctx.Self(), state: a.state})
		}
	case runEnded:
		a.exited(m.run)
	case runNotice:
		a.notice(m)
	case *actor.Stopping:
		// labd stops (or the project actor went away): stop the node as
		// GNS3 does, and say so in the history; or, with KeepNodes, leave
		// it running. A node that runs inside labd goes with it, and the
		// history rightly says it runs: the next labd rebuilds it.
		switch run := a.rt.run; {
		case run != nil && (a.cfg.KeepNodes || run.Process() == nil):
			// The process keeps running for the next labd to adopt;
			// the history rightly says it runs, and an operation in
			// flight goes on in the next labd.
			a.cancelPending()
			a.release()
		case run != nil:
			a.cancelPending()
			a.teardown(kind.StopClosing)
			if err := a.commit(events.NodeStopped{Reason: events.StopShutdown}); err != nil {
				a.log.Error("could not record the node's stop", "err", err)
			}
			a.interrupted()
		}
		a.closeCaptures()
	}
}

func (a *nodeActor) serve(req *request) {
	defer req.recoverAndRespond(a.log)
	if !admit(req, a.stale, a.refold) {
		return
	}
	if a.state.Running() && a.rt.run == nil {
		// The history says a process runs that this actor does not own
		// (a restart, a stop that could not be recorded): settle it first.
		a.reconcileRecorded()
	}
	if c, creating := req.cmd.(CreateNode); creating {
		d := a.cfg.driver(c.Kind)
		if d == nil {
			req.respond(nil, NotFound("labd has no node type %q", c.Kind))
			return
		}
		if !a.state.Exists() { // else create refuses it, and the kind stays
			a.drv = d
		}
	} else if !a.state.Exists() {
		req.respond(nil, a.notFound())
		return
	} else if a.drv == nil {
		// A kind a newer labd recorded: the node is known, not run.
		req.respond(nil, Conflict("Node %s is of type %s, which this labd does not know", a.state.Name, a.state.Kind))
		return
	}
	switch c := req.cmd.(type) {
	case CreateNode:
		req.respond(a.create(c))
	case UpdateNode:
		req.respond(a.update(c))
	case Operate:
		a.operate(req, c)
	case ProbeNode:
		req.respond(a.probe(), nil)
	case DeleteNode:
		out, err := a.deleteOp(Operate{NodeRef: c.NodeRef, Op: OpDelete}, a.state.InFlight())
		req.respond(out.Node, err)
	case closeNode:
		var before []events.Data
		if cur := a.state.InFlight(); cur != nil {
			a.cancelPending()
			before = append(before, endRevoked(cur.ID, "the project was closed"))
		}
		req.respond(a.state, a.remove(events.NodeClosed{}, before...))
		a.answerWaiters()
	case StartNode:
		req.respond(a.lenient(OpStart, a.start))
	case StopNode:
		req.respond(a.lenient(OpStop, a.stop))
	case ReloadNode:
		req.respond(a.lenient(OpReload, a.reload))
	case SuspendNode:
		req.respond(a.lenient(OpPause, a.suspend))
	case ResumeNode:
		req.respond(a.lenient(OpUnpause, a.resume))
	case copyInto:
		req.respond(a.copyFrom(c.from))
	case AddNIO:
		req.respond(a.addNIO(c.Adapter, c.Port, c.NIO))
	case UpdateNIO:
		req.respond(a.updateNIO(c.Adapter, c.Port, c.NIO))
	case RemoveNIO:
		req.respond(a.removeNIO(c.Adapter, c.Port))
	case StartCapture:
		req.respond(a.startCapture(c))
	case StopCapture:
		req.respond(a.stopCapture(c.Adapter, c.Port))
	case ResetConsole:
		req.respond(a.resetConsole())
	case settleNode:
		req.respond(a.state, nil) // serve's preamble settled it
	default:
		req.respond(nil, fmt.Errorf("actors: node actor cannot handle %T", c))
	}
}

func (a *nodeActor) notFound() error { return NotFound("Node ID %s doesn't exist", a.ref.NodeID) }

func (a *nodeActor) dir() string {
	return nodeDir(a.cfg, a.ref.ProjectID, a.state.Kind, a.ref.NodeID)
}

// commit appends the events of one command to the node's subject, folds
// them and publishes the snapshot; see appendFold.
func (a *nodeActor) commit(ds ...events.Data) error {
	var version uint64
	if a.state != nil {
		version = a.state.Version
	}
	next, stale, err := appendFold(a.cfg, a.subject, a.ref.ProjectID, a.ref.NodeID, "node "+a.ref.NodeID,
		a.state, version, replay.ApplyNode, ds)
	a.stale = a.stale || stale
	if err != nil {
		return err
	}
	a.state = next
	a.entry.snap.Store(next)
	return nil
}

// refold rebuilds the node's state from the store.
func (a *nodeActor) refold() error {
	st, err := loadFold(a.cfg, a.subject, replay.ApplyNode)
	if err != nil {
		return err
	}
	if a.state.Exists() && (!st.Exists() || st.Console != a.state.Console) && a.state.Console != 0 {
		a.cfg.ConsolePorts.Release(a.state.Console)
	}
	if st.Exists() && st.Console != 0 && (!a.state.Exists() || st.Console != a.state.Console) {
		_ = a.cfg.ConsolePorts.Reserve(st.Console)
	}
	a.state, a.stale = st, false
	a.entry.snap.Store(st)
	if st.Exists() {
		a.drv = a.cfg.driver(st.Kind)
	}
	return nil
}
