package actors

import (
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"

	"labd/replay"
)

// registry is the root actor: it routes commands to project actors, spawns
// one when a project is created, and passivates it when the project is
// closed or deleted.
type registry struct {
	cfg     *Config
	dir     *directory
	initial *replay.State // consumed by the first Started
	// tombstones are aggregates with history but no actor: closed or
	// deleted projects, kept for the version their next creation expects.
	tombstones map[string]tomb
	ready      chan struct{} // closed once the initial state is spawned
	stopped    chan struct{}
}

// passivate tells the registry a project actor's aggregate is no longer
// open. The actor bounces every later request back to the registry, which
// stops it once this message is handled: requests already on their way to
// it are answered by the registry instead of being dropped.
type passivate struct {
	id    string
	pid   *actor.PID
	state *replay.Project
	nodes map[string]*replay.Node
}

// tomb is a project aggregate with history and no actor, with its nodes.
type tomb struct {
	project *replay.Project
	nodes   []*replay.Node
}

func (r *registry) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		if st := r.initial; st != nil {
			r.initial = nil
			nodes := st.NodesByProject()
			for id, p := range st.Projects {
				if p.IsOpen() {
					r.spawn(ctx, id, p, nodes[id])
				} else {
					r.tombstones[id] = tomb{p, nodes[id]}
				}
			}
			close(r.ready)
		}
	case *request:
		r.route(ctx, m)
	case *passivate:
		if r.dir.remove(m.id, m.pid) {
			if m.state != nil {
				t := tomb{project: m.state}
				for _, n := range m.nodes {
					t.nodes = append(t.nodes, n)
				}
				r.tombstones[m.id] = t
			}
			ctx.Poison(m.pid)
		}
	case *actor.Stopped:
		close(r.stopped)
	}
}

func (r *registry) route(ctx actor.Context, req *request) {
	id := req.cmd.projectID()
	if e := r.dir.get(id); e != nil {
		ctx.Send(e.pid, req)
		return
	}
	if _, ok := req.cmd.(CreateProject); ok {
		t := r.tombstones[id]
		delete(r.tombstones, id)
		ctx.Send(r.spawn(ctx, id, t.project, t.nodes), req)
		return
	}
	req.respond(nil, NotFound("Project ID %s doesn't exist", id))
}

// spawn starts the actor of project id from state p (nil: no history).
func (r *registry) spawn(ctx actor.Context, id string, p *replay.Project, nodes []*replay.Node) *actor.PID {
	e := &entry{}
	e.snap.Store(p)
	var incarnations atomic.Int32
	props := actor.PropsFromProducer(func() actor.Actor {
		// A restarted actor is a new struct: it starts stale and re-folds
		// its aggregate from the store before its next command.
		return newProjectActor(r.cfg, id, e, nodes, incarnations.Add(1) > 1)
	})
	// Names are unique because an id has at most one entry at a time and a
	// passivated actor's name is freed when it stops; SpawnPrefix keeps
	// them unique even if a stop is still in flight.
	e.pid = ctx.SpawnPrefix(props, "project-"+id+"-")
	r.dir.put(id, e)
	return e.pid
}
