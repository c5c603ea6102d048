package actors

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"time"

	"labd/actors/console"
	"labd/actors/kind"
	"labd/events"
	"labd/nio"
	"labd/nio/pcap"
)

// runtime is what a running node holds besides its state: the kind's run
// (process, link ends), the console proxy; and the captures of its linked
// ports, which exist whether the node runs or not.
type runtime struct {
	run      kind.Run
	proxy    *console.Proxy
	captures map[kind.Port]*pcap.Capture
	// guestOff is set when the node reported that its guest powered
	// itself off; the exit that follows is recorded as such.
	guestOff bool
	// off is the graceful wait in progress, nil when none.
	off *pendingOff
	// waiters are the requests answered when their operation ends.
	waiters []waiter
}

// view is the node as its driver sees it.
func (a *nodeActor) view() kind.Node {
	n := kind.Node{
		ProjectID: a.ref.ProjectID, ID: a.ref.NodeID, Name: a.state.Name,
		Console: a.state.Console, ConsoleType: a.state.ConsoleType, MACID: a.state.MACID,
		Properties: a.state.Properties, Dir: a.dir(), ProjectDir: projectDir(a.cfg, a.ref.ProjectID),
		ConsolePassword: a.state.ConsolePassword,
	}
	for _, l := range a.state.Links {
		n.Links = append(n.Links, kind.Link{Port: kind.Port{Adapter: l.Adapter, Port: l.Port}, Up: !l.NIO.Suspend})
	}
	return n
}

// host is what the node lends its driver.
func (a *nodeActor) host() kind.Host {
	return kind.Host{
		Addr: a.cfg.Host, User: a.cfg.NodeUser, UDP: a.cfg.UDPPorts, Plane: a.cfg.Plane, Logger: a.log,
		Wire: a.wire,
	}
}

// wire attaches a port's recorded link and capture to its end.
func (a *nodeActor) wire(p kind.Port, e kind.End) error {
	if link, ok := a.state.Link(p.Adapter, p.Port); ok {
		filters, _ := nio.ParseFilters(nio.FilterSpec(link.NIO.Filters)) // validated when recorded
		if err := a.attach(e, link.NIO, filters); err != nil {
			return err
		}
	}
	if cp := a.rt.captures[p]; cp != nil {
		e.SetCapture(cp)
	}
	return nil
}

// end returns the link end of a port of the running node, nil when it
// does not run.
func (a *nodeActor) end(p kind.Port) kind.End {
	if a.rt.run == nil {
		return nil
	}
	return a.rt.run.End(p)
}

// launch starts the node through its driver, then its console, and
// returns the event that records them. On failure nothing is left running
// and every port is released.
func (a *nodeActor) launch() (events.NodeStarted, error) { return a.launchMode(false) }

// launchMode is launch, restoring the machine state a suspend to disk
// saved when restore.
func (a *nodeActor) launchMode(restore bool) (events.NodeStarted, error) {
	return a.launchWith(launchOpts{restore: restore})
}

// launchOpts are what one start asks of the driver besides the node.
type launchOpts struct {
	restore bool
	// cd is a CD image to boot from, the first boot only with cdOnce.
	cd     string
	cdOnce bool
}

// launchWith is launch, as o says.
func (a *nodeActor) launchWith(o launchOpts) (ev events.NodeStarted, err error) {
	if err := a.cfg.NodeUser.MakeDir(a.dir()); err != nil {
		return ev, fmt.Errorf("actors: node directory: %w", err)
	}
	if err := a.drv.Available(); err != nil {
		return ev, err
	}
	n := a.view()
	n.Restore, n.BootCD, n.BootCDOnce = o.restore, o.cd, o.cdOnce
	run, err := a.drv.Launch(a.host(), n)
	if err == nil {
		if err = a.serveRun(run, false); err != nil {
			run.Stop(kind.StopKill)
		}
	}
	if err != nil {
		kind.KillStragglers(a.dir())
		return ev, err
	}
	return startedEvent(run.Record()), nil
}

// serveRun opens the console of a launched or adopted run and watches it.
func (a *nodeActor) serveRun(run kind.Run, lazy bool) error {
	a.rt.run, a.rt.guestOff = run, false
	if a.state.ConsoleType == ConsoleTelnet && a.state.Console != 0 && run.Console() != "" {
		proxy, err := a.openConsole(run, a.state.Console, lazy)
		if err != nil {
			a.rt.run = nil
			return err
		}
		a.rt.proxy = proxy
	}
	a.watch(run)
	a.publishLive()
	return nil
}

// startedEvent is the record of a run.
func startedEvent(r kind.Record) events.NodeStarted {
	ev := events.NodeStarted{PID: r.PID, ProcStart: r.ProcStart, CommandLine: r.CommandLine,
		InternalConsole: r.InternalConsole, QMP: r.Control}
	for _, t := range r.Tunnels {
		ev.Tunnels = append(ev.Tunnels, events.Tunnel{Adapter: t.Adapter, Port: t.Port.Port,
			NodePort: t.NodePort, BridgePort: t.BridgePort, RelayPort: t.RelayPort})
	}
	return ev
}

// recordOf is the run an event records.
func recordOf(ev events.NodeStarted) kind.Record {
	r := kind.Record{PID: ev.PID, ProcStart: ev.ProcStart, CommandLine: ev.CommandLine,
		InternalConsole: ev.InternalConsole, Control: ev.QMP}
	for _, t := range ev.Tunnels {
		r.Tunnels = append(r.Tunnels, kind.Tunnel{Port: kind.Port{Adapter: t.Adapter, Port: t.Port},
			NodePort: t.NodePort, BridgePort: t.BridgePort, RelayPort: t.RelayPort})
	}
	return r
}

// runNotice is a notice of a node's run, forwarded to its actor.
type runNotice struct {
	run    kind.Run
	notice kind.Notice
}

// runEnded tells a node actor its run's process ended.
type runEnded struct{ run kind.Run }

// watch tells the actor what the run reports and when its process ends,
// in that order: one goroutine sends both, so a guest's power-off reaches
// the actor before the exit it explains. It returns when the process ends
// or labd releases it.
func (a *nodeActor) watch(run kind.Run) {
	sys, self := a.sys, a.self
	notices, p := run.Notices(), run.Process()
	if notices == nil && p == nil {
		return
	}
	go func() {
		if notices != nil { // ranging over nil would block for ever
			for n := range notices {
				sys.Root.Send(self, runNotice{run: run, notice: n})
			}
		}
		if p == nil {
			return
		}
		select {
		case <-p.Done():
			sys.Root.Send(self, runEnded{run})
		case <-p.Released():
		}
	}()
}

// openConsole serves the public console port, once the run listens on its
// internal one (or at once when lazy: the proxy reaches it in the
// background).
func (a *nodeActor) openConsole(run kind.Run, public int, lazy bool) (*console.Proxy, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := run.Process()
	if p != nil {
		go func() {
			select {
			case <-p.Done(): // no use waiting for a dead process's console
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	proxy, err := console.Start(ctx, console.Config{
		Listen:      net.JoinHostPort(a.cfg.Host, strconv.Itoa(public)),
		Target:      run.Console(),
		DialTimeout: 10 * time.Second,
		Logger:      a.log,
		Lazy:        lazy,
	})
	if err != nil {
		tail := ""
		if p != nil {
			tail = kind.LogTail(p.Log(), 1024)
		}
		return nil, Conflict("the node's console did not come up: %v %s", err, tail)
	}
	return proxy, nil
}

func (a *nodeActor) restartConsole() error {
	if a.rt.proxy != nil {
		_ = a.rt.proxy.Close()
		a.rt.proxy = nil
	}
	if a.state.ConsoleType == ConsoleTelnet && a.state.Console != 0 && a.rt.run.Console() != "" {
		proxy, err := a.openConsole(a.rt.run, a.state.Console, false)
		if err != nil {
			a.publishLive()
			return err
		}
		a.rt.proxy = proxy
	}
	a.publishLive()
	return nil
}

// attach points a link end at a NIO's remote end.
func (a *nodeActor) attach(e kind.End, n events.NIO, filters *nio.Filters) error {
	local, remote, err := a.nioAddrs(n)
	if err != nil {
		return err
	}
	if err := e.Attach(local, remote); err != nil {
		if _, classified := errors.AsType[*Error](err); classified {
			return err // the end's own words (a cloud's host interface)
		}
		return Conflict("could not bind UDP port %d: %v", n.LPort, err)
	}
	e.SetFilters(filters)
	e.SetSuspended(n.Suspend)
	return nil
}

// nioAddrs resolves a NIO's local and remote addresses.
func (a *nodeActor) nioAddrs(n events.NIO) (local, remote netip.AddrPort, err error) {
	host, err := netip.ParseAddr(a.cfg.Host)
	if err != nil {
		host = netip.IPv4Unspecified()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip4", n.RHost)
	if err != nil || len(ips) == 0 {
		return local, remote, Conflict("Could not create an UDP connection to %s:%d: cannot resolve %s", n.RHost, n.RPort, n.RHost)
	}
	return netip.AddrPortFrom(host, uint16(n.LPort)), netip.AddrPortFrom(ips[0].Unmap(), uint16(n.RPort)), nil
}

// teardown ends the run as mode says, then the console, and returns the
// process's exit code.
func (a *nodeActor) teardown(mode kind.StopMode) int {
	code := 0
	if run := a.rt.run; run != nil {
		hadProcess := run.Process() != nil
		if hadProcess && a.state.PauseCause == events.CauseSignal {
			// A signal stopped it: it must run to hear a request to end.
			_ = run.Process().Signal(syscall.SIGCONT)
		}
		code = run.Stop(mode)
		a.rt.run = nil
		// A run inside labd leaves no process behind: no /proc scan.
		if hadProcess {
			if n := kind.KillStragglers(a.dir()); n > 0 {
				a.log.Info("killed processes the node left behind", "count", n)
			}
		}
	}
	// The console stays up until the process is gone: its clients see a
	// guest shut down.
	if a.rt.proxy != nil {
		_ = a.rt.proxy.Close()
		a.rt.proxy = nil
	}
	a.publishLive()
	return code
}

// release leaves the node's run going for the next labd to adopt (labd
// stops with --keep-nodes, or the run lives inside labd and is rebuilt by
// the next one).
func (a *nodeActor) release() {
	a.rt.run.Release()
	a.rt.run = nil
	if a.rt.proxy != nil {
		_ = a.rt.proxy.Close()
		a.rt.proxy = nil
	}
	a.publishLive()
}

func (a *nodeActor) closeCapture(p kind.Port) {
	if cp := a.rt.captures[p]; cp != nil {
		if e := a.end(p); e != nil {
			e.SetCapture(nil)
		}
		_ = cp.Close()
		delete(a.rt.captures, p)
		a.publishLive()
	}
}

func (a *nodeActor) closeCaptures() {
	for p := range a.rt.captures {
		a.closeCapture(p)
	}
}

// publishLive shows readers the node's current console and captures.
func (a *nodeActor) publishLive() {
	l := &nodeLive{console: a.rt.proxy, captures: make(map[[2]int]*pcap.Capture, len(a.rt.captures))}
	for p, v := range a.rt.captures {
		l.captures[[2]int{p.Adapter, p.Port}] = v
	}
	a.entry.live.Store(l)
}
