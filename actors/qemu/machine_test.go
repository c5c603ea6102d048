package qemu

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"labd/actors/qemu/qmp"
)

// machineTimeout bounds every wait of the Machine tests; they end as soon
// as their condition holds.
const machineTimeout = 10 * time.Second

// machineQEMU is a real qemu-system-x86_64 serving QMP, and our client.
type machineQEMU struct {
	cmd *exec.Cmd
	c   *qmp.Client
}

// startMachine starts QEMU with args in its own process group, connects
// to its QMP socket, and kills the group when the test ends. The socket
// lives in a short directory: unix socket paths are limited to 107 bytes.
func startMachine(t *testing.T, args ...string) *machineQEMU {
	t.Helper()
	needQEMU(t)
	dir, err := os.MkdirTemp("", "machine")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "qmp.sock")
	cmd := exec.Command("qemu-system-x86_64", append(args, "-qmp", "unix:"+sock+",server=on,wait=off")...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start qemu: %v", err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
		if t.Failed() && stderr.Len() > 0 {
			t.Logf("qemu stderr:\n%s", stderr.String())
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), machineTimeout)
	defer cancel()
	c, err := qmp.Dial(ctx, "unix", sock)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return &machineQEMU{cmd: cmd, c: c}
}

// nextQMPEvent returns the client's next event called name, skipping
// others.
func nextQMPEvent(t *testing.T, c *qmp.Client, name string) qmp.Event {
	t.Helper()
	timeout := time.After(machineTimeout)
	for {
		select {
		case ev, ok := <-c.Events():
			if !ok {
				t.Fatalf("events closed while waiting for %s", name)
			}
			if ev.Name == name {
				return ev
			}
		case <-timeout:
			t.Fatalf("no %s event", name)
		}
	}
}

// TestMachine runs every Machine operation against a PC with a qcow2 disk
// and adapter 0's NIC, as the QEMU driver starts one, and checks QEMU's
// answer and events.
func TestMachine(t *testing.T) {
	disk := filepath.Join(t.TempDir(), "disk.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-f", "qcow2", disk, "16M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v\n%s", err, out)
	}
	q := startMachine(t, "-M", "pc,accel=kvm:tcg", "-nodefaults", "-display", "none", "-m", "32",
		"-drive", "file="+disk+",if=none,id=disk0,format=qcow2",
		"-device", "e1000,netdev=gns3-0",
		"-netdev", "socket,id=gns3-0,udp=127.0.0.1:9,localaddr=127.0.0.1:0")
	m := NewMachine(q.c)
	ctx, cancel := context.WithTimeout(context.Background(), machineTimeout)
	defer cancel()
	status := func(want string, wantRunning bool) {
		t.Helper()
		if s, running, err := m.Status(ctx); err != nil || s != want || running != wantRunning {
			t.Fatalf("Status = %q, %v, %v; want %q, %v", s, running, err, want, wantRunning)
		}
	}

	status("running", true)
	if err := m.Pause(ctx); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	nextQMPEvent(t, q.c, "STOP")
	status("paused", false)
	if err := m.Continue(ctx); err != nil {
		t.Fatalf("Continue: %v", err)
	}
	nextQMPEvent(t, q.c, "RESUME")
	status("running", true)

	for _, up := range []bool{false, true} {
		if err := m.SetLink(ctx, 0, up); err != nil {
			t.Fatalf("SetLink(0, %v): %v", up, err)
		}
	}
	err := m.SetLink(ctx, 1, false)
	var qerr *qmp.Error
	if !errors.As(err, &qerr) || qerr.Class != "DeviceNotFound" || !strings.Contains(err.Error(), "gns3-1") {
		t.Fatalf("SetLink(1) = %v, want *qmp.Error DeviceNotFound naming gns3-1", err)
	}

	// As save_vm_state does: pause, then save; twice, since savevm
	// replaces a snapshot of the same name.
	if err := m.Pause(ctx); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	for range 2 {
		if err := m.SaveVM(ctx, SavedState); err != nil {
			t.Fatalf("SaveVM: %v", err)
		}
	}
	out, err := exec.Command("qemu-img", "snapshot", "-U", "-l", disk).CombinedOutput()
	if err != nil || strings.Count(string(out), SavedState) != 1 {
		t.Fatalf("qemu-img snapshot -l: %v, want %s once:\n%s", err, SavedState, out)
	}
	for _, bad := range []string{"", "two words", `quo"te`, "new\nline", `back\slash`} {
		if err := m.SaveVM(ctx, bad); err == nil {
			t.Fatalf("SaveVM(%q) accepted", bad)
		}
	}
	if err := m.Continue(ctx); err != nil {
		t.Fatalf("Continue: %v", err)
	}

	if err := m.Reset(ctx); err != nil {
		t.Fatalf("Reset: %v", err)
	}
	if ev := nextQMPEvent(t, q.c, "RESET"); !strings.Contains(string(ev.Data), `"host-qmp-system-reset"`) {
		t.Fatalf("RESET data %s, want reason host-qmp-system-reset", ev.Data)
	}
	if err := m.Powerdown(ctx); err != nil {
		t.Fatalf("Powerdown: %v", err)
	}
	nextQMPEvent(t, q.c, "POWERDOWN")

	if err := m.Quit(ctx); err != nil {
		t.Fatalf("Quit: %v", err)
	}
	if ev := nextQMPEvent(t, q.c, "SHUTDOWN"); !strings.Contains(string(ev.Data), `"host-qmp-quit"`) {
		t.Fatalf("SHUTDOWN data %s, want reason host-qmp-quit", ev.Data)
	}
	if err := q.cmd.Wait(); err != nil {
		t.Fatalf("qemu exit: %v", err)
	}
	<-q.c.Done()
	if err := m.Pause(ctx); !errors.Is(err, qmp.ErrClosed) {
		t.Fatalf("Pause after Quit = %v, want qmp.ErrClosed", err)
	}
	if err := m.Quit(ctx); err != nil {
		t.Fatalf("Quit of a QEMU already gone = %v, want nil", err)
	}
}

// TestMachineFailures: HMP's errors in savevm's output, a frozen QEMU, and
// a closed client.
func TestMachineFailures(t *testing.T) {
	q := startMachine(t, "-machine", "none,accel=kvm:tcg", "-nodefaults", "-display", "none", "-nic", "none")
	m := NewMachine(q.c)
	ctx, cancel := context.WithTimeout(context.Background(), machineTimeout)
	defer cancel()

	// No disk to hold the snapshot: HMP says so in its output.
	if err := m.SaveVM(ctx, "snap"); err == nil || !strings.Contains(err.Error(), "Error:") {
		t.Fatalf("SaveVM without a disk = %v, want HMP's Error: line", err)
	}

	q.cmd.Process.Signal(syscall.SIGSTOP)
	short, cancelShort := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancelShort()
	start := time.Now()
	if err := m.Pause(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Pause of a frozen QEMU = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Pause took %v", d)
	}
	q.cmd.Process.Signal(syscall.SIGCONT)
	// The stop was sent before the deadline, so QEMU runs it when it
	// thaws: a timeout says nothing about a command's effect.
	if s, running, err := m.Status(ctx); err != nil || s != "paused" || running {
		t.Fatalf("Status after SIGCONT = %q, %v, %v; want the late stop's paused", s, running, err)
	}

	q.c.Close()
	if err := m.Quit(ctx); !errors.Is(err, qmp.ErrClientClosed) {
		t.Fatalf("Quit after Close = %v, want qmp.ErrClientClosed", err)
	}
	if _, _, err := m.Status(ctx); !errors.Is(err, qmp.ErrClosed) {
		t.Fatalf("Status after Close = %v, want qmp.ErrClosed", err)
	}
}
