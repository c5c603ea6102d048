package actors

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"labd/actors/kind"
	"labd/actors/qemu"
	"labd/events"
	"labd/nio"
	"labd/replay"
)

// Config holds the dependencies of the actor tree. It is built once, in
// cmd, and shared read-only by every actor.
type Config struct {
	// ComputeID names this compute in event subjects.
	ComputeID string
	// Store is the event store.
	Store events.Store
	// ProjectsDir holds one directory per project, named by its id.
	ProjectsDir string
	// UDPPorts is the pool of UDP tunnel ports.
	UDPPorts *nio.Pool
	// ConsolePorts is the pool of node console ports (TCP).
	ConsolePorts *nio.Pool
	// Host is the address node consoles and link (NIO) ports are bound
	// to; empty means 127.0.0.1.
	Host string
	// VPCSPath is the VPCS program, a name looked up in PATH or a path;
	// empty means "vpcs".
	VPCSPath string
	// VNCPorts is the part of the console range VNC consoles take their
	// ports from (QEMU serves display port-5900); zero means 5900-10000,
	// GNS3's vnc_console_port_range.
	VNCPorts nio.PortRange
	// Images is the image store QEMU nodes' image properties are
	// resolved in.
	Images qemu.Images
	// QEMU finds the QEMU binaries a node may run.
	QEMU qemu.Finder
	// QEMUOptions decides which extra options a QEMU node may have; the
	// zero value is labd's allowlist.
	QEMUOptions qemu.OptionPolicy
	// QEMUShutdownTimeout bounds how long a stop with on_close
	// shutdown_signal waits for the guest to power off before QEMU is
	// told to quit; zero means 120 s, as GNS3.
	QEMUShutdownTimeout time.Duration
	// GracefulTimeout is how long a graceful stop of the lifecycle
	// operations waits for the guest when the request does not say;
	// zero means DefaultGracefulTimeout (Nova's 60 s).
	GracefulTimeout time.Duration
	// CloudInterfaces are the host interfaces (names or path.Match
	// patterns) cloud nodes may use; none by default: a cloud's TAP
	// devices that labd creates need no entry.
	CloudInterfaces []string
	// NodeUser is the account node processes run as; nil runs them as
	// labd's own (labd sets it whenever it runs as root).
	NodeUser *NodeUser
	// KeepNodes leaves node processes running when labd stops, for the
	// next labd to adopt; by default they are stopped, as GNS3 does.
	KeepNodes bool
	// Plane joins the bridges of links whose two ends are nodes of this
	// daemon, so their frames do not cross loopback twice; nil means a
	// plane of its own.
	Plane *nio.Plane
	// Logger receives the actors' logs, and protoactor's.
	Logger *slog.Logger
	// Now is the clock events are stamped with; nil means time.Now.
	Now func() time.Time
	// StoreTimeout bounds one append; zero means 10 seconds.
	StoreTimeout time.Duration

	drivers []kind.Driver // the node kinds (newDrivers)
}

func (c *Config) now() time.Time { return c.Now().UTC() }

// Client is the door into the actor tree for the HTTP layer: commands go
// to the owning actor and wait for its reply; reads load published
// snapshots and never wait for an actor.
type Client struct {
	cfg      *Config
	sys      *actor.ActorSystem
	registry *actor.PID
	dir      *directory
	stopped  chan struct{} // closed when the registry has stopped
	closing  atomic.Bool
}

// Start spawns the actor tree on the folded state of the compute: one
// actor per open project, holding its ports.
func Start(cfg Config, st *replay.State) (*Client, error) {
	if cfg.ComputeID == "" || cfg.Store == nil || cfg.ProjectsDir == "" || cfg.UDPPorts == nil || cfg.ConsolePorts == nil || cfg.Logger == nil {
		return nil, errors.New("actors: Config needs ComputeID, Store, ProjectsDir, UDPPorts, ConsolePorts and Logger")
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.VPCSPath == "" {
		cfg.VPCSPath = "vpcs"
	}
	if cfg.Plane == nil {
		cfg.Plane = nio.NewPlane()
	}
	if cfg.VNCPorts == (nio.PortRange{}) {
		cfg.VNCPorts = nio.PortRange{First: 5900, Last: 10000}
	}
	if cfg.QEMUShutdownTimeout == 0 {
		cfg.QEMUShutdownTimeout = 120 * time.Second
	}

	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.StoreTimeout == 0 {
		cfg.StoreTimeout = 10 * time.Second
	}
	cfg.drivers = newDrivers(&cfg)
	if st == nil {
		st = replay.New()
	}
	if u := cfg.NodeUser; u != nil {
		for _, dir := range []string{cfg.ProjectsDir, cfg.Images.Root} {
			if dir == "" {
				continue
			}
			if err := u.CheckReach(dir); err != nil {
				return nil, fmt.Errorf("actors: node processes could not work there: %w", err)
			}
		}
	}
	// Every port the history holds is held again: project ports, the
	// tunnels of nodes recorded as running (released when they are
	// reconciled), console ports.
	for _, port := range st.UDPPorts() {
		if err := cfg.UDPPorts.Reserve(port); err != nil {
			return nil, fmt.Errorf("actors: restoring UDP port %d: %w", port, err)
		}
	}
	for _, port := range st.ConsolePorts() {
		if err := cfg.ConsolePorts.Reserve(port); err != nil {
			cfg.Logger.Warn("a console port of the history is taken; the node gets another at its next start", "port", port, "err", err)
		}
	}
	logger := cfg.Logger
	sys := actor.NewActorSystem(actor.WithLoggerFactory(func(s *actor.ActorSystem) *slog.Logger {
		return logger.With("lib", "protoactor")
	}))
	c := &Client{cfg: &cfg, sys: sys, dir: newDirectory(), stopped: make(chan struct{})}
	ready := make(chan struct{})
	reg := &registry{cfg: c.cfg, dir: c.dir, initial: st, tombstones: map[string]tomb{}, ready: ready, stopped: c.stopped}
	props := actor.PropsFromProducer(func() actor.Actor { return reg },
		// The registry's state is a map it updates in single steps; a panic
		// in one message leaves it whole, so it resumes rather than
		// restarting (which would stop every project actor).
		actor.WithGuardian(actor.NewOneForOneStrategy(0, 0, func(any) actor.Directive { return actor.ResumeDirective })),
		// A project actor that panics restarts and re-folds its aggregate
		// from the store before its next message.
		actor.WithSupervisor(actor.NewOneForOneStrategy(10, 10*time.Second, actor.DefaultDecider)),
	)
	pid, err := sys.Root.SpawnNamed(props, "registry")
	if err != nil {
		return nil, fmt.Errorf("actors: spawn registry: %w", err)
	}
	c.registry = pid
	// SpawnNamed returns before the registry has handled Started: wait
	// until every project actor is in the directory, or a read served
	// right after startup would miss projects.
	<-ready
	c.settleRecordedNodes(st)
	return c, nil
}

// settleRecordedNodes has every node the history says runs adopted, or
// recorded as stopped, before the daemon serves: a GET must not show a
// process that is gone as running. Nodes are settled in parallel.
func (c *Client) settleRecordedNodes(st *replay.State) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for _, n := range st.Nodes {
		if !n.Running() {
			continue
		}
		ref := NodeRef{ProjectID: n.ProjectID, NodeID: n.ID}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			// The node actor settles its recorded process before it
			// serves any request; this one only waits for that.
			if _, err := c.NodeDo(context.Background(), settleNode{ref}); err != nil {
				c.cfg.Logger.Warn("a recorded node could not be settled at startup", "project_id", ref.ProjectID, "node_id", ref.NodeID, "err", err)
			}
		})
	}
	wg.Wait()
}

// Stop stops every actor, after the messages already queued to them. It
// waits for them until ctx ends.
func (c *Client) Stop(ctx context.Context) error {
	if c.closing.Swap(true) {
		<-c.stopped
		return nil
	}
	c.sys.Root.Poison(c.registry)
	select {
	case <-c.stopped:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("actors: stop: %w", ctx.Err())
	}
}

// callTimeout bounds a command whose caller set no deadline.
const callTimeout = 5 * time.Minute

// call sends cmd to the actor tree and waits for the reply or for ctx.
func call[T any](ctx context.Context, c *Client, cmd command) (T, error) {
	var zero T
	if c.closing.Load() {
		return zero, Unavailable(nil, "labd is shutting down")
	}
	if _, ok := ctx.Deadline(); !ok {
		// A safety net: no command takes this long unless something is
		// wrong, and then the caller gets an answer.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, callTimeout)
		defer cancel()
	}
	req := &request{ctx: ctx, cmd: cmd, reply: make(chan result, 1)}
	c.sys.Root.Send(c.registry, req)
	select {
	case r := <-req.reply:
		if r.err != nil {
			return zero, r.err
		}
		v, _ := r.val.(T)
		return v, nil
	case <-ctx.Done():
		return zero, Unavailable(ctx.Err(), "the request was not answered in time")
	case <-c.stopped:
		return zero, Unavailable(nil, "labd is shutting down")
	}
}

// command is a message for the aggregate of one project.
type command interface {
	projectID() string
}

// request carries a command into the tree and its result back.
type request struct {
	ctx   context.Context
	cmd   command
	reply chan result // buffered: answering never blocks an actor
}

type result struct {
	val any
	err error
}

func (r *request) respond(val any, err error) {
	select {
	case r.reply <- result{val, err}:
	default: // already answered (a panic after the answer)
	}
}

// recoverAndRespond answers a request whose handler panicked with an
// internal error, logs the stack protoactor would not, and lets the panic
// go on to the supervisor.
func (r *request) recoverAndRespond(log *slog.Logger) {
	if v := recover(); v != nil {
		log.Error("actor panicked handling a command", "command", fmt.Sprintf("%T", r.cmd), "panic", v, "stack", string(debug.Stack()))
		r.respond(nil, fmt.Errorf("actors: internal error handling %T", r.cmd))
		panic(v)
	}
}

// entry is what the directory knows of one served project.
type entry struct {
	pid   *actor.PID
	snap  atomic.Pointer[replay.Project]
	nodes nodeTable
}

// directory maps project ids to their actors and snapshots. The registry
// is its only writer; Client reads it from any goroutine.
type directory struct {
	mu      sync.RWMutex // guards entries
	entries map[string]*entry
}

func newDirectory() *directory { return &directory{entries: map[string]*entry{}} }

func (d *directory) get(id string) *entry {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.entries[id]
}

func (d *directory) put(id string, e *entry) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.entries[id] = e
}

func (d *directory) remove(id string, pid *actor.PID) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if e, ok := d.entries[id]; ok && e.pid.Equal(pid) {
		delete(d.entries, id)
		return true
	}
	return false
}

func (d *directory) snapshots() []*replay.Project {
	d.mu.RLock()
	defer d.mu.RUnlock()
	out := make([]*replay.Project, 0, len(d.entries))
	for _, e := range d.entries {
		if p := e.snap.Load(); p.IsOpen() {
			out = append(out, p)
		}
	}
	return out
}

// Project returns the snapshot of an open project.
func (c *Client) Project(id string) (*replay.Project, error) {
	if e := c.dir.get(id); e != nil {
		if p := e.snap.Load(); p.IsOpen() {
			return p, nil
		}
	}
	return nil, NotFound("Project ID %s doesn't exist", id)
}

// Projects returns the snapshots of every open project, oldest first.
func (c *Client) Projects() []*replay.Project {
	ps := c.dir.snapshots()
	slices.SortFunc(ps, func(a, b *replay.Project) int {
		return cmp.Or(a.Opened.Compare(b.Opened), strings.Compare(a.ID, b.ID))
	})
	return ps
}

// ProjectsDir returns the directory holding the project directories.
func (c *Client) ProjectsDir() string { return c.cfg.ProjectsDir }

// ProjectDir returns the directory of project id.
func (c *Client) ProjectDir(id string) string { return filepath.Join(c.cfg.ProjectsDir, id) }

// UDPPortRange returns the range UDP tunnel ports are allocated from.
func (c *Client) UDPPortRange() nio.PortRange { return c.cfg.UDPPorts.Range() }

// ConsolePortsInUse returns the console ports currently allocated,
// ascending.
func (c *Client) ConsolePortsInUse() []int { return c.cfg.ConsolePorts.Used() }

// UDPPortsInUse returns the UDP ports currently allocated, ascending.
func (c *Client) UDPPortsInUse() []int { return c.cfg.UDPPorts.Used() }
