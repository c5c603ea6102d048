package actors

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"labd/actors/console"
	"labd/actors/qemu/qmp"
	"labd/actors/vpcs"
	"labd/events"
	"labd/nio"
	"labd/nio/pcap"
)

// stopGrace is how long a node process has to end after SIGTERM before it
// is killed (GNS3: 3 s for VPCS).
const stopGrace = 3 * time.Second

// runtime is what a running node holds besides its state: the process, the
// tunnels and bridges of its ports, its console proxy; and the captures of
// its linked ports, which exist whether the node runs or not.
type runtime struct {
	proc            *process
	internalConsole int
	tunnels         []events.Tunnel
	bridges         map[[2]int]*nio.Bridge
	proxy           *console.Proxy
	captures        map[[2]int]*pcap.Capture
	qemu            *qemuRun // QEMU nodes only
}

// launchSpec is a kind's part of a start: the program, its arguments, the
// log file its output goes to (in the node directory).
type launchSpec struct {
	bin  string
	args []string
	log  string
}

// launch starts the node's process, its bridges and its console, and
// returns the event that records them. On failure nothing is left running
// and every port is released.
func (a *nodeActor) launch() (ev events.NodeStarted, err error) {
	rt := runtime{bridges: map[[2]int]*nio.Bridge{}, captures: a.rt.captures}
	defer func() {
		if err != nil {
			a.rt = rt
			a.teardown(stopKill)
		}
	}()
	dir := a.dir()
	if err := a.cfg.NodeUser.makeDir(dir); err != nil {
		return ev, fmt.Errorf("actors: node directory: %w", err)
	}
	for _, p := range a.ports() {
		t := events.Tunnel{Adapter: p[0], Port: p[1]}
		if t.NodePort, err = a.cfg.UDPPorts.Allocate(); err != nil {
			return ev, &Error{Class: ErrConflict, Msg: err.Error(), Err: err}
		}
		if t.BridgePort, err = a.cfg.UDPPorts.Allocate(); err != nil {
			a.cfg.UDPPorts.Release(t.NodePort)
			return ev, &Error{Class: ErrConflict, Msg: err.Error(), Err: err}
		}
		rt.tunnels = append(rt.tunnels, t)
	}
	var spec launchSpec
	switch a.state.Kind {
	case KindQEMU:
		spec, err = a.qemuCommand(&rt)
	default:
		spec, err = a.vpcsCommand(&rt)
	}
	if err != nil {
		return ev, err
	}
	// The bridges first: the node's first frames must find them.
	if err := a.openBridges(&rt); err != nil {
		return ev, err
	}
	if rt.proc, err = startProcess(spec.bin, spec.args, dir, filepath.Join(dir, spec.log), a.cfg.NodeUser.credential()); err != nil {
		return ev, Conflict("could not start %s: %v", kindName(a.state.Kind), err)
	}
	if rt.qemu != nil {
		if err := a.qemuAttach(&rt); err != nil {
			return ev, err
		}
	}
	if a.state.ConsoleType == ConsoleTelnet && a.state.Console != 0 {
		if rt.proxy, err = a.openConsole(rt.proc, rt.internalConsole, a.state.Console, false); err != nil {
			return ev, err
		}
	}
	p := rt.proc
	a.watch(&rt)
	a.rt = rt
	a.publishLive()
	ev = events.NodeStarted{
		PID: p.pid, ProcStart: p.startTime,
		CommandLine:     strings.Join(append([]string{spec.bin}, spec.args...), " "),
		InternalConsole: rt.internalConsole, Tunnels: rt.tunnels,
	}
	if rt.qemu != nil {
		ev.QMP = rt.qemu.qmpPath
	}
	return ev, nil
}

// openBridges opens the bridge of every tunnel of a run, attaches the
// recorded links and captures.
func (a *nodeActor) openBridges(rt *runtime) error {
	loopback := netip.MustParseAddr("127.0.0.1")
	for _, t := range rt.tunnels {
		key := [2]int{t.Adapter, t.Port}
		br, err := nio.OpenBridge(nio.BridgeConfig{
			Name:   fmt.Sprintf("%s-%s-%d/%d", strings.ToUpper(a.state.Kind), a.ref.NodeID, t.Adapter, t.Port),
			Tunnel: netip.AddrPortFrom(loopback, uint16(t.BridgePort)),
			Node:   netip.AddrPortFrom(loopback, uint16(t.NodePort)),
			Plane:  a.cfg.Plane,
			Logger: a.log,
		})
		if err != nil {
			return fmt.Errorf("actors: open bridge: %w", err)
		}
		rt.bridges[key] = br
		if link, ok := a.state.Link(t.Adapter, t.Port); ok {
			filters, _ := nio.ParseFilters(nio.FilterSpec(link.NIO.Filters)) // validated when recorded
			if err := a.attach(br, link.NIO, filters); err != nil {
				return err
			}
		}
		if cp := rt.captures[key]; cp != nil {
			br.SetCapture(cp)
		}
	}
	return nil
}

// watch tells the actor when the run's process ends, after the QMP events
// it sent: one goroutine sends both, so a guest's SHUTDOWN reaches the
// actor before the exit it explains. It returns when the process ends or
// labd releases it.
func (a *nodeActor) watch(rt *runtime) {
	p, sys, self := rt.proc, a.sys, a.self
	var qmpEvents <-chan qmp.Event
	if rt.qemu != nil {
		qmpEvents = rt.qemu.qmp.Events()
	}
	go func() {
		if qmpEvents != nil {
			for ev := range qmpEvents {
				sys.Root.Send(self, qmpEvent{p: p, ev: ev})
			}
		}
		select {
		case <-p.done:
			sys.Root.Send(self, processExited{p})
		case <-p.released:
		}
	}()
}

// vpcsCommand is VPCS's part of a start.
func (a *nodeActor) vpcsCommand(rt *runtime) (launchSpec, error) {
	bin, err := exec.LookPath(a.cfg.VPCSPath)
	if err != nil {
		return launchSpec{}, Conflict("VPCS executable %q not found: %v", a.cfg.VPCSPath, err)
	}
	version, err := vpcs.Detect(context.Background(), bin)
	if err != nil {
		return launchSpec{}, Conflict("%s is not a usable VPCS: %v", bin, err)
	}
	if rt.internalConsole, err = freeTCPPort(); err != nil {
		return launchSpec{}, Conflict("no internal console port: %v", err)
	}
	if !version.HasRelayFlag() {
		if err := a.takeRelayPort(&rt.tunnels[0]); err != nil {
			return launchSpec{}, err
		}
	}
	_, hasScript, _ := vpcs.ReadScript(a.dir())
	t0 := rt.tunnels[0]
	args := vpcs.Args(version, vpcs.Options{
		Console: rt.internalConsole, MACID: a.state.MACID,
		LocalPort: t0.NodePort, RemotePort: t0.BridgePort, Script: hasScript,
	})
	return launchSpec{bin: bin, args: args, log: vpcs.LogName}, nil
}

// vpcsRelayOffset is where VPCS 0.5 binds its relay port: NodePort+9.
const vpcsRelayOffset = 9

// takeRelayPort holds the relay port a VPCS without -R binds, so that the
// pool never hands it to another node: when the tunnel's node port p has
// p+9 taken, it moves to the lowest port that has both free.
func (a *nodeActor) takeRelayPort(t *events.Tunnel) error {
	if a.cfg.UDPPorts.Take(t.NodePort+vpcsRelayOffset) == nil {
		t.RelayPort = t.NodePort + vpcsRelayOffset
		return nil
	}
	r := a.cfg.UDPPorts.Range()
	for p := r.First; p+vpcsRelayOffset <= r.Last; p++ {
		if a.cfg.UDPPorts.Take(p) != nil {
			continue
		}
		if a.cfg.UDPPorts.Take(p+vpcsRelayOffset) != nil {
			a.cfg.UDPPorts.Release(p)
			continue
		}
		a.cfg.UDPPorts.Release(t.NodePort)
		t.NodePort, t.RelayPort = p, p+vpcsRelayOffset
		return nil
	}
	return Conflict("no free UDP port p with p+%d free too (VPCS's relay port) in %v", vpcsRelayOffset, r)
}

// kindName is a node kind as messages name it.
func kindName(kind string) string {
	if kind == KindQEMU {
		return "QEMU"
	}
	return strings.ToUpper(kind)
}

// openConsole serves the public console port, once the process listens on
// its internal one (or at once when lazy: the proxy reaches it in the
// background).
func (a *nodeActor) openConsole(p *process, internal, public int, lazy bool) (*console.Proxy, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-p.done: // no use waiting for a dead process's console
			cancel()
		case <-ctx.Done():
		}
	}()
	proxy, err := console.Start(ctx, console.Config{
		Listen:      net.JoinHostPort(a.cfg.Host, strconv.Itoa(public)),
		Target:      net.JoinHostPort("127.0.0.1", strconv.Itoa(internal)),
		DialTimeout: 10 * time.Second,
		Logger:      a.log,
		Lazy:        lazy,
	})
	if err != nil {
		tail := logTail(p.log, 1024)
		return nil, Conflict("the node's console did not come up: %v %s", err, tail)
	}
	return proxy, nil
}

func (a *nodeActor) restartConsole() error {
	if a.rt.proxy != nil {
		_ = a.rt.proxy.Close()
		a.rt.proxy = nil
	}
	if a.state.ConsoleType == ConsoleTelnet && a.state.Console != 0 {
		proxy, err := a.openConsole(a.rt.proc, a.rt.internalConsole, a.state.Console, false)
		if err != nil {
			a.publishLive()
			return err
		}
		a.rt.proxy = proxy
	}
	a.publishLive()
	return nil
}

// attach points a bridge at a NIO's remote end.
func (a *nodeActor) attach(br *nio.Bridge, n events.NIO, filters *nio.Filters) error {
	local, remote, err := a.nioAddrs(n)
	if err != nil {
		return err
	}
	if err := br.Attach(local, remote); err != nil {
		return Conflict("could not bind UDP port %d: %v", n.LPort, err)
	}
	br.SetFilters(filters)
	br.SetSuspended(n.Suspend)
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

// releaseTunnels returns the UDP ports of tunnels to the pool.
func (a *nodeActor) releaseTunnels(ts []events.Tunnel) {
	for _, t := range ts {
		for _, p := range t.Ports() {
			a.cfg.UDPPorts.Release(p)
		}
	}
}

// How teardown ends a node's process.
type stopMode int

const (
	stopWait    stopMode = iota // it has ended by itself: wait for it
	stopKill                    // end it at once (SIGTERM, then SIGKILL)
	stopRequest                 // end it the kind's way (QEMU: on_close)
	stopClosing                 // as stopRequest, without waiting for a guest (project close, labd stop)
)

// teardown stops the process, then the console and the bridges, releases
// the ports of the run and returns the process's exit code.
func (a *nodeActor) teardown(mode stopMode) int {
	rt := &a.rt
	code := 0
	if rt.proc != nil {
		switch {
		case mode == stopWait:
			<-rt.proc.done
		case rt.qemu != nil && mode != stopKill:
			a.qemuStop(mode == stopClosing)
		default:
			rt.proc.stop(stopGrace)
		}
		code = rt.proc.exitCode()
		rt.proc = nil
		if n := killStragglers(a.dir()); n > 0 {
			a.log.Info("killed processes the node left behind", "count", n)
		}
	}
	// The console stays up until the process is gone: its clients see a
	// guest shut down.
	if rt.proxy != nil {
		_ = rt.proxy.Close()
		rt.proxy = nil
	}
	if rt.qemu != nil {
		rt.qemu.close()
		rt.qemu = nil
	}
	for key, br := range rt.bridges {
		_ = br.Close()
		delete(rt.bridges, key)
	}
	a.releaseTunnels(rt.tunnels)
	rt.tunnels, rt.internalConsole = nil, 0
	a.publishLive()
	return code
}

func (a *nodeActor) closeCapture(key [2]int) {
	if cp := a.rt.captures[key]; cp != nil {
		if br := a.rt.bridges[key]; br != nil {
			br.SetCapture(nil)
		}
		_ = cp.Close()
		delete(a.rt.captures, key)
		a.publishLive()
	}
}

func (a *nodeActor) closeCaptures() {
	for key := range a.rt.captures {
		a.closeCapture(key)
	}
}

// publishLive shows readers the node's current console and captures.
func (a *nodeActor) publishLive() {
	l := &nodeLive{console: a.rt.proxy, captures: make(map[[2]int]*pcap.Capture, len(a.rt.captures))}
	for k, v := range a.rt.captures {
		l.captures[k] = v
	}
	a.entry.live.Store(l)
}

// freeTCPPort returns a TCP port of 127.0.0.1 free right now, for a
// process's internal console.
func freeTCPPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
