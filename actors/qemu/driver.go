package qemu

import (
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

	"labd/actors/kind"
	"labd/actors/qemu/qmp"
)

// The QEMU node driver: how a QEMU node's properties are settled, how its
// process is started, controlled over QMP, stopped by its on_close action,
// and how QEMU's own events become notices for the node actor.

// Kind is QEMU's node type.
const Kind = "qemu"

// LogName is the file QEMU's output goes to, in the node directory.
const LogName = "qemu.log"

// stopGrace is how long QEMU has to quit, then to end after SIGTERM.
const stopGrace = 3 * time.Second

// Driver runs QEMU nodes.
type Driver struct {
	// Images is the image store image properties are resolved in.
	Images Images
	// Finder finds the QEMU binaries a node may run.
	Finder Finder
	// Options decides which extra options a node may have.
	Options OptionPolicy
	// ShutdownTimeout bounds how long a stop with on_close
	// shutdown_signal waits for the guest to power off.
	ShutdownTimeout time.Duration
	// QMPDir holds the QMP sockets; empty means labd-qmp in the
	// temporary directory.
	QMPDir string
}

// Info describes the kind.
func (d Driver) Info() kind.Info {
	return kind.Info{Kind: Kind, Title: "QEMU", ConsoleTypes: ConsoleTypes,
		Caps: kind.CanPause | kind.CanPowerButton | kind.CanSave | kind.CanReset}
}

// Available reports whether a QEMU system emulator is installed.
func (d Driver) Available() error {
	if _, err := d.Finder.System("", ""); err != nil {
		return kind.Conflict("%v", err)
	}
	return nil
}

// configOf returns a node's configuration.
func configOf(n kind.Node) Config {
	c := Decode(n.Properties)
	c.ConsoleType = n.ConsoleType
	return c
}

// Ports are one port per adapter.
func (d Driver) Ports(props json.RawMessage) []kind.Port {
	c := Decode(props)
	ports := make([]kind.Port, c.Adapters)
	for i := range ports {
		ports[i] = kind.Port{Adapter: i}
	}
	return ports
}

// Prepare has nothing to write: QEMU's files are made at start.
func (d Driver) Prepare(*kind.Node, kind.Node, any) error { return nil }

// Settle applies a create's or an update's properties to the recorded ones
// and checks the result: the schema's rules, a binary that is QEMU, images
// that exist (their checksums computed), no adapter removed under a link.
func (d Driver) Settle(n kind.Node, patch any) (json.RawMessage, error) {
	base := Default()
	if n.Properties != nil {
		base = configOf(n)
	}
	p := Patch{}
	if pp, ok := patch.(*Patch); ok && pp != nil {
		p = *pp
	}
	if p.Platform != nil && p.QemuPath == nil {
		base.QemuPath = "" // a new platform names its own binary
	}
	c := p.Apply(base)
	c.ConsoleType = n.ConsoleType
	if err := errors.Join(c.Validate(), d.Options.Check(c.Options)); err != nil {
		return nil, kind.Invalid("%s", Message(err))
	}
	bin, err := d.Finder.System(c.QemuPath, c.Platform)
	if err != nil {
		return nil, &kind.Error{Class: kind.ErrInvalid, Msg: err.Error(), Err: err}
	}
	c.QemuPath, c.Platform = bin, PlatformOf(bin)
	for _, l := range n.Links {
		if l.Adapter >= c.Adapters {
			return nil, kind.Conflict("adapter %d has a link: remove it before lowering adapters to %d", l.Adapter, c.Adapters)
		}
	}
	imgs, err := d.images(n, c)
	if err != nil {
		return nil, err
	}
	sums := map[string]string{}
	for _, im := range imgs {
		// The image store caches checksums in sidecars: an unchanged
		// image is not read again, a replaced one is.
		if sums[im.prop], err = d.Images.MD5(im.path); err != nil {
			return nil, kind.Conflict("could not read the image %s: %v", im.name, err)
		}
	}
	c.MD5Sums = sums
	if len(sums) == 0 {
		c.MD5Sums = nil
	}
	return json.Marshal(c)
}

// Message words an ErrInvalid error for the client: its reasons without
// the sentinel's prefix, once per joined error.
func Message(err error) string {
	return strings.ReplaceAll(err.Error(), ErrInvalid.Error()+": ", "")
}

// image is an image property of a node, resolved.
type image struct{ prop, name, path string }

// images resolves the image properties a node sets, in ImageProperties'
// order.
func (d Driver) images(n kind.Node, c Config) ([]image, error) {
	var out []image
	for _, prop := range ImageProperties {
		name := c.Image(prop)
		if name == "" {
			continue
		}
		path, err := d.resolveImage(n, name)
		if err != nil {
			return nil, err
		}
		out = append(out, image{prop: prop, name: name, path: path})
	}
	return out, nil
}

// resolveImage finds an image a property names, in the image store or the
// project's directory.
func (d Driver) resolveImage(n kind.Node, name string) (string, error) {
	path, err := d.Images.Resolve(name, n.ProjectDir)
	var missing *MissingError
	switch {
	case errors.As(err, &missing):
		return "", &kind.Error{Class: kind.ErrConflict, Msg: missing.Error(), Err: missing}
	case errors.Is(err, ErrBadImagePath):
		return "", &kind.Error{Class: kind.ErrInvalid, Msg: err.Error(), Err: err}
	case err != nil:
		return "", kind.Conflict("could not find the image %s: %v", name, err)
	}
	return path, nil
}

// CheckCD implements kind.CDBooter: the image must be in the store (or
// the project's directory).
func (d Driver) CheckCD(n kind.Node, name string) error {
	_, err := d.resolveImage(n, name)
	return err
}

// img is the qemu-img that handles the node's disks, as the node's user.
func (d Driver) img(u *kind.User) (Img, error) {
	path, err := d.Finder.Img("")
	return Img{Path: path, Credential: u.Credential()}, err
}

func (d Driver) qmpPath(nodeID string) string {
	dir := d.QMPDir
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "labd-qmp")
	}
	return filepath.Join(dir, nodeID+".sock")
}

// Launch starts QEMU: the binary, the images (linked clones as overlays
// in the node directory), the saved state to resume from, the consoles
// and QMP socket, the command line; then QMP, the links' carrier, the
// process priority and CPU limit.
func (d Driver) Launch(h kind.Host, n kind.Node) (_ kind.Run, err error) {
	c := configOf(n)
	switch {
	case c.LegacyNetworking:
		return nil, kind.Conflict("legacy_networking needs the -net vlan syntax, which QEMU 2.9 and later do not have")
	case c.TPM:
		return nil, kind.Conflict("tpm needs swtpm, which labd does not run")
	case c.UEFI:
		return nil, kind.Conflict("uefi needs OVMF firmware, which labd does not provide")
	case c.CreateConfigDisk:
		return nil, kind.Conflict("create_config_disk is not supported by labd")
	}
	if c.CPUThrottling > 0 {
		if _, err := exec.LookPath("cpulimit"); err != nil {
			return nil, kind.Conflict("cpu_throttling needs cpulimit, which is not installed")
		}
	}
	bin, err := d.Finder.System(c.QemuPath, c.Platform)
	if err != nil {
		return nil, kind.Conflict("%v", err)
	}
	ts, err := h.AllocateTunnels(d.Ports(n.Properties))
	if err != nil {
		return nil, err
	}
	v := &vm{d: d, h: h, props: n.Properties, rec: kind.Record{Tunnels: ts, Control: d.qmpPath(n.ID)}}
	defer func() {
		if err != nil {
			v.Stop(kind.StopKill)
		}
	}()
	args, err := d.command(h, n, c, bin, v)
	if err != nil {
		return nil, err
	}
	// The bridges first: the node's first frames must find them.
	if v.bridges, err = h.OpenBridges("QEMU", n.ID, v.rec.Tunnels); err != nil {
		return nil, err
	}
	if v.proc, err = kind.StartProcess(bin, args, n.Dir, filepath.Join(n.Dir, LogName), h.User.Credential()); err != nil {
		return nil, kind.Conflict("could not start QEMU: %v", err)
	}
	v.rec.PID, v.rec.ProcStart = v.proc.PID(), v.proc.StartTime()
	v.rec.CommandLine = strings.Join(append([]string{bin}, args...), " ")
	if err := v.attach(c, n); err != nil {
		return nil, err
	}
	return v, nil
}

// command resolves the images and builds QEMU's command line.
func (d Driver) command(h kind.Host, n kind.Node, c Config, bin string, v *vm) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	imgs, err := d.images(n, c)
	if err != nil {
		return nil, err
	}
	images := map[string]string{}
	var disks []string
	for _, im := range imgs {
		prop, name, path := im.prop, im.name, im.path
		if disk := strings.HasSuffix(prop, "_disk_image"); disk {
			if c.LinkedClone {
				overlay := filepath.Join(n.Dir, strings.TrimSuffix(prop, "_image")+".qcow2")
				if _, err := os.Lstat(overlay); errors.Is(err, os.ErrNotExist) {
					img, err := d.img(h.User)
					if err != nil {
						return nil, kind.Conflict("linked clones need qemu-img: %v", err)
					}
					if err := Overlay(ctx, img, path, overlay); err != nil {
						return nil, kind.Conflict("could not create the linked clone of %s: %v", name, err)
					}
				}
				path = overlay
			} else if u := h.User; u != nil && !u.CanWrite(path) {
				return nil, kind.Conflict("%s is not a linked clone, so QEMU would write to the image %s, which the node user %s may not modify: use a linked clone", prop, name, u.Name)
			}
			disks = append(disks, path)
		}
		images[prop] = path
	}
	loadVM, err := d.savedState(ctx, h.User, c, disks, n.Restore)
	if err != nil {
		return nil, err
	}
	run := Run{
		Binary: bin, Name: n.Name, NodeID: n.ID, Images: images, LoadVM: loadVM, ConsoleHost: h.Addr,
		QMP: v.rec.Control, VNCPassword: n.ConsolePassword != "" && c.ConsoleType == "vnc",
	}
	if n.BootCD != "" {
		path, err := d.resolveImage(n, n.BootCD)
		if err != nil {
			return nil, err
		}
		images["cdrom_image"], run.BootCD, run.BootCDOnce = path, true, n.BootCDOnce
	}
	switch c.ConsoleType {
	case "telnet":
		if v.rec.InternalConsole, err = kind.FreeTCPPort(); err != nil {
			return nil, kind.Conflict("no internal console port: %v", err)
		}
		run.Console = v.rec.InternalConsole
	case "none":
	default: // QEMU serves VNC and SPICE on the public port itself
		run.Console = n.Console
	}
	for _, t := range v.rec.Tunnels {
		run.Tunnels = append(run.Tunnels, Tunnel{Node: t.NodePort, Bridge: t.BridgePort})
	}
	if err := qmpDir(filepath.Dir(run.QMP), h.User); err != nil {
		return nil, fmt.Errorf("qemu: QMP socket directory: %w", err)
	}
	_ = os.Remove(run.QMP) // a socket left by a killed run
	run.Options = d.Options
	run.Vars = map[string]string{
		"%vm-name%": n.Name, "%vm-id%": n.ID, "%project-id%": n.ProjectID,
		"%project-path%": n.ProjectDir,
		"%console-port%": strconv.Itoa(n.Console),
	}
	// The options are checked again here: they were recorded under the
	// policy of their day, and the variables are substituted now.
	args, err := Args(c, run)
	if err != nil {
		return nil, kind.Conflict("%s", Message(err))
	}
	return args, nil
}

// qmpDir makes the directory of QMP sockets, where QEMU (as the node user)
// creates its socket; only that user and root may enter it.
func qmpDir(dir string, u *kind.User) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if u != nil {
		if err := os.Lchown(dir, int(u.UID), int(u.GID)); err != nil {
			return err
		}
	}
	return os.Chmod(dir, 0o700)
}

// savedState reports whether a start resumes from the state a stop with
// on_close save_vm_state, or a suspend to disk (restore), saved. A saved
// state the node will not resume from is deleted, as GNS3 does, so that it
// is not resumed later by surprise. A restore that finds no saved state
// fails: a suspended machine is never booted afresh in its place.
func (d Driver) savedState(ctx context.Context, u *kind.User, c Config, disks []string, restore bool) (bool, error) {
	keep := restore || c.OnClose == "save_vm_state"
	if len(disks) == 0 {
		if restore {
			return false, kind.Conflict("the node has no disk to restore its saved state from")
		}
		return false, nil
	}
	img, err := d.img(u)
	if err != nil {
		if keep {
			return false, kind.Conflict("restoring a saved state needs qemu-img: %v", err)
		}
		return false, nil
	}
	found := false
	for _, disk := range disks {
		has, err := HasSnapshot(ctx, img, disk, SavedState)
		if err != nil {
			return false, kind.Conflict("could not read the disk %s: %v", disk, err)
		}
		if has && !keep {
			if err := DeleteSnapshot(ctx, img, disk, SavedState); err != nil {
				return false, kind.Conflict("could not delete the saved state of %s: %v", disk, err)
			}
			continue
		}
		found = found || has
	}
	if restore && !found {
		return false, kind.Conflict("no disk of the node holds its saved state")
	}
	return found, nil
}

// Adopt takes over a QEMU a labd before this one started: its bridges
// bound again on the recorded tunnels, QMP connected again.
func (d Driver) Adopt(h kind.Host, n kind.Node, rec kind.Record) (_ kind.Run, err error) {
	p, err := kind.AdoptProcess(rec.PID, rec.ProcStart, filepath.Join(n.Dir, LogName))
	if err != nil {
		return nil, err
	}
	// The properties it started with are not recorded apart: a reload
	// restarts it only after a change made from now on.
	v := &vm{d: d, h: h, rec: rec, proc: p, props: n.Properties}
	defer func() {
		if err != nil {
			v.Release()
		}
	}()
	if v.bridges, err = h.OpenBridges("QEMU", n.ID, rec.Tunnels); err != nil {
		return nil, err
	}
	if rec.Control != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		client, err := qmp.Dial(ctx, "unix", rec.Control)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("QMP: %w", err)
		}
		v.setQMP(client)
	}
	return v, nil
}

// vm is a running QEMU.
type vm struct {
	d       Driver
	h       kind.Host
	rec     kind.Record
	proc    *kind.Process
	bridges kind.Bridges
	qmp     *qmp.Client // nil until connected
	machine *Machine    // the commands, through go-qemu's qmp/raw
	notices chan kind.Notice
	// props are the properties the process was started with: a reload
	// after they changed restarts it instead of resetting the machine.
	props json.RawMessage
}

// setQMP takes the QMP connection, and turns QEMU's events into notices.
func (v *vm) setQMP(c *qmp.Client) {
	v.qmp, v.machine = c, NewMachine(c)
	v.notices = make(chan kind.Notice, 16)
	go func() {
		defer close(v.notices)
		for ev := range c.Events() {
			if n, ok := notice(ev); ok {
				v.notices <- n
			}
		}
	}()
}

// notice is what a QMP event tells the node actor: a pause or a resume
// nobody asked labd for (STOP, RESUME), a reset from inside the guest
// (RESET), a guest that powers off (SHUTDOWN). Events that labd's own
// requests caused find the state already changed, and are dropped there.
func notice(ev qmp.Event) (kind.Notice, bool) {
	var data struct {
		Guest bool `json:"guest"`
	}
	_ = json.Unmarshal(ev.Data, &data)
	switch ev.Name {
	case "STOP":
		return kind.NoticePaused, true
	case "RESUME":
		return kind.NoticeResumed, true
	case "RESET":
		return kind.NoticeReset, data.Guest
	case "SHUTDOWN":
		return kind.NoticePoweredOff, data.Guest
	}
	return 0, false
}

// attach connects to the started QEMU's QMP socket, puts down the links
// of unlinked or suspended ports, and applies the process priority.
func (v *vm) attach(c Config, n kind.Node) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := v.proc
	go func() {
		select {
		case <-p.Done(): // no use waiting for a dead process's socket
			cancel()
		case <-ctx.Done():
		}
	}()
	client, err := qmp.Dial(ctx, "unix", v.rec.Control)
	if err != nil {
		select {
		case <-p.Done():
		case <-time.After(time.Second): // let the log get QEMU's last words
		}
		return kind.Conflict("QEMU did not start: %v\n%s", err, kind.LogTail(p.Log(), 2048))
	}
	v.setQMP(client)
	if n.ConsolePassword != "" && c.ConsoleType == "vnc" {
		if err := v.machine.SetVNCPassword(ctx, n.ConsolePassword); err != nil {
			return kind.Conflict("could not set the VNC password: %v", err)
		}
	}
	if c.ReplicateNetworkConnectionState {
		for _, t := range v.rec.Tunnels {
			if l, ok := n.Linked(t.Port); !ok || !l.Up {
				if err := v.machine.SetLink(ctx, t.Adapter, false); err != nil {
					return kind.Conflict("could not put the link of adapter %d down: %v", t.Adapter, err)
				}
			}
		}
	}
	if nice, ok := niceness[c.ProcessPriority]; ok {
		if err := syscall.Setpriority(syscall.PRIO_PROCESS, p.PID(), nice); err != nil {
			v.h.Logger.Warn("could not set the process priority", "priority", c.ProcessPriority, "err", err)
		}
	}
	if c.CPUThrottling > 0 {
		// cpulimit --lazy ends with the process it limits.
		limiter := exec.Command("cpulimit", "--lazy", "--pid="+strconv.Itoa(p.PID()), "--limit="+strconv.Itoa(c.CPUThrottling))
		limiter.SysProcAttr = &syscall.SysProcAttr{Credential: v.h.User.Credential()}
		if err := limiter.Start(); err != nil {
			return kind.Conflict("could not start cpulimit: %v", err)
		}
		go func() { _ = limiter.Wait() }()
	}
	return nil
}

// niceness maps GNS3's process priorities to nice values (GNS3's renice
// arguments; "normal" leaves the priority alone).
var niceness = map[string]int{"realtime": -20, "very high": -15, "high": -5, "low": 5, "very low": 19}

func (v *vm) End(p kind.Port) kind.End    { return v.bridges.End(p) }
func (v *vm) Process() *kind.Process      { return v.proc }
func (v *vm) Record() kind.Record         { return v.rec }
func (v *vm) Notices() <-chan kind.Notice { return v.notices }
func (v *vm) Update(kind.Node) error      { return nil }

func (v *vm) Console() string { return kind.ConsoleAddr(v.rec.InternalConsole) }

// LinkChanged makes the NIC carrier follow its port: up when a NIO is
// attached and not suspended (GNS3's replicate_network_connection_state).
func (v *vm) LinkChanged(p kind.Port, up bool) {
	if v.qmp == nil || !Decode(v.props).ReplicateNetworkConnectionState {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := v.machine.SetLink(ctx, p.Adapter, up); err != nil {
		v.h.Logger.Warn("could not set the NIC's link state", "adapter", p.Adapter, "err", err)
	}
}

// Suspend pauses the machine (QMP stop).
func (v *vm) Suspend() error { return v.pauseOrContinue(true) }

// Resume continues it (QMP cont).
func (v *vm) Resume() error { return v.pauseOrContinue(false) }

func (v *vm) pauseOrContinue(pause bool) error {
	if v.qmp == nil {
		return kind.Conflict("QEMU's monitor is not connected")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	do, what := v.machine.Pause, "suspend"
	if !pause {
		do, what = v.machine.Continue, "resume"
	}
	if err := do(ctx); err != nil {
		return kind.Conflict("could not %s QEMU: %v", what, err)
	}
	return nil
}

// Reset resets the machine, unless its properties changed since it
// started: then GNS3's rule is a restart (ErrUnsupported).
func (v *vm) Reset(n kind.Node) error {
	if string(v.props) != string(n.Properties) || v.qmp == nil {
		return kind.ErrUnsupported
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := v.machine.Reset(ctx); err != nil {
		return kind.Conflict("could not reset QEMU node %s: %v", n.Name, err)
	}
	return nil
}

// Stop ends QEMU as the node's on_close says: power_off quits at once;
// shutdown_signal presses the ACPI power button and waits for the guest
// (ShutdownTimeout), unless closing; save_vm_state pauses the machine
// and saves its state into the disks first. Whatever is still running
// then is told to quit, then terminated, then killed.
func (v *vm) Stop(mode kind.StopMode) int {
	code := 0
	if v.proc != nil {
		switch mode {
		case kind.StopWait:
			<-v.proc.Done()
		case kind.StopKill:
			v.proc.Stop(stopGrace)
		default:
			v.shutdown(mode == kind.StopClosing)
		}
		code = v.proc.ExitCode()
	}
	v.closeQMP()
	_ = os.Remove(v.rec.Control)
	v.bridges.Close()
	v.h.ReleaseTunnels(v.rec.Tunnels)
	return code
}

func (v *vm) closeQMP() {
	if v.qmp != nil {
		_ = v.qmp.Close()
	}
}

func (v *vm) shutdown(closing bool) {
	p := v.proc
	exited := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-p.Done():
			return true
		case <-t.C:
			return false
		}
	}
	if v.qmp == nil {
		p.Stop(stopGrace)
		return
	}
	switch onClose := Decode(v.props).OnClose; {
	case onClose == "save_vm_state":
		if err := v.saveVMState(); err != nil {
			v.h.Logger.Error("could not save the VM state", "err", err)
		}
	case onClose == "shutdown_signal" && !closing:
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := v.machine.Powerdown(ctx)
		cancel()
		if err == nil && exited(v.d.ShutdownTimeout) {
			return
		}
		v.h.Logger.Warn("the guest did not power off in time; quitting QEMU", "timeout", v.d.ShutdownTimeout, "err", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), stopGrace)
	err := v.machine.Quit(ctx)
	cancel()
	if err == nil && exited(stopGrace) {
		return
	}
	p.Stop(stopGrace)
}

// saveVMState pauses the machine and saves its state as GNS3's snapshot.
func (v *vm) saveVMState() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := v.machine.Pause(ctx); err != nil {
		return err
	}
	return v.machine.SaveVM(ctx, SavedState)
}

// PressPowerButton presses the ACPI power button (QMP system_powerdown):
// the guest is asked to shut down, and QEMU exits once it has.
func (v *vm) PressPowerButton() error {
	if v.qmp == nil {
		return kind.Conflict("QEMU's monitor is not connected")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := v.machine.Powerdown(ctx); err != nil {
		return kind.Conflict("could not press the power button: %v", err)
	}
	return nil
}

// Save pauses the machine and saves its whole state into the node's
// disks (GNS3's snapshot name, which a Launch with Restore loads). On
// failure the machine is continued: nothing changed.
func (v *vm) Save() error {
	if v.qmp == nil {
		return kind.Conflict("QEMU's monitor is not connected")
	}
	if err := v.saveVMState(); err != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if cerr := v.machine.Continue(ctx); cerr != nil {
			v.h.Logger.Error("could not continue QEMU after a failed save", "err", cerr)
		}
		return kind.Conflict("could not save the machine's state: %v", err)
	}
	return nil
}

// Size returns a node's CPUs and memory.
func (d Driver) Size(props json.RawMessage) (cpus, ramMB int) {
	c := Decode(props)
	return c.CPUs, c.RAM
}

// Resize returns n's properties with a new size, settled.
func (d Driver) Resize(n kind.Node, cpus, ramMB int) (json.RawMessage, error) {
	return d.Settle(n, &Patch{CPUs: &cpus, RAM: &ramMB})
}

// Release leaves QEMU running for the next labd: its QMP socket stays.
func (v *vm) Release() {
	if v.proc != nil {
		v.proc.Release()
	}
	v.closeQMP()
	v.bridges.Close()
}

var (
	_ kind.Driver      = Driver{}
	_ kind.Sizer       = Driver{}
	_ kind.PowerButton = (*vm)(nil)
	_ kind.Saver       = (*vm)(nil)
)
