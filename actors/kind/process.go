package kind

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Process is a node's emulator process, started in its own session so that
// a labd crash does not take it down (and a later labd can recognise it by
// pid and start time and adopt it).
type Process struct {
	cmd       *exec.Cmd // nil for an adopted process: not labd's child
	pid       int
	startTime uint64
	log       string // the file its output goes to
	done      chan struct{}
	// state is set before done is closed; it stays nil for an adopted
	// process, whose exit status only its parent (init) learns.
	state *os.ProcessState
	// released is closed when labd stops watching an adopted process
	// that keeps running (--keep-nodes).
	released chan struct{}
}

// StartProcess runs path with args in dir as cred (nil: labd's own
// account), output written to logPath, a file of dir. The log is not
// opened through a link: the node's account owns dir and could have left
// one pointing at a file labd must not truncate.
func StartProcess(path string, args []string, dir, logPath string, cred *syscall.Credential) (*Process, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC|syscall.O_NOFOLLOW, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own copy
	cmd := exec.Command(path, args...)
	cmd.Dir = dir
	cmd.Stdin = nil
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Credential: cred}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Process{cmd: cmd, pid: cmd.Process.Pid, log: logPath, done: make(chan struct{}), released: make(chan struct{})}
	p.startTime, _ = procStartTime(p.pid)
	go func() {
		_ = cmd.Wait()
		p.state = cmd.ProcessState
		close(p.done)
	}()
	return p, nil
}

// ExitCode is the process's exit status, -1 when a signal ended it.
func (p *Process) ExitCode() int {
	if p.state == nil {
		return -1
	}
	return p.state.ExitCode()
}

// Stop asks the process to end (SIGTERM), and kills it if it has not after
// grace. It returns once the process is gone.
func (p *Process) Stop(grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		_ = p.signal(syscall.SIGKILL)
		<-p.done
	}
}

// signal sends sig to the process. An adopted process is not labd's
// child, so its pid could name another process once it is gone: it is
// signalled only while it is still the recorded one.
func (p *Process) signal(sig syscall.Signal) error {
	if p.cmd != nil {
		return p.cmd.Process.Signal(sig)
	}
	if !sameProcess(p.pid, p.startTime) {
		return os.ErrProcessDone
	}
	return syscall.Kill(p.pid, sig)
}

// errGone: the recorded process no longer runs.
var errGone = errors.New("the recorded process is gone")

// AdoptProcess watches a process that a previous labd started, if pid and
// startTime still name it. Its end is seen through a pidfd, which becomes
// readable when the process exits (reaped or not: this sandbox's init
// leaves zombies).
func AdoptProcess(pid int, startTime uint64, logPath string) (*Process, error) {
	if !sameProcess(pid, startTime) {
		return nil, errGone
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("kind: pidfd of %d: %w", pid, err)
	}
	if !sameProcess(pid, startTime) { // the pid was reused meanwhile
		unix.Close(fd)
		return nil, errGone
	}
	p := &Process{pid: pid, startTime: startTime, log: logPath, done: make(chan struct{}), released: make(chan struct{})}
	go p.watchPidfd(fd)
	return p, nil
}

// watchPidfd closes done when the process exits, or returns when labd
// releases it.
func (p *Process) watchPidfd(fd int) {
	defer unix.Close(fd)
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		select {
		case <-p.released:
			return
		default:
		}
		n, err := unix.Poll(fds, 250)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if n > 0 || err != nil {
			close(p.done)
			return
		}
	}
}

// Release stops watching an adopted process that keeps running.
func (p *Process) Release() {
	select {
	case <-p.released:
	default:
		close(p.released)
	}
}

// sameProcess reports whether pid is still the live process started at
// startTime (a zombie is gone: it runs nothing).
func sameProcess(pid int, startTime uint64) bool {
	return procState(pid, startTime) != ProcGone
}

// procState is what /proc says of the process pid started at startTime.
func procState(pid int, startTime uint64) ProcState {
	state, st, err := procStat(pid)
	switch {
	case err != nil || st != startTime || state == 'Z' || state == 'X':
		return ProcGone
	case state == 'T' || state == 't':
		return ProcStopped
	}
	return ProcRunning
}

// procStartTime returns a process's start time in clock ticks after boot,
// field 22 of /proc/<pid>/stat.
func procStartTime(pid int) (uint64, error) {
	_, st, err := procStat(pid)
	return st, err
}

// procStat returns a process's state (field 3 of /proc/<pid>/stat: R, S,
// Z...) and start time (field 22).
func procStat(pid int) (state byte, startTime uint64, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	// The command name (field 2) may hold spaces and parentheses: fields
	// are counted after its closing parenthesis.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, errors.New("malformed stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 || len(f[0]) != 1 {
		return 0, 0, errors.New("malformed stat")
	}
	startTime, err = strconv.ParseUint(f[19], 10, 64) // field 22 is the 20th after the name
	return f[0][0], startTime, err
}

// KillRecorded kills the process a node.started event recorded, if that
// very process (same pid, same start time) still runs. It reports whether
// it found it.
func KillRecorded(ctx context.Context, pid int, startTime uint64) bool {
	if pid <= 0 {
		return false
	}
	if !sameProcess(pid, startTime) {
		return false
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if !sameProcess(pid, startTime) {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	if sameProcess(pid, startTime) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	return true
}

// LogTail returns the last max bytes of a log file, for error messages
// (never read through a link, like StartProcess's open).
func LogTail(path string, max int64) string {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return ""
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > max {
		_, _ = f.Seek(fi.Size()-max, io.SeekStart)
	}
	b, _ := io.ReadAll(io.LimitReader(f, max))
	return strings.TrimSpace(string(b))
}

// DescribeExit says how a process ended, for a log.error message.
func DescribeExit(what string, code int, tail string) string {
	msg := fmt.Sprintf("%s process has stopped, return code: %d", what, code)
	if tail != "" {
		msg += "\n" + tail
	}
	return msg
}

// KillStragglers kills every process still working in dir. VPCS forks a
// helper into a session of its own, which a signal to VPCS's pid does not
// reach when VPCS is killed outright; every process of a node runs in the
// node's directory, so that is how they are found.
func KillStragglers(dir string) int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	killed := 0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if cwd, err := os.Readlink("/proc/" + e.Name() + "/cwd"); err == nil && cwd == dir {
			if syscall.Kill(pid, syscall.SIGKILL) == nil {
				killed++
			}
		}
	}
	return killed
}

// PID is the process's id.
func (p *Process) PID() int { return p.pid }

// StartTime is the process's start time in clock ticks since boot: with
// the pid, it names one process.
func (p *Process) StartTime() uint64 { return p.startTime }

// Log is the file the process's output goes to.
func (p *Process) Log() string { return p.log }

// Done is closed when the process has ended.
func (p *Process) Done() <-chan struct{} { return p.done }

// Released is closed when labd stops watching a process that keeps
// running (Release).
func (p *Process) Released() <-chan struct{} { return p.released }

// Signal sends sig to the process, if it is still the one labd knows.
func (p *Process) Signal(sig syscall.Signal) error { return p.signal(sig) }

// ProcState is what the kernel says of a process now.
type ProcState int

// Process states.
const (
	ProcGone    ProcState = iota // it ended (or is a zombie)
	ProcRunning                  // it runs or sleeps
	ProcStopped                  // a signal stopped it (SIGSTOP): it runs nothing until SIGCONT
)

// State reads the process's state from /proc: a status check's view,
// independent of what labd recorded.
func (p *Process) State() ProcState {
	select {
	case <-p.done:
		return ProcGone
	default:
	}
	return procState(p.pid, p.startTime)
}
