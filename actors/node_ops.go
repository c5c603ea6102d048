package actors

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"labd/actors/kind"
	"labd/events"
	"labd/nio"
	"labd/nio/pcap"
	"labd/replay"
)

// ports are the node's ports, as its driver has them.
func (a *nodeActor) ports() []kind.Port { return a.drv.Ports(a.state.Properties) }

// checkPort refuses an adapter or port the node does not have, in GNS3's
// words.
func (a *nodeActor) checkPort(adapter, port int) error {
	ports := a.ports()
	if slices.Contains(ports, kind.Port{Adapter: adapter, Port: port}) {
		return nil
	}
	for _, p := range ports {
		if p.Adapter == adapter {
			return Conflict("Port %d doesn't exist on adapter %d", port, adapter)
		}
	}
	return Conflict("Adapter %d doesn't exist on %s node %s", adapter, a.drv.Info().Title, a.state.Name)
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
	info := a.drv.Info()
	if err := a.drv.Available(); err != nil {
		return nil, err
	}
	consoleType := c.ConsoleType
	if consoleType == "" && info.HasConsole() {
		consoleType = info.ConsoleTypes[0]
	}
	if err := checkConsoleType(info, consoleType); err != nil {
		return nil, err
	}
	n := kind.Node{ProjectID: a.ref.ProjectID, ID: a.ref.NodeID, Name: c.Name, ConsoleType: consoleType, MACID: c.macID,
		ProjectDir: projectDir(a.cfg, a.ref.ProjectID)}
	props, err := a.drv.Settle(n, c.Props)
	if err != nil {
		return nil, err
	}
	port := 0
	if consoleType != ConsoleNone && consoleType != "" {
		want := 0
		if c.Console != nil {
			want = *c.Console
		}
		if port, err = a.takeConsole(want, consoleType); err != nil {
			return nil, err
		}
	}
	password := ""
	if c.SecureConsole && consoleType == ConsoleVNC {
		password = consolePassword()
	}
	if err := a.commit(events.NodeCreated{Kind: c.Kind, Name: c.Name, Console: port, ConsoleType: consoleType, MACID: c.macID,
		Properties: props, ConsolePassword: password, Metadata: c.Metadata}); err != nil {
		if port != 0 {
			a.cfg.ConsolePorts.Release(port)
		}
		return nil, err
	}
	if err := a.cfg.NodeUser.MakeDir(a.dir()); err != nil {
		return a.state, a.effectFailed("create the node directory", err)
	}
	if err := a.drv.Prepare(nil, a.view(), c.Props); err != nil {
		return a.state, a.effectFailed("write the node's files", err)
	}
	if info.AutoStart {
		return a.start()
	}
	return a.state, nil
}

// consolePassword returns a new VNC password: 8 characters, all VNC's
// authentication reads.
func consolePassword() string {
	const alphabet = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	b := make([]byte, 8)
	_, _ = rand.Read(b) // crypto/rand's Read does not fail
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// checkConsoleType refuses a console type the kind does not have.
func checkConsoleType(info kind.Info, consoleType string) error {
	if consoleType == "" && !info.HasConsole() || slices.Contains(info.ConsoleTypes, consoleType) {
		return nil
	}
	if !info.HasConsole() {
		return Invalid("a %s node has no console", info.Title)
	}
	return Invalid("console_type %q is not one of %s", consoleType, strings.Join(info.ConsoleTypes, ", "))
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
		if err := checkConsoleType(a.drv.Info(), *c.ConsoleType); err != nil {
			return nil, err
		}
		next.ConsoleType = *c.ConsoleType
	}
	before := a.view()
	n := before
	n.Name, n.ConsoleType = next.Name, next.ConsoleType
	if c.Props != nil || next.ConsoleType != old.ConsoleType {
		props, err := a.drv.Settle(n, c.Props)
		if err != nil {
			return nil, err
		}
		if props != nil && !bytes.Equal(props, old.Properties) {
			next.Properties = props
		}
	}
	newPort := 0 // a port reserved by this update
	switch {
	case next.ConsoleType == ConsoleNone || next.ConsoleType == "":
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
	if next.Name == old.Name && next.Console == old.Console && next.ConsoleType == old.ConsoleType && next.Properties == nil {
		if c.Props != nil {
			// Nothing recorded changes, but the files may (a new startup
			// script).
			if err := a.cfg.NodeUser.MakeDir(a.dir()); err != nil {
				return nil, fmt.Errorf("actors: node directory: %w", err)
			}
			if err := a.drv.Prepare(&before, a.view(), c.Props); err != nil {
				return nil, fmt.Errorf("actors: node files: %w", err)
			}
		}
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
	if err := a.cfg.NodeUser.MakeDir(a.dir()); err != nil {
		return a.state, a.effectFailed("create the node directory", err)
	}
	if err := a.drv.Prepare(&before, a.view(), c.Props); err != nil {
		return a.state, a.effectFailed("update the node's files", err)
	}
	if a.rt.run != nil && next.Properties != nil {
		if err := a.rt.run.Update(a.view()); err != nil {
			return a.state, a.effectFailed("apply the new properties", err)
		}
	}
	if a.rt.run != nil && (old.Console != next.Console || old.ConsoleType != next.ConsoleType) {
		if err := a.restartConsole(); err != nil {
			return a.state, a.effectFailed("move the console", err)
		}
	}
	return a.state, nil
}

// remove deletes (NodeDeleted) or closes (NodeClosed) the node, recording
// before first (the end of the delete's operation).
func (a *nodeActor) remove(d events.Data, before ...events.Data) error {
	if a.rt.run != nil {
		code := a.teardown(kind.StopClosing)
		if err := a.commit(events.NodeStopped{Reason: events.StopRequested, ExitCode: &code}); err != nil {
			return err
		}
	}
	a.closeCaptures()
	console := a.state.Console
	dir := a.dir()
	if err := a.commit(append(before, d)...); err != nil {
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
	if a.rt.run != nil {
		// GNS3 resumes a suspended node it is asked to start.
		return a.resume()
	}
	// A machine saved to disk is restored.
	started, err := a.launchMode(a.state.Status == replay.NodeSuspended)
	if err != nil {
		if cerr := a.commit(events.NodeStartFailed{Error: err.Error()}); cerr != nil {
			a.log.Error("could not record a failed start", "err", cerr)
		}
		return nil, err
	}
	if err := a.commit(started); err != nil {
		// Unrecorded, it must not run: the history never lacks a process.
		a.teardown(kind.StopKill)
		return nil, err
	}
	return a.state, nil
}

func (a *nodeActor) stop() (*replay.Node, error) {
	if a.rt.run == nil || a.drv.Info().AlwaysOn {
		return a.state, nil
	}
	code := a.teardown(kind.StopRequest)
	if err := a.commit(events.NodeStopped{Reason: events.StopRequested, ExitCode: &code}); err != nil {
		return nil, err
	}
	return a.state, nil
}

// reload resets a running node's machine when its kind can, and restarts
// it otherwise.
func (a *nodeActor) reload() (*replay.Node, error) {
	if a.rt.run != nil {
		switch err := a.rt.run.Reset(a.view()); {
		case err == nil:
			if err := a.commit(events.NodeReset{Cause: events.CauseRequested}); err != nil {
				return nil, err
			}
			return a.state, nil
		case !errors.Is(err, kind.ErrUnsupported):
			return nil, err
		}
	}
	if a.drv.Info().AlwaysOn {
		return a.state, nil
	}
	if _, err := a.stop(); err != nil {
		return nil, err
	}
	return a.start()
}

// suspend pauses a running node. A kind that cannot be suspended (VPCS)
// is left as it is and the answer is a success, as in GNS3; so it is for
// a node that is not running.
func (a *nodeActor) suspend() (*replay.Node, error) {
	if a.rt.run == nil || a.state.Status != replay.NodeRunning || a.drv.Info().AlwaysOn {
		return a.state, nil
	}
	return a.pauseOrContinue(true)
}

// resume continues a suspended node, or restores one saved to disk.
func (a *nodeActor) resume() (*replay.Node, error) {
	if a.rt.run == nil && a.state.Status == replay.NodeSuspended {
		return a.start()
	}
	if a.rt.run == nil || a.state.Status != replay.NodePaused {
		return a.state, nil
	}
	return a.pauseOrContinue(false)
}

// pauseOrContinue pauses or continues the run, then records it; if the
// record fails, the run is put back as the history says.
func (a *nodeActor) pauseOrContinue(pause bool) (*replay.Node, error) {
	run := a.rt.run
	do, undo, what := run.Suspend, run.Resume, "suspend"
	var ev events.Data = events.NodeSuspended{Cause: events.CauseRequested}
	if !pause {
		do, undo, what = a.continueRun, run.Suspend, "resume"
		ev = events.NodeResumed{Cause: events.CauseRequested}
	}
	switch err := do(); {
	case errors.Is(err, kind.ErrUnsupported):
		return a.state, nil
	case err != nil:
		return nil, fmt.Errorf("actors: %s node %s: %w", what, a.state.Name, err)
	}
	if err := a.commit(ev); err != nil {
		if uerr := undo(); uerr != nil {
			a.log.Error("could not undo an unrecorded "+what, "err", uerr)
		}
		return nil, err
	}
	return a.state, nil
}

// exited handles the end of a process labd did not ask for.
func (a *nodeActor) exited(run kind.Run) {
	if a.rt.run != run {
		return // a run already stopped on request
	}
	if off := a.rt.off; off != nil {
		a.offEnded(off.id, false) // what a graceful wait waited for
		return
	}
	guest := a.rt.guestOff
	log := run.Process().Log()
	code := a.teardown(kind.StopWait)
	reason, msg := events.StopExited, kind.DescribeExit(a.drv.Info().Title, code, kind.LogTail(log, 2048))
	if guest {
		reason, msg = events.StopGuestShutdown, fmt.Sprintf("The guest of %s powered itself off; %s exited with code %d", a.state.Name, a.drv.Info().Title, code)
		a.log.Info("the guest powered off", "exit_code", code)
	} else {
		a.log.Warn("node process exited unexpectedly", "exit_code", code)
	}
	if err := a.commit(events.NodeStopped{Reason: reason, ExitCode: &code, Message: msg}); err != nil {
		a.log.Error("could not record the node's exit", "err", err)
	}
}

// notice turns what a run reports on its own into the node's events: a
// pause or a resume nobody asked labd for, a reset from inside the guest,
// a guest that powers off (the exit that follows is recorded as
// guest_shutdown). Notices that labd's own requests caused find the state
// already changed, and are dropped.
func (a *nodeActor) notice(m runNotice) {
	if a.rt.run != m.run {
		return // a run already stopped
	}
	var ev events.Data
	switch m.notice {
	case kind.NoticePaused:
		if a.state.Status == replay.NodeRunning {
			ev = events.NodeSuspended{Cause: events.CauseGuest}
		}
	case kind.NoticeResumed:
		if a.state.Status == replay.NodePaused {
			ev = events.NodeResumed{Cause: events.CauseGuest}
		}
	case kind.NoticeReset:
		ev = events.NodeReset{Cause: events.CauseGuest}
	case kind.NoticePoweredOff:
		a.rt.guestOff = true
	}
	if ev == nil {
		return
	}
	if err := a.commit(ev); err != nil {
		a.log.Error("could not record what the node reported", "notice", m.notice, "err", err)
	}
}

// copyFrom copies another node's files (but its logs) into this node's
// directory. Both directories may belong to the node user, so both are
// read and written through an os.Root: no link there leads labd elsewhere.
func (a *nodeActor) copyFrom(from string) (*replay.Node, error) {
	if err := a.copyDir(from); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("actors: duplicate node files: %w", err)
	}
	if err := a.cfg.NodeUser.MakeDir(a.dir()); err != nil {
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
	p := kind.Port{Adapter: adapter, Port: port}
	if e := a.end(p); e != nil {
		if err := a.attach(e, n, filters); err != nil {
			return nil, err
		}
	}
	if err := a.commit(events.NIOAdded{Adapter: adapter, Port: port, NIO: n}); err != nil {
		if e := a.end(p); e != nil {
			e.Detach()
		}
		return nil, err
	}
	a.linkChanged(p)
	return a.state, nil
}

// replaceNIO handles a NIO added where one is already attached: GNS3
// replaces it.
func (a *nodeActor) replaceNIO(old replay.Link, n events.NIO, filters *nio.Filters) (*replay.Node, error) {
	p := kind.Port{Adapter: old.Adapter, Port: old.Port}
	br := a.end(p)
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
		a.linkChanged(p)
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
	p := kind.Port{Adapter: adapter, Port: port}
	a.closeCapture(p)
	if e := a.end(p); e != nil {
		e.Detach()
	}
	a.linkChanged(p)
	return a.state, nil
}

// linkChanged tells a running node that a port's link came up or went
// down (attached, removed, suspended or not).
func (a *nodeActor) linkChanged(p kind.Port) {
	if a.rt.run == nil {
		return
	}
	link, ok := a.state.Link(p.Adapter, p.Port)
	a.rt.run.LinkChanged(p, ok && !link.NIO.Suspend)
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
	key := kind.Port{Adapter: c.Adapter, Port: c.Port}
	if a.rt.captures == nil {
		a.rt.captures = map[kind.Port]*pcap.Capture{}
	}
	a.rt.captures[key] = cp
	if e := a.end(key); e != nil {
		e.SetCapture(cp)
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
	a.closeCapture(kind.Port{Adapter: adapter, Port: port})
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
