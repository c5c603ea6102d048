package console

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// vpcs is a real VPCS process with its console on an internal port.
type vpcs struct {
	console string // 127.0.0.1:port
	udpL    int
	cmd     *exec.Cmd
}

// startVPCS runs vpcs as GNS3 does (without -R, which 0.5b2 lacks) in a
// temporary directory and its own process group, killed at cleanup. The
// console port is taken with bind-and-close, so another process could
// grab it in between: unlikely, and the test would fail, not lie.
func startVPCS(t *testing.T) *vpcs {
	t.Helper()
	path, err := exec.LookPath("vpcs")
	if err != nil {
		t.Fatalf("vpcs is not installed (make deps installs it): %v", err)
	}
	console := freeAddr(t)
	_, port, _ := net.SplitHostPort(console)
	udpL, udpR := freeUDPPort(t), freeUDPPort(t)
	dir := t.TempDir()
	logFile, err := os.Create(filepath.Join(dir, "vpcs.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path, "-p", port, "-m", "0", "-i", "1", "-F",
		"-s", strconv.Itoa(udpL), "-c", strconv.Itoa(udpR), "-t", "127.0.0.1")
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start vpcs: %v", err)
	}
	v := &vpcs{console: console, udpL: udpL, cmd: cmd}
	t.Cleanup(func() {
		v.kill()
		logFile.Close()
		if t.Failed() {
			log, _ := os.ReadFile(logFile.Name())
			t.Logf("vpcs.log:\n%s", log)
		}
	})
	return v
}

// kill stops vpcs as GNS3 does, with SIGTERM, and makes sure nothing of it
// survives: vpcs forks a child that starts a session of its own, so
// neither the process group nor Pdeathsig reaches it. It is idempotent.
func (v *vpcs) kill() {
	if v.cmd.ProcessState != nil {
		return
	}
	pid := v.cmd.Process.Pid
	forked := descendants(pid)
	v.cmd.Process.Signal(syscall.SIGTERM)
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		v.cmd.Wait()
	}()
	select {
	case <-exited:
	case <-time.After(2 * time.Second):
		syscall.Kill(-pid, syscall.SIGKILL)
		<-exited
	}
	for _, p := range forked {
		if cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p)); bytes.Contains(cmdline, []byte("vpcs")) {
			syscall.Kill(p, syscall.SIGKILL)
		}
	}
}

// descendants lists the processes pid forked, recursively.
func descendants(pid int) []int {
	var out []int
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, task := range tasks {
		b, _ := os.ReadFile(task)
		for _, f := range strings.Fields(string(b)) {
			if child, err := strconv.Atoi(f); err == nil {
				out = append(out, child)
				out = append(out, descendants(child)...)
			}
		}
	}
	return out
}

func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// vpcsEcho types "echo word" and returns what VPCS prints for it. VPCS
// echoes the typed line itself, so only "\nword\r\n" proves the command ran.
func vpcsEcho(c *peer, word string) string {
	c.send("echo " + word + "\n")
	return "\n" + word + "\r\n"
}

func TestVPCSConsoleSharedAndReopenable(t *testing.T) {
	checkNoGoroutineLeak(t)
	v := startVPCS(t)
	p := startProxy(t, Config{Target: v.console})

	a := dialClient(t, "a", p.Addr())
	b := dialClient(t, "b", p.Addr())
	eventually(t, "2 clients", func() bool { return p.Clients() == 2 })

	// Both see the output of a command typed by one.
	a.send("show ip\n")
	lport := fmt.Sprintf("LPORT       : %d", v.udpL)
	a.expect(lport)
	b.expect(lport)
	a.expect("VPCS> ")
	b.expect("VPCS> ")

	// Closing one does not disturb the other.
	b.conn.Close()
	eventually(t, "b gone", func() bool { return p.Clients() == 1 })
	a.expect(vpcsEcho(a, "still-here"))

	// A client that leaves and comes back gets the console again, every
	// time (GNS3 2.2.37 regressed on this).
	for i := range 5 {
		c := dialClient(t, "c"+strconv.Itoa(i), p.Addr())
		eventually(t, "2 clients", func() bool { return p.Clients() == 2 })
		word := "again-" + strconv.Itoa(i)
		c.expect(vpcsEcho(c, word))
		a.expect("\n" + word + "\r\n")
		c.conn.Close()
		eventually(t, "c gone", func() bool { return p.Clients() == 1 })
	}

	// Reset gives a fresh connection to VPCS; the client stays.
	if err := p.Reset(); err != nil {
		t.Fatalf("Reset: %v", err)
	}
	a.expect(vpcsEcho(a, "after-reset"))
	if got := p.Clients(); got != 1 {
		t.Errorf("Clients() = %d after Reset, want 1", got)
	}
}

func TestVPCSProcessDiesClientsStay(t *testing.T) {
	checkNoGoroutineLeak(t)
	v := startVPCS(t)
	p := startProxy(t, Config{Target: v.console})
	a := dialClient(t, "a", p.Addr())
	eventually(t, "client registered", func() bool { return p.Clients() == 1 })
	a.expect(vpcsEcho(a, "alive"))

	v.kill()
	a.expect(string(disconnectedNotice))
	if got := p.Clients(); got != 1 {
		t.Fatalf("Clients() = %d after vpcs died, want 1", got)
	}
	a.send("typed into the void\n") // dropped; must not break anything
}
