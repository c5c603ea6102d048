package actors

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"labd/actors/qemu"
	"labd/actors/vpcs"
	"labd/events"
	"labd/nio"
	"labd/nio/pcap"
	"labd/replay"
)

// ports are the node's ports, as adapter/port pairs: VPCS has one, a
// QEMU node one per adapter.
func (a *nodeActor) ports() [][2]int {
	switch a.state.Kind {
	case KindVPCS:
		return [][2]int{{0, 0}}
	case KindQEMU:
		c := qemuConfigOf(a.state)
		ports := make([][2]int, c.Adapters)
		for i := range ports {
			ports[i] = [2]int{i, 0}
		}
		return ports
	}
	return nil
}

// checkPort refuses an adapter or port the node does not have, in GNS3's
// words.
func (a *nodeActor) checkPort(adapter, port int) error {
	ports := a.ports()
	for _, p := range ports {
		if p == [2]int{adapter, port} {
			return nil
		}
	}
	for _, p := range ports {
		if p[0] == adapter {
			return Conflict("Port %d doesn't exist on adapter %d", port, adapter)
		}
	}
	return Conflict("Adapter %d doesn't exist on %s node %s", adapter, kindName(a.state.Kind), a.state.Name)
}

// takeConsole reserves the wanted console port, or another free one when it
// is taken or outside the range (GNS3 does the same and the response says
// which port the node got).
func (a *nodeActor) takeConsole(want int, consoleType string) (int, error) {
	rng := a.cfg.ConsolePorts.Range()
	if consoleType == ConsoleVNC {
		// QEMU serves VNC display port-5900.
		rng = a.cfg.VNCPorts
		if console := a.cfg.ConsolePorts.Range(); rng.Last < console.First || rng.First > console.Last {
			return 0, Conflict("no VNC console port: the VNC range %v lies outside the console range %v", rng, console)
		}
	}
	if want != 0 && rng.Contains(want) && a.cfg.ConsolePorts.Range().Contains(want) && a.cfg.ConsolePorts.Reserve(want) == nil {
		return want, nil
	}
	port, err := a.cfg.ConsolePorts.AllocateIn(rng)
	if err != nil {
		return 0, &Error{Class: ErrConflict, Msg: err.Error(), Err: err}
	}
	return port, nil
}

func (a *nodeActor) create(c CreateNode) (*replay.Node, error) {
	if a.state.Exists() {
		return nil, AlreadyExists("Node ID %s already exists", a.ref.NodeID)
	}
	if err := checkName("node", c.Name); err != nil {
		return nil, err
	}
	consoleType := c.ConsoleType
	if consoleType == "" {
		consoleType = ConsoleTelnet
	}
	var props json.RawMessage
	if c.Kind == KindQEMU {
		patch := qemu.Patch{}
		if c.QEMU != nil {
			patch = *c.QEMU
		}
		var err error
		if props, err = a.qemuSettle(qemu.Default(), patch, consoleType, nil); err != nil {
			return nil, err
		}
	}
	port := 0
	if consoleType != ConsoleNone {
		want := 0
		if c.Console != nil {
			want = *c.Console
		}
		var err error
		if port, err = a.takeConsole(want, consoleType); err != nil {
			return nil, err
		}
	}
	if err := a.commit(events.NodeCreated{Kind: c.Kind, Name: c.Name, Console: port, ConsoleType: consoleType, MACID: c.macID, Properties: props}); err != nil {
		if port != 0 {
			a.cfg.ConsolePorts.Release(port)
		}
		return nil, err
	}
	dir := a.dir()
	if err := a.cfg.NodeUser.makeDir(dir); err != nil {
		return a.state, a.effectFailed("create the node directory", err)
	}
	if c.StartupScript != nil {
		// GNS3 keeps a script already on disk (a project opened again).
		if _, ok, _ := vpcs.ReadScript(dir); !ok {
			if err := vpcs.WriteScript(dir, *c.StartupScript, c.Name); err != nil {
				return a.state, a.effectFailed("write the startup script", err)
			}
		}
	}
	return a.state, nil
}

func (a *nodeActor) update(c UpdateNode) (*replay.Node, error) {
	old := a.state
	next := events.NodeUpdated{Name: old.Name, Console: old.Console, ConsoleType: old.ConsoleType}
	if c.Name != nil {
		if err := checkName("node", *c.Name); err != nil {
			return nil, err
		}
		next.Name = *c.Name
	}
	if c.ConsoleType != nil {
		next.ConsoleType = *c.ConsoleType
	}
	if old.Kind == KindQEMU && (c.QEMU != nil || next.ConsoleType != old.ConsoleType) {
		patch := qemu.Patch{}
		if c.QEMU != nil {
			patch = *c.QEMU
		}
		props, err := a.qemuSettle(qemuConfigOf(old), patch, next.ConsoleType, old.Links)
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(props, old.Properties) {
			next.Properties = props
		}
	}
	newPort := 0 // a port reserved by this update
	switch {
	case next.ConsoleType == ConsoleNone:
		next.Console = 0
	case c.Console != nil && *c.Console != old.Console, next.Console == 0,
		next.ConsoleType == ConsoleVNC && !a.cfg.VNCPorts.Contains(next.Console):
		want := 0
		if c.Console != nil {
			want = *c.Console
		}
		var err error
		if newPort, err = a.takeConsole(want, next.ConsoleType); err != nil {
			return nil, err
		}
		next.Console = newPort
	}
	dir := a.dir()
	if c.StartupScript != nil {
		if err := a.cfg.NodeUser.makeDir(dir); err != nil {
			return nil, fmt.Errorf("actors: node directory: %w", err)
		}
		if err := vpcs.WriteScript(dir, *c.StartupScript, next.Name); err != nil {
			return nil, fmt.Errorf("actors: write the startup script: %w", err)
		}
	}
	if next.Name == old.Name && next.Console == old.Console && next.ConsoleType == old.ConsoleType && next.Properties == nil {
		return a.state, nil
	}
	if err := a.commit(next); err != nil {
		if newPort != 0 {
			a.cfg.ConsolePorts.Release(newPort)
		}
		return nil, err
	}
	if old.Console != 0 && old.Console != next.Console {
		a.cfg.ConsolePorts.Release(old.Console)
	}
	if old.Kind == KindVPCS && next.Name != old.Name && c.StartupScript == nil {
		if err := vpcs.Rename(dir, next.Name); err != nil {
			return a.state, a.effectFailed("rename the node in its startup script", err)
		}
	}
	if a.rt.proc != nil && (old.Console != next.Console || old.ConsoleType != next.ConsoleType) {
		if err := a.restartConsole(); err != nil {
			return a.state, a.effectFailed("move the console", err)
		}
	}
	return a.state, nil
}

// remove deletes (NodeDeleted) or closes (NodeClosed) the node.
func (a *nodeActor) remove(d events.Data) error {
	if a.rt.proc != nil {
		code := a.teardown(stopClosing)
		if err := a.commit(events.NodeStopped{Reason: events.StopRequested, ExitCode: &code}); err != nil {
			return err
		}
	}
	a.closeCaptures()
	console := a.state.Console
	dir := a.dir()
	if err := a.commit(d); err != nil {
		return err
	}
	if console != 0 {
		a.cfg.ConsolePorts.Release(console)
	}
	if _, deleting := d.(events.NodeDeleted); deleting {
		if err := os.RemoveAll(dir); err != nil {
			return a.effectFailed("remove the node directory", err)
		}
	}
	return nil
}

func (a *nodeActor) start() (*replay.Node, error) {
	if a.rt.proc != nil {
		// GNS3 resumes a suspended node it is asked to start.
		return a.resume()
	}
	started, err := a.launch()
	if err != nil {
		if cerr := a.commit(events.NodeStartFailed{Error: err.Error()}); cerr != nil {
			a.log.Error("could not record a failed start", "err", cerr)
		}
		return nil, err
	}
	if err := a.commit(started); err != nil {
		// Unrecorded, it must not run: the history never lacks a process.
		a.teardown(stopKill)
		return nil, err
	}
	return a.state, nil
}

func (a *nodeActor) stop() (*replay.Node, error) {
	if a.rt.proc == nil {
		return a.state, nil
	}
	code := a.teardown(stopRequest)
	if err := a.commit(events.NodeStopped{Reason: events.StopRequested, ExitCode: &code}); err != nil {
		return nil, err
	}
	return a.state, nil
}

func (a *nodeActor) reload() (*replay.Node, error) {
	if a.rt.qemu != nil {
		return a.qemuReload()
	}
	if _, err := a.stop(); err != nil {
		return nil, err
	}
	return a.start()
}

// exited handles the end of a process labd did not ask for.
func (a *nodeActor) exited(p *process) {
	if a.rt.proc != p {
		return // a process already stopped on request
	}
	guest := a.rt.qemu != nil && a.rt.qemu.guestShutdown
	code := a.teardown(stopWait)
	reason, msg := events.StopExited, describeExit(kindName(a.state.Kind), code, logTail(p.log, 2048))
	if guest {
		reason, msg = events.StopGuestShutdown, fmt.Sprintf("The guest of %s powered itself off; QEMU exited with code %d", a.state.Name, code)
		a.log.Info("the guest powered off", "exit_code", code)
	} else {
		a.log.Warn("node process exited unexpectedly", "exit_code", code)
	}
	if err := a.commit(events.NodeStopped{Reason: reason, ExitCode: &code, Message: msg}); err != nil {
		a.log.Error("could not record the node's exit", "err", err)
	}
}

// copyFrom copies another node's files (but its logs) into this node's
// directory. Both directories may belong to the node user, so both are
// read and written through an os.Root: no link there leads labd elsewhere.
func (a *nodeActor) copyFrom(from string) (*replay.Node, error) {
	if err := a.copyDir(from); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("actors: duplicate node files: %w", err)
	}
	if err := a.cfg.NodeUser.makeDir(a.dir()); err != nil {
		return nil, fmt.Errorf("actors: duplicate node files: %w", err)
	}
	return a.state, nil
}

func (a *nodeActor) copyDir(from string) error {
	src, err := os.OpenRoot(from)
	if err != nil {
		return err
	}
	defer src.Close()
	if err := os.MkdirAll(a.dir(), 0o755); err != nil {
		return err
	}
	dst, err := os.OpenRoot(a.dir())
	if err != nil {
		return err
	}
	defer dst.Close()
	return fs.WalkDir(src.FS(), ".", func(rel string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case d.IsDir():
			return dst.MkdirAll(rel, 0o755)
		case !d.Type().IsRegular() || strings.HasSuffix(rel, ".log"):
			return nil
		}
		b, err := src.ReadFile(rel)
		if err != nil {
			return err
		}
		return dst.WriteFile(rel, b, 0o644)
	})
}

func (a *nodeActor) addNIO(adapter, port int, n events.NIO) (*replay.Node, error) {
	if err := a.checkPort(adapter, port); err != nil {
		return nil, err
	}
	filters, err := parseFilters(n.Filters)
	if err != nil {
		return nil, err
	}
	n.Filters = filters.Spec()
	if old, linked := a.state.Link(adapter, port); linked {
		return a.replaceNIO(old, n, filters)
	}
	if br := a.rt.bridges[[2]int{adapter, port}]; br != nil {
		if err := a.attach(br, n, filters); err != nil {
			return nil, err
		}
	}
	if err := a.commit(events.NIOAdded{Adapter: adapter, Port: port, NIO: n}); err != nil {
		if br := a.rt.bridges[[2]int{adapter, port}]; br != nil {
			br.Detach()
		}
		return nil, err
	}
	a.qemuLinkChanged(adapter, port)
	return a.state, nil
}

// replaceNIO handles a NIO added where one is already attached: GNS3
// replaces it.
func (a *nodeActor) replaceNIO(old replay.Link, n events.NIO, filters *nio.Filters) (*replay.Node, error) {
	br := a.rt.bridges[[2]int{old.Adapter, old.Port}]
	if br != nil && (old.NIO.LPort != n.LPort || old.NIO.RHost != n.RHost || old.NIO.RPort != n.RPort) {
		if err := a.attach(br, n, filters); err != nil {
			return nil, err
		}
	}
	if err := a.commit(events.NIOUpdated{Adapter: old.Adapter, Port: old.Port, NIO: n}); err != nil {
		return nil, err
	}
	if br != nil {
		br.SetFilters(filters)
		br.SetSuspended(n.Suspend)
	}
	if old.NIO.Suspend != n.Suspend {
		a.qemuLinkChanged(old.Adapter, old.Port)
	}
	return a.state, nil
}

func (a *nodeActor) updateNIO(adapter, port int, n events.NIO) (*replay.Node, error) {
	if err := a.checkPort(adapter, port); err != nil {
		return nil, err
	}
	old, linked := a.state.Link(adapter, port)
	if !linked {
		return nil, Conflict("Port %d on adapter %d is not connected", port, adapter)
	}
	filters, err := parseFilters(n.Filters)
	if err != nil {
		return nil, err
	}
	n.Filters = filters.Spec()
	return a.replaceNIO(old, n, filters)
}

func (a *nodeActor) removeNIO(adapter, port int) (*replay.Node, error) {
	if err := a.checkPort(adapter, port); err != nil {
		return nil, err
	}
	if _, linked := a.state.Link(adapter, port); !linked {
		return nil, Conflict("Port %d on adapter %d is not connected", port, adapter)
	}
	if err := a.commit(events.NIORemoved{Adapter: adapter, Port: port}); err != nil {
		return nil, err
	}
	a.closeCapture([2]int{adapter, port})
	if br := a.rt.bridges[[2]int{adapter, port}]; br != nil {
		br.Detach()
	}
	a.qemuLinkChanged(adapter, port)
	return a.state, nil
}

// parseFilters validates a filter object: a bad one is the client's error,
// and nothing is installed.
func parseFilters(spec map[string][]any) (*nio.Filters, error) {
	f, err := nio.ParseFilters(nio.FilterSpec(spec))
	if err != nil {
		return nil, &Error{Class: ErrInvalid, Msg: err.Error(), Err: err}
	}
	return f, nil
}

// LinkTypes are the capture link types GNS3 accepts. VPCS and QEMU capture
// Ethernet whatever is asked, as GNS3 does.
var LinkTypes = []string{"DLT_ATM_RFC1483", "DLT_EN10MB", "DLT_FRELAY", "DLT_C_HDLC", "DLT_PPP_SERIAL"}

// CaptureFileName checks a capture file name: a plain file name, which
// cannot leave the captures directory.
func CaptureFileName(name string) error {
	switch {
	case name == "", name == ".", name == "..":
		return Invalid("capture_file_name %q is not a file name", name)
	case strings.ContainsAny(name, "/\\\x00"), strings.HasPrefix(name, "."):
		return Invalid("capture_file_name %q must be a plain file name inside the captures directory", name)
	}
	return nil
}

func (a *nodeActor) startCapture(c StartCapture) (string, error) {
	if err := a.checkPort(c.Adapter, c.Port); err != nil {
		return "", err
	}
	if err := CaptureFileName(c.File); err != nil {
		return "", err
	}
	if c.LinkType == "" {
		c.LinkType = "DLT_EN10MB"
	}
	link, linked := a.state.Link(c.Adapter, c.Port)
	switch {
	case !linked:
		return "", Conflict("Port %d on adapter %d is not connected", c.Port, c.Adapter)
	case link.Capture != nil:
		return "", Conflict("Packet capture is already active on adapter %d port %d", c.Adapter, c.Port)
	}
	dir := capturesDir(a.cfg, a.ref.ProjectID)
	path := filepath.Join(dir, c.File)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("actors: captures directory: %w", err)
	}
	cp, err := pcap.Create(path)
	if err != nil {
		return "", fmt.Errorf("actors: create capture file: %w", err)
	}
	if err := a.commit(events.CaptureStarted{Adapter: c.Adapter, Port: c.Port, File: c.File, LinkType: c.LinkType}); err != nil {
		_ = cp.Close()
		return "", err
	}
	key := [2]int{c.Adapter, c.Port}
	if a.rt.captures == nil {
		a.rt.captures = map[[2]int]*pcap.Capture{}
	}
	a.rt.captures[key] = cp
	if br := a.rt.bridges[key]; br != nil {
		br.SetCapture(cp)
	}
	a.publishLive()
	return path, nil
}

func (a *nodeActor) stopCapture(adapter, port int) (*replay.Node, error) {
	if err := a.checkPort(adapter, port); err != nil {
		return nil, err
	}
	if l, ok := a.state.Link(adapter, port); !ok || l.Capture == nil {
		return nil, Conflict("No packet capture is active on adapter %d port %d", adapter, port)
	}
	if err := a.commit(events.CaptureStopped{Adapter: adapter, Port: port}); err != nil {
		return nil, err
	}
	a.closeCapture([2]int{adapter, port})
	return a.state, nil
}

func (a *nodeActor) resetConsole() (*replay.Node, error) {
	if a.rt.proxy != nil {
		if err := a.rt.proxy.Reset(); err != nil {
			return nil, Conflict("could not reset the console: %v", err)
		}
	}
	return a.state, nil
}

// effectFailed records that an effect of an appended event failed (it
// becomes a log.error notification), and returns the error for the client.
func (a *nodeActor) effectFailed(effect string, cause error) error {
	a.log.Error("effect failed", "effect", effect, "err", cause)
	if err := a.commit(events.EffectFailed{Effect: effect, Error: cause.Error()}); err != nil {
		a.log.Error("could not record a failed effect", "effect", effect, "err", err)
	}
	return fmt.Errorf("actors: node %s: could not %s: %w", a.ref.NodeID, effect, cause)
}
