package actors

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"

	"labd/events"
	"labd/replay"
)

// CreateMode says what creating an already open project means.
type CreateMode int

const (
	// CreateOnce refuses to create an open project again (GNS3 v1: 409).
	CreateOnce CreateMode = iota
	// CreateOrGet returns the open project as it is (GNS3 v2: idempotent).
	CreateOrGet
)

// CreateProject opens a project: a new one, or one closed before.
type CreateProject struct {
	ProjectID string
	Name      string
	Temporary bool
	Variables []events.Variable
	Mode      CreateMode
}

// UpdateProject changes an open project. Nil fields are left as they are.
type UpdateProject struct {
	ProjectID string
	Name      *string
	Temporary *bool
	// Variables, when set, replaces the variables (*Variables may be nil:
	// no variables, reported as null).
	Variables *[]events.Variable
	// Path, when set, must be the project's directory: labd does not move
	// projects.
	Path *string
}

// CloseProject closes an open project: its ports are released and its tmp
// directory removed; a temporary project's directory is removed entirely.
type CloseProject struct{ ProjectID string }

// DeleteProject closes an open project and removes its directory.
type DeleteProject struct{ ProjectID string }

// AllocateUDPPort reserves a UDP port for a project.
type AllocateUDPPort struct{ ProjectID string }

func (c CreateProject) projectID() string   { return c.ProjectID }
func (c UpdateProject) projectID() string   { return c.ProjectID }
func (c CloseProject) projectID() string    { return c.ProjectID }
func (c DeleteProject) projectID() string   { return c.ProjectID }
func (c AllocateUDPPort) projectID() string { return c.ProjectID }

// CreateProject opens a project. created is false when CreateOrGet found it
// already open.
func (c *Client) CreateProject(ctx context.Context, cmd CreateProject) (p *replay.Project, created bool, err error) {
	r, err := call[createResult](ctx, c, cmd)
	return r.project, r.created, err
}

type createResult struct {
	project *replay.Project
	created bool
}

// UpdateProject changes an open project and returns it.
func (c *Client) UpdateProject(ctx context.Context, cmd UpdateProject) (*replay.Project, error) {
	return call[*replay.Project](ctx, c, cmd)
}

// CloseProject closes an open project.
func (c *Client) CloseProject(ctx context.Context, id string) error {
	_, err := call[struct{}](ctx, c, CloseProject{ProjectID: id})
	return err
}

// DeleteProject deletes an open project and its directory.
func (c *Client) DeleteProject(ctx context.Context, id string) error {
	_, err := call[struct{}](ctx, c, DeleteProject{ProjectID: id})
	return err
}

// AllocateUDPPort reserves a UDP port for project id and returns it.
func (c *Client) AllocateUDPPort(ctx context.Context, id string) (int, error) {
	return call[int](ctx, c, AllocateUDPPort{ProjectID: id})
}

// projectActor owns one project aggregate.
type projectActor struct {
	cfg     *Config
	id      string
	subject string
	dir     string
	entry   *entry
	log     *slog.Logger

	state *replay.Project // nil: no history
	// stale means the store may hold events state does not reflect (an
	// append whose outcome is unknown, a restart); the aggregate is
	// re-folded before the next command.
	stale bool
	// limbo holds ports reserved for appends whose outcome is unknown.
	limbo []int
	// passivating: the project is no longer open and the registry has been
	// told; requests are bounced back to it.
	passivating bool

	// initialNodes are the nodes to spawn actors for when the actor starts;
	// nodeTombs are node aggregates with history and no actor (deleted or
	// closed), kept for the version their next creation expects.
	initialNodes []*replay.Node
	nodeTombs    map[string]*replay.Node
	sys          *actor.ActorSystem
}

func newProjectActor(cfg *Config, id string, e *entry, nodes []*replay.Node, restarted bool) *projectActor {
	a := &projectActor{
		cfg:       cfg,
		id:        id,
		subject:   events.ProjectSubject(cfg.ComputeID, id),
		dir:       filepath.Join(cfg.ProjectsDir, id),
		entry:     e,
		log:       cfg.Logger.With("project_id", id),
		state:     e.snap.Load(),
		stale:     restarted,
		nodeTombs: map[string]*replay.Node{},
	}
	if restarted {
		// The previous incarnation's node actors stopped with it: start
		// them again from their snapshots.
		for _, ne := range e.nodes.all() {
			nodes = append(nodes, ne.snap.Load())
		}
	}
	a.initialNodes = nodes
	return a
}

func (a *projectActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		a.sys = ctx.ActorSystem()
		for _, n := range a.initialNodes {
			if n.Exists() {
				a.spawnNode(ctx, n.ID, n)
			} else {
				a.nodeTombs[n.ID] = n
			}
		}
		a.initialNodes = nil
	case *request:
		if a.passivating {
			ctx.Send(ctx.Parent(), m)
			return
		}
		if _, ok := m.cmd.(NodeCommand); ok {
			a.routeNode(ctx, m)
			return
		}
		a.serve(m)
		// A stale actor stays: only a re-fold can tell whether its
		// project is open (a creation whose outcome was unknown may
		// have landed).
		if !a.state.IsOpen() && !a.stale {
			a.passivating = true
			ctx.Send(ctx.Parent(), &passivate{id: a.id, pid: ctx.Self(), state: a.state, nodes: maps.Clone(a.nodeTombs)})
		}
	case *nodeGone:
		if a.entry.nodes.remove(m.id, m.pid) {
			if m.state != nil {
				a.nodeTombs[m.id] = m.state
			}
			ctx.Poison(m.pid)
		}
	}
}

// routeNode forwards a node command to the node's actor, spawning it for a
// creation.
func (a *projectActor) routeNode(ctx actor.Context, req *request) {
	if !a.state.IsOpen() {
		req.respond(nil, a.notFound())
		return
	}
	cmd := req.cmd.(NodeCommand)
	id := cmd.nodeID()
	switch c := cmd.(type) {
	case CreateNode:
		if e := a.entry.nodes.get(id); e != nil {
			ctx.Send(e.pid, req)
			return
		}
		c.macID = a.freeMACID()
		req.cmd = c
		tomb := a.nodeTombs[id]
		delete(a.nodeTombs, id)
		ctx.Send(a.spawnNode(ctx, id, tomb), req)
		return
	case DuplicateNode:
		src, dst := a.entry.nodes.get(id), a.entry.nodes.get(c.Destination)
		switch {
		case src == nil || !src.snap.Load().Exists():
			req.respond(nil, NotFound("Node ID %s doesn't exist", id))
		case dst == nil || !dst.snap.Load().Exists() || dst.snap.Load().Kind != src.snap.Load().Kind:
			// A node of another kind is unknown to this kind's routes, as
			// to GNS3's per-kind managers.
			req.respond(nil, NotFound("Node ID %s doesn't exist", c.Destination))
		default:
			s := src.snap.Load()
			req.cmd = copyInto{NodeRef: NodeRef{ProjectID: a.id, NodeID: c.Destination}, from: nodeDir(a.cfg, a.id, s.Kind, s.ID)}
			ctx.Send(dst.pid, req)
		}
		return
	}
	if e := a.entry.nodes.get(id); e != nil {
		ctx.Send(e.pid, req)
		return
	}
	req.respond(nil, NotFound("Node ID %s doesn't exist", id))
}

// freeMACID returns the lowest MAC offset no node of the project uses
// (kind.Info.MACOffset: VPCS).
func (a *projectActor) freeMACID() int {
	used := map[int]bool{}
	for _, e := range a.entry.nodes.all() {
		if n := e.snap.Load(); n.Exists() && a.cfg.takesMACOffset(n.Kind) {
			used[n.MACID] = true
		}
	}
	id := 0
	for used[id] {
		id++
	}
	return id
}

// spawnNode starts the actor of node id from state n (nil: no history).
func (a *projectActor) spawnNode(ctx actor.Context, id string, n *replay.Node) *actor.PID {
	e := &nodeEntry{}
	e.snap.Store(n)
	var incarnations atomic.Int32
	ref := NodeRef{ProjectID: a.id, NodeID: id}
	props := actor.PropsFromProducer(func() actor.Actor {
		return newNodeActor(a.cfg, ref, e, incarnations.Add(1) > 1)
	})
	e.pid = ctx.SpawnPrefix(props, "node-"+id+"-")
	a.entry.nodes.put(id, e)
	return e.pid
}

// closeNodes closes every node of the project, one after the other: each
// stops its process and records node.closed.
func (a *projectActor) closeNodes() error {
	for _, e := range a.entry.nodes.all() {
		n := e.snap.Load()
		if !n.Exists() {
			continue
		}
		req := &request{ctx: context.Background(), cmd: closeNode{NodeRef{ProjectID: a.id, NodeID: n.ID}}, reply: make(chan result, 1)}
		a.sys.Root.Send(e.pid, req)
		r := <-req.reply
		if r.err != nil {
			return fmt.Errorf("close node %s: %w", n.ID, r.err)
		}
		// The actor stops with the project's; its nodeGone comes too late
		// to matter.
		a.entry.nodes.remove(n.ID, e.pid)
		if closed, _ := r.val.(*replay.Node); closed != nil {
			a.nodeTombs[n.ID] = closed
		}
	}
	return nil
}

func (a *projectActor) serve(req *request) {
	defer req.recoverAndRespond(a.log)
	if !admit(req, a.stale, a.refold) {
		return
	}
	switch c := req.cmd.(type) {
	case CreateProject:
		req.respond(a.create(c))
	case UpdateProject:
		req.respond(a.update(c))
	case CloseProject:
		req.respond(struct{}{}, a.close(false))
	case DeleteProject:
		req.respond(struct{}{}, a.close(true))
	case AllocateUDPPort:
		req.respond(a.allocateUDPPort())
	case writeFile:
		req.respond(struct{}{}, a.writeFile(c))
	default:
		req.respond(nil, fmt.Errorf("actors: project actor cannot handle %T", c))
	}
}

func (a *projectActor) notFound() error { return NotFound("Project ID %s doesn't exist", a.id) }

func (a *projectActor) create(c CreateProject) (createResult, error) {
	if err := checkName("project", c.Name); err != nil {
		return createResult{}, err
	}
	if a.state.IsOpen() {
		if c.Mode == CreateOrGet {
			return createResult{project: a.state}, nil
		}
		return createResult{}, AlreadyExists("Project ID %s is already in use on this server", a.id)
	}
	if err := a.commit(events.ProjectCreated{Name: c.Name, Temporary: c.Temporary, Variables: c.Variables}); err != nil {
		return createResult{}, err
	}
	// GNS3 wipes a project's tmp directory whenever it is opened.
	err := os.MkdirAll(a.dir, 0o755)
	if err == nil {
		err = os.RemoveAll(filepath.Join(a.dir, tmpDir))
	}
	if err != nil {
		return createResult{}, a.effectFailed("create the project directory", err)
	}
	return createResult{project: a.state, created: true}, nil
}

func (a *projectActor) update(c UpdateProject) (*replay.Project, error) {
	if !a.state.IsOpen() {
		return nil, a.notFound()
	}
	if c.Path != nil && filepath.Clean(*c.Path) != a.dir {
		return nil, Forbidden("You are not allowed to modify the project directory location")
	}
	if c.Name != nil {
		if err := checkName("project", *c.Name); err != nil {
			return nil, err
		}
	}
	next := events.ProjectUpdated{Name: a.state.Name, Temporary: a.state.Temporary, Variables: a.state.Variables}
	if c.Name != nil {
		next.Name = *c.Name
	}
	if c.Temporary != nil {
		next.Temporary = *c.Temporary
	}
	if c.Variables != nil {
		next.Variables = *c.Variables
	}
	if next.Name == a.state.Name && next.Temporary == a.state.Temporary && sameVariables(next.Variables, a.state.Variables) {
		return a.state, nil // nothing changes: nothing to record
	}
	if err := a.commit(next); err != nil {
		return nil, err
	}
	return a.state, nil
}

// sameVariables compares two variable lists, telling none (null) from an
// empty list and an absent value from an empty one, as GNS3 does.
func sameVariables(a, b []events.Variable) bool {
	return (a == nil) == (b == nil) && slices.EqualFunc(a, b, func(x, y events.Variable) bool {
		return x.Name == y.Name && (x.Value == nil) == (y.Value == nil) && (x.Value == nil || *x.Value == *y.Value)
	})
}

// close closes (or deletes) the project.
func (a *projectActor) close(deleting bool) error {
	if !a.state.IsOpen() {
		return a.notFound()
	}
	if err := a.closeNodes(); err != nil {
		return err
	}
	held := a.state.UDPPorts
	temporary := a.state.Temporary
	var d events.Data = events.ProjectClosed{}
	if deleting {
		d = events.ProjectDeleted{}
	}
	if err := a.commit(d); err != nil {
		return err
	}
	for _, p := range held {
		a.cfg.UDPPorts.Release(p)
	}
	target, effect := filepath.Join(a.dir, tmpDir), "remove the project's tmp directory"
	if deleting || temporary {
		target, effect = a.dir, "remove the project directory"
	}
	if err := os.RemoveAll(target); err != nil {
		return a.effectFailed(effect, err)
	}
	return nil
}

func (a *projectActor) allocateUDPPort() (int, error) {
	if !a.state.IsOpen() {
		return 0, a.notFound()
	}
	port, err := a.cfg.UDPPorts.Allocate()
	if err != nil {
		return 0, &Error{Class: ErrConflict, Msg: err.Error(), Err: err}
	}
	if err := a.commit(events.UDPPortAllocated{Port: port}); err != nil {
		if a.stale {
			a.limbo = append(a.limbo, port) // it may have landed: decided at refold
		} else {
			a.cfg.UDPPorts.Release(port)
		}
		return 0, err
	}
	return port, nil
}

// commit appends the events of one command with the aggregate's expected
// version, folds them into the state and publishes the new snapshot. When
// it fails, state is unchanged; when the store cannot say whether the
// events landed, the actor is marked stale.
func (a *projectActor) commit(ds ...events.Data) error {
	var version uint64
	if a.state != nil {
		version = a.state.Version
	}
	next, stale, err := appendFold(a.cfg, a.subject, a.id, "", "project "+a.id, a.state, version, replay.ApplyProject, ds)
	a.stale = a.stale || stale
	if err != nil {
		return err
	}
	a.state = next
	a.entry.snap.Store(next)
	return nil
}

// effectFailed records that an effect of an appended event failed, and
// returns the error for the client.
func (a *projectActor) effectFailed(effect string, cause error) error {
	a.log.Error("effect failed", "effect", effect, "err", cause)
	if err := a.commit(events.EffectFailed{Effect: effect, Error: cause.Error()}); err != nil {
		a.log.Error("could not record a failed effect", "effect", effect, "err", err)
	}
	return fmt.Errorf("actors: project %s: could not %s: %w", a.id, effect, cause)
}

// refold rebuilds the state from the store and brings the port pool in
// line with it.
func (a *projectActor) refold() error {
	st, err := loadFold(a.cfg, a.subject, replay.ApplyProject)
	if err != nil {
		return err
	}
	var reserved []int
	if a.state != nil {
		reserved = append(reserved, a.state.UDPPorts...)
	}
	reserved = append(reserved, a.limbo...)
	for _, p := range reserved {
		if !st.IsOpen() || !st.HoldsUDPPort(p) {
			a.cfg.UDPPorts.Release(p)
		}
	}
	if st.IsOpen() {
		for _, p := range st.UDPPorts {
			if !slices.Contains(reserved, p) {
				if err := a.cfg.UDPPorts.Reserve(p); err != nil {
					a.log.Error("port held in the history is held elsewhere too", "port", p, "err", err)
				}
			}
		}
	}
	a.state, a.limbo, a.stale = st, nil, false
	a.entry.snap.Store(st)
	return nil
}
