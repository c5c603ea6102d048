package actors

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"labd/actors/qemu"
	"labd/actors/qemu/qmp"
	"labd/events"
	"labd/replay"
)

// The QEMU node driver: how a QEMU node's properties are settled, how its
// process is started, controlled over QMP, stopped by its on_close action,
// and how QEMU's own events become the node's.

// qemuLog is the file QEMU's output goes to, in the node directory.
const qemuLog = "qemu.log"

// qemuRun is what a running QEMU node holds besides the common runtime.
type qemuRun struct {
	qmp     *qmp.Client
	qmpPath string
	// props are the properties the process was started with: a reload
	// after they changed restarts it instead of resetting the machine.
	props json.RawMessage
	// guestShutdown is set when QEMU reports that the guest powered
	// itself off; the exit that follows is recorded as such.
	guestShutdown bool
}

func (q *qemuRun) close() {
	if q.qmp != nil {
		_ = q.qmp.Close()
	}
	_ = os.Remove(q.qmpPath)
}

// qmpEvent is a QMP event of a node's QEMU, forwarded to its actor.
type qmpEvent struct {
	p  *process
	ev qmp.Event
}

// qemuConfigOf returns a QEMU node's configuration.
func qemuConfigOf(n *replay.Node) qemu.Config {
	c := qemu.Decode(n.Properties)
	c.ConsoleType = n.ConsoleType
	return c
}

// qemuSettle applies a create's or an update's properties to base and
// checks the result: the schema's rules, a binary that is QEMU, images that
// exist (their checksums computed), no adapter removed under a link. It
// returns the properties to record.
func (a *nodeActor) qemuSettle(base qemu.Config, p qemu.Patch, consoleType string, links []replay.Link) (json.RawMessage, error) {
	if p.Platform != nil && p.QemuPath == nil {
		base.QemuPath = "" // a new platform names its own binary
	}
	c := p.Apply(base)
	c.ConsoleType = consoleType
	if err := errors.Join(c.Validate(), a.cfg.QEMUOptions.Check(c.Options)); err != nil {
		return nil, Invalid("%s", qemuMessage(err))
	}
	bin, err := a.cfg.QEMU.System(c.QemuPath, c.Platform)
	if err != nil {
		return nil, &Error{Class: ErrInvalid, Msg: err.Error(), Err: err}
	}
	c.QemuPath, c.Platform = bin, qemu.PlatformOf(bin)
	for _, l := range links {
		if l.Adapter >= c.Adapters {
			return nil, Conflict("adapter %d has a link: remove it before lowering adapters to %d", l.Adapter, c.Adapters)
		}
	}
	sums := map[string]string{}
	for _, prop := range qemu.ImageProperties {
		name := c.Image(prop)
		if name == "" {
			continue
		}
		path, err := a.resolveImage(name)
		if err != nil {
			return nil, err
		}
		// The image store caches checksums in sidecars: an unchanged
		// image is not read again, a replaced one is.
		if sums[prop], err = a.cfg.Images.MD5(path); err != nil {
			return nil, Conflict("could not read the image %s: %v", name, err)
		}
	}
	c.MD5Sums = sums
	if len(sums) == 0 {
		c.MD5Sums = nil
	}
	return json.Marshal(c)
}

// qemuMessage words a qemu.ErrInvalid error for the client: its reasons
// without the sentinel's prefix, once per joined error.
func qemuMessage(err error) string {
	return strings.ReplaceAll(err.Error(), qemu.ErrInvalid.Error()+": ", "")
}

// resolveImage finds an image a property names, in the image store or the
// project's directory.
func (a *nodeActor) resolveImage(name string) (string, error) {
	path, err := a.cfg.Images.Resolve(name, filepath.Join(a.cfg.ProjectsDir, a.ref.ProjectID))
	var missing *qemu.MissingError
	switch {
	case errors.As(err, &missing):
		return "", &Error{Class: ErrConflict, Msg: missing.Error(), Err: missing}
	case errors.Is(err, qemu.ErrBadImagePath):
		return "", &Error{Class: ErrInvalid, Msg: err.Error(), Err: err}
	case err != nil:
		return "", Conflict("could not find the image %s: %v", name, err)
	}
	return path, nil
}

// qemuCommand is QEMU's part of a start: the binary, the images (linked
// clones as overlays in the node directory), the saved state to resume
// from, the consoles and QMP socket, and the command line.
func (a *nodeActor) qemuCommand(rt *runtime) (launchSpec, error) {
	c := qemuConfigOf(a.state)
	switch {
	case c.LegacyNetworking:
		return launchSpec{}, Conflict("legacy_networking needs the -net vlan syntax, which QEMU 2.9 and later do not have")
	case c.TPM:
		return launchSpec{}, Conflict("tpm needs swtpm, which labd does not run")
	case c.UEFI:
		return launchSpec{}, Conflict("uefi needs OVMF firmware, which labd does not provide")
	case c.CreateConfigDisk:
		return launchSpec{}, Conflict("create_config_disk is not supported by labd")
	}
	if c.CPUThrottling > 0 {
		if _, err := exec.LookPath("cpulimit"); err != nil {
			return launchSpec{}, Conflict("cpu_throttling needs cpulimit, which is not installed")
		}
	}
	bin, err := a.cfg.QEMU.System(c.QemuPath, c.Platform)
	if err != nil {
		return launchSpec{}, Conflict("%v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	images := map[string]string{}
	var disks []string
	for _, prop := range qemu.ImageProperties {
		name := c.Image(prop)
		if name == "" {
			continue
		}
		path, err := a.resolveImage(name)
		if err != nil {
			return launchSpec{}, err
		}
		if disk := strings.HasSuffix(prop, "_disk_image"); disk {
			if c.LinkedClone {
				overlay := filepath.Join(a.dir(), strings.TrimSuffix(prop, "_image")+".qcow2")
				if _, err := os.Lstat(overlay); errors.Is(err, os.ErrNotExist) {
					img, err := a.qemuImg()
					if err != nil {
						return launchSpec{}, Conflict("linked clones need qemu-img: %v", err)
					}
					if err := qemu.Overlay(ctx, img, path, overlay); err != nil {
						return launchSpec{}, Conflict("could not create the linked clone of %s: %v", name, err)
					}
				}
				path = overlay
			} else if u := a.cfg.NodeUser; u != nil && !u.canWrite(path) {
				return launchSpec{}, Conflict("%s is not a linked clone, so QEMU would write to the image %s, which the node user %s may not modify: use a linked clone", prop, name, u.Name)
			}
			disks = append(disks, path)
		}
		images[prop] = path
	}
	loadVM, err := a.savedState(ctx, c, disks)
	if err != nil {
		return launchSpec{}, err
	}
	run := qemu.Run{
		Binary: bin, Name: a.state.Name, NodeID: a.ref.NodeID, Images: images, LoadVM: loadVM, ConsoleHost: a.cfg.Host,
		QMP: filepath.Join(os.TempDir(), "labd-qmp", a.ref.NodeID+".sock"),
	}
	switch c.ConsoleType {
	case ConsoleTelnet:
		if rt.internalConsole, err = freeTCPPort(); err != nil {
			return launchSpec{}, Conflict("no internal console port: %v", err)
		}
		run.Console = rt.internalConsole
	case ConsoleNone:
	default: // QEMU serves VNC and SPICE on the public port itself
		run.Console = a.state.Console
	}
	for _, t := range rt.tunnels {
		run.Tunnels = append(run.Tunnels, qemu.Tunnel{Node: t.NodePort, Bridge: t.BridgePort})
	}
	if err := a.qmpDir(filepath.Dir(run.QMP)); err != nil {
		return launchSpec{}, fmt.Errorf("actors: QMP socket directory: %w", err)
	}
	_ = os.Remove(run.QMP) // a socket left by a killed run
	run.Options = a.cfg.QEMUOptions
	run.Vars = map[string]string{
		"%vm-name%": a.state.Name, "%vm-id%": a.ref.NodeID, "%project-id%": a.ref.ProjectID,
		"%project-path%": filepath.Join(a.cfg.ProjectsDir, a.ref.ProjectID),
		"%console-port%": strconv.Itoa(a.state.Console),
	}
	// The options are checked again here: they were recorded under the
	// policy of their day, and the variables are substituted now.
	args, err := qemu.Args(c, run)
	if err != nil {
		return launchSpec{}, Conflict("%s", qemuMessage(err))
	}
	rt.qemu = &qemuRun{qmpPath: run.QMP, props: a.state.Properties}
	return launchSpec{bin: bin, args: args, log: qemuLog}, nil
}

// qemuImg is the qemu-img that handles the node's disks, as the node's
// user.
func (a *nodeActor) qemuImg() (qemu.Img, error) {
	path, err := a.cfg.QEMU.Img("")
	return qemu.Img{Path: path, Credential: a.cfg.NodeUser.credential()}, err
}

// qmpDir makes the directory of QMP sockets, where QEMU (as the node user)
// creates its socket; only that user and root may enter it.
func (a *nodeActor) qmpDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if u := a.cfg.NodeUser; u != nil {
		if err := os.Lchown(dir, int(u.UID), int(u.GID)); err != nil {
			return err
		}
	}
	return os.Chmod(dir, 0o700)
}

// savedState reports whether a start resumes from the state a stop with
// on_close save_vm_state saved. A saved state the node will not resume
// from is deleted, as GNS3 does, so that it is not resumed later by
// surprise.
func (a *nodeActor) savedState(ctx context.Context, c qemu.Config, disks []string) (bool, error) {
	if len(disks) == 0 {
		return false, nil
	}
	img, err := a.qemuImg()
	if err != nil {
		if c.OnClose == "save_vm_state" {
			return false, Conflict("save_vm_state needs qemu-img: %v", err)
		}
		return false, nil
	}
	found := false
	for _, d := range disks {
		has, err := qemu.HasSnapshot(ctx, img, d, qemu.SavedState)
		if err != nil {
			return false, Conflict("could not read the disk %s: %v", d, err)
		}
		if has && c.OnClose != "save_vm_state" {
			if err := qemu.DeleteSnapshot(ctx, img, d, qemu.SavedState); err != nil {
				return false, Conflict("could not delete the saved state of %s: %v", d, err)
			}
			continue
		}
		found = found || has
	}
	return found, nil
}

// qemuAttach connects to a started QEMU's QMP socket, puts down the links
// of unlinked or suspended ports, and applies the process priority.
func (a *nodeActor) qemuAttach(rt *runtime) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := rt.proc
	go func() {
		select {
		case <-p.done: // no use waiting for a dead process's socket
			cancel()
		case <-ctx.Done():
		}
	}()
	client, err := qmp.Dial(ctx, "unix", rt.qemu.qmpPath)
	if err != nil {
		select {
		case <-p.done:
		case <-time.After(time.Second): // let the log get QEMU's last words
		}
		return Conflict("QEMU did not start: %v\n%s", err, logTail(p.log, 2048))
	}
	rt.qemu.qmp = client
	c := qemuConfigOf(a.state)
	if c.ReplicateNetworkConnectionState {
		for _, t := range rt.tunnels {
			link, ok := a.state.Link(t.Adapter, t.Port)
			if !ok || link.NIO.Suspend {
				if err := setLink(ctx, client, t.Adapter, false); err != nil {
					return Conflict("could not put the link of adapter %d down: %v", t.Adapter, err)
				}
			}
		}
	}
	if nice, ok := niceness[c.ProcessPriority]; ok {
		if err := syscall.Setpriority(syscall.PRIO_PROCESS, p.pid, nice); err != nil {
			a.log.Warn("could not set the process priority", "priority", c.ProcessPriority, "err", err)
		}
	}
	if c.CPUThrottling > 0 {
		// cpulimit --lazy ends with the process it limits.
		limiter := exec.Command("cpulimit", "--lazy", "--pid="+strconv.Itoa(p.pid), "--limit="+strconv.Itoa(c.CPUThrottling))
		limiter.SysProcAttr = &syscall.SysProcAttr{Credential: a.cfg.NodeUser.credential()}
		if err := limiter.Start(); err != nil {
			return Conflict("could not start cpulimit: %v", err)
		}
		go func() { _ = limiter.Wait() }()
	}
	return nil
}

// niceness maps GNS3's process priorities to nice values (GNS3's renice
// arguments; "normal" leaves the priority alone).
var niceness = map[string]int{"realtime": -20, "very high": -15, "high": -5, "low": 5, "very low": 19}

// setLink sets the carrier of adapter n's NIC (GNS3's set_link gns3-<n>).
func setLink(ctx context.Context, c *qmp.Client, adapter int, up bool) error {
	return c.Execute(ctx, "set_link", map[string]any{"name": "gns3-" + strconv.Itoa(adapter), "up": up}, nil)
}

// qemuLinkChanged makes a running QEMU node's NIC carrier follow its port:
// up when a NIO is attached and not suspended (GNS3's
// replicate_network_connection_state).
func (a *nodeActor) qemuLinkChanged(adapter, port int) {
	if a.rt.qemu == nil || a.rt.qemu.qmp == nil || !qemuConfigOf(a.state).ReplicateNetworkConnectionState {
		return
	}
	link, ok := a.state.Link(adapter, port)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := setLink(ctx, a.rt.qemu.qmp, adapter, ok && !link.NIO.Suspend); err != nil {
		a.log.Warn("could not set the NIC's link state", "adapter", adapter, "err", err)
	}
}

// qemuStop ends QEMU as the node's on_close says: power_off quits at once;
// shutdown_signal presses the ACPI power button and waits for the guest
// (QEMUShutdownTimeout), unless closing; save_vm_state pauses the machine
// and saves its state into the disks first. Whatever is still running
// then is told to quit, then terminated, then killed.
func (a *nodeActor) qemuStop(closing bool) {
	p, q := a.rt.proc, a.rt.qemu
	exited := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-p.done:
			return true
		case <-t.C:
			return false
		}
	}
	if q.qmp == nil {
		p.stop(stopGrace)
		return
	}
	switch onClose := qemuConfigOf(a.state).OnClose; {
	case onClose == "save_vm_state":
		if err := a.saveVMState(q.qmp); err != nil {
			a.log.Error("could not save the VM state", "err", err)
		}
	case onClose == "shutdown_signal" && !closing:
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := q.qmp.SystemPowerdown(ctx)
		cancel()
		if err == nil && exited(a.cfg.QEMUShutdownTimeout) {
			return
		}
		a.log.Warn("the guest did not power off in time; quitting QEMU", "timeout", a.cfg.QEMUShutdownTimeout, "err", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), stopGrace)
	err := q.qmp.Quit(ctx)
	cancel()
	if err == nil && exited(stopGrace) {
		return
	}
	p.stop(stopGrace)
}

// saveVMState pauses the machine and saves its state as GNS3's snapshot.
func (a *nodeActor) saveVMState(c *qmp.Client) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := c.Stop(ctx); err != nil {
		return err
	}
	// HMP reports errors in its output, and says nothing on success.
	out, err := c.HumanMonitorCommand(ctx, "savevm "+qemu.SavedState)
	if err == nil && strings.TrimSpace(out) != "" {
		err = errors.New(strings.TrimSpace(out))
	}
	return err
}

// suspend pauses a running QEMU node. VPCS cannot be suspended: GNS3
// answers 204 and does nothing, and so does labd; so it does for a node
// that is not running.
func (a *nodeActor) suspend() (*replay.Node, error) {
	if a.rt.qemu == nil || a.state.Status != replay.NodeStarted {
		return a.state, nil
	}
	return a.pauseOrContinue(true)
}

// resume continues a suspended QEMU node.
func (a *nodeActor) resume() (*replay.Node, error) {
	if a.rt.qemu == nil || a.state.Status != replay.NodeSuspended {
		return a.state, nil
	}
	return a.pauseOrContinue(false)
}

// pauseOrContinue runs QMP stop or cont, then records it; if the record
// fails, the machine is put back as the history says.
func (a *nodeActor) pauseOrContinue(pause bool) (*replay.Node, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := a.rt.qemu.qmp
	do, undo, what := c.Stop, c.Cont, "suspend"
	var ev events.Data = events.NodeSuspended{Cause: events.CauseRequested}
	if !pause {
		do, undo, what = c.Cont, c.Stop, "resume"
		ev = events.NodeResumed{Cause: events.CauseRequested}
	}
	if err := do(ctx); err != nil {
		return nil, Conflict("could not %s QEMU node %s: %v", what, a.state.Name, err)
	}
	if err := a.commit(ev); err != nil {
		if uerr := undo(ctx); uerr != nil {
			a.log.Error("could not undo an unrecorded "+what, "err", uerr)
		}
		return nil, err
	}
	return a.state, nil
}

// qemuReload resets a running QEMU node's machine, or restarts its process
// when its properties changed since it started (GNS3's rule).
func (a *nodeActor) qemuReload() (*replay.Node, error) {
	if !bytes.Equal(a.rt.qemu.props, a.state.Properties) {
		if _, err := a.stop(); err != nil {
			return nil, err
		}
		return a.start()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.rt.qemu.qmp.SystemReset(ctx); err != nil {
		return nil, Conflict("could not reset QEMU node %s: %v", a.state.Name, err)
	}
	if err := a.commit(events.NodeReset{Cause: events.CauseRequested}); err != nil {
		return nil, err
	}
	return a.state, nil
}

// qmpEvent turns what QEMU reports on its own into the node's events: a
// pause or a resume nobody asked labd for (STOP, RESUME), a reset from
// inside the guest (RESET), a guest that powers off (SHUTDOWN: the exit
// that follows is recorded as guest_shutdown). Events that labd's own
// requests caused find the state already changed, and are dropped.
func (a *nodeActor) qmpEvent(m qmpEvent) {
	if a.rt.proc != m.p || a.rt.qemu == nil {
		return // a process already stopped
	}
	var data struct {
		Guest bool `json:"guest"`
	}
	_ = json.Unmarshal(m.ev.Data, &data)
	var ev events.Data
	switch m.ev.Name {
	case "STOP":
		if a.state.Status == replay.NodeStarted {
			ev = events.NodeSuspended{Cause: events.CauseGuest}
		}
	case "RESUME":
		if a.state.Status == replay.NodeSuspended {
			ev = events.NodeResumed{Cause: events.CauseGuest}
		}
	case "RESET":
		if data.Guest {
			ev = events.NodeReset{Cause: events.CauseGuest}
		}
	case "SHUTDOWN":
		if data.Guest {
			a.rt.qemu.guestShutdown = true
		}
	}
	if ev == nil {
		return
	}
	if err := a.commit(ev); err != nil {
		a.log.Error("could not record a QEMU event", "event", m.ev.Name, "err", err)
	}
}
