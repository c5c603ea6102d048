package qemu

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/digitalocean/go-qemu/qmp/raw"

	"labd/actors/qemu/qmp"
)

// saveVMTimeout bounds SaveVM when its context has no deadline: savevm
// writes the guest's RAM into the disks and can take far longer than
// qmp.DefaultRunTimeout.
const saveVMTimeout = 2 * time.Minute

// Machine is what the QEMU node driver does to a running QEMU over QMP:
// pause, continue, power down, reset, quit, read the run state, set a
// NIC's link and save the machine's state. Each operation is go-qemu's
// generated command (qmp/raw) sent over our qmp.Client, and ends with its
// context or, if the context has no deadline, after qmp.DefaultRunTimeout
// (two minutes for SaveVM). Errors wrap the client's: *qmp.Error when
// QEMU refused the command (its class and description kept),
// context.DeadlineExceeded when QEMU did not answer in time, qmp.ErrClosed
// when the connection had ended.
//
// A Machine does not own its Client: the caller reads the Client's Events
// and closes it. It is safe for concurrent use.
type Machine struct {
	c *qmp.Client
}

// NewMachine returns the Machine that c controls.
func NewMachine(c *qmp.Client) *Machine { return &Machine{c: c} }

// monitor returns go-qemu's typed commands bound to ctx.
func (m *Machine) monitor(ctx context.Context) *raw.Monitor {
	return raw.NewMonitor(m.c.Monitor(ctx))
}

// Pause stops the guest CPUs (QMP stop; QEMU emits STOP if they ran).
func (m *Machine) Pause(ctx context.Context) error {
	return opErr("pause", m.monitor(ctx).Stop())
}

// Continue resumes the guest CPUs (QMP cont; QEMU emits RESUME if they
// were paused).
func (m *Machine) Continue(ctx context.Context) error {
	return opErr("continue", m.monitor(ctx).Cont())
}

// Powerdown presses the ACPI power button (QMP system_powerdown; QEMU
// emits POWERDOWN). The guest decides whether to shut down: wait for the
// process to exit, with a timeout, then Quit.
func (m *Machine) Powerdown(ctx context.Context) error {
	return opErr("power down", m.monitor(ctx).SystemPowerdown())
}

// Reset resets the machine (QMP system_reset; QEMU emits RESET, and the
// firmware may cause more RESET events of its own).
func (m *Machine) Reset(ctx context.Context) error {
	return opErr("reset", m.monitor(ctx).SystemReset())
}

// Quit makes QEMU exit (QMP quit; QEMU emits SHUTDOWN with reason
// host-qmp-quit and closes the connection). QEMU may exit before its reply
// is read, so a connection that QEMU ended counts as success, as it does
// if QEMU had already gone; after the Client's Close, Quit fails with
// qmp.ErrClosed.
func (m *Machine) Quit(ctx context.Context) error {
	err := m.monitor(ctx).Quit()
	if errors.Is(err, qmp.ErrClosed) && !errors.Is(err, qmp.ErrClientClosed) {
		return nil
	}
	return opErr("quit", err)
}

// Status returns the run state from query-status: status is running,
// paused, prelaunch, shutdown, suspended, guest-panicked, inmigrate,
// internal-error, io-error, watchdog, ... and running is true while the
// guest CPUs run. go-qemu knows the run states of its schema only: a state
// a later QEMU adds is an error.
func (m *Machine) Status(ctx context.Context) (status string, running bool, err error) {
	st, err := m.monitor(ctx).QueryStatus()
	if err != nil {
		return "", false, opErr("status", err)
	}
	return st.Status.String(), st.Running, nil
}

// SetLink sets the carrier of adapter's NIC up or down (QMP set_link on
// the netdev gns3-<adapter> that Args gives each adapter; setting a NIC's
// netdev sets the NIC too). A QEMU without that netdev refuses it with a
// *qmp.Error of class DeviceNotFound.
func (m *Machine) SetLink(ctx context.Context, adapter int, up bool) error {
	name := "gns3-" + strconv.Itoa(adapter)
	if err := m.monitor(ctx).SetLink(name, up); err != nil {
		return opErr("set the link of "+name, err)
	}
	return nil
}

// SaveVM saves the machine's state (RAM, devices and disks) as the
// internal snapshot name in every writable disk, by HMP savevm, which
// replaces a snapshot of the same name. Pause the machine first
// so that the state is consistent. HMP reports failures in its output,
// not as a QMP error, so any output is returned as an error. QEMU does
// nothing else while it saves: with no deadline on ctx, SaveVM waits up to
// two minutes. name must be non-empty, without spaces, quotes, backslashes
// or control characters, which HMP would parse.
func (m *Machine) SaveVM(ctx context.Context, name string) error {
	if !hmpWord(name) {
		return fmt.Errorf("qemu: save the VM state: bad snapshot name %q", name)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, saveVMTimeout)
		defer cancel()
	}
	out, err := m.monitor(ctx).HumanMonitorCommand("savevm "+name, nil)
	if err != nil {
		return opErr("save the VM state", err)
	}
	if out = strings.TrimSpace(out); out != "" {
		return fmt.Errorf("qemu: save the VM state as %s: %s", name, out)
	}
	return nil
}

// SetVNCPassword sets the password of the VNC console (QEMU uses its first
// 8 characters).
func (m *Machine) SetVNCPassword(ctx context.Context, password string) error {
	if err := m.monitor(ctx).ChangeVNCPassword(password); err != nil {
		return opErr("set the VNC password", err)
	}
	return nil
}

// hmpWord reports whether s reaches an HMP command as one plain argument.
func hmpWord(s string) bool {
	return s != "" && !strings.ContainsFunc(s, func(r rune) bool {
		return r <= ' ' || r == 0x7f || r == '"' || r == '\'' || r == '\\'
	})
}

// opErr names the Machine operation that failed.
func opErr(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("qemu: %s: %w", op, err)
}
