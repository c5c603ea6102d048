package actors

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
)

// process is a node's emulator process, started in its own session so that
// a labd crash does not take it down (and a later labd can recognise it by
// pid and start time).
type process struct {
	cmd       *exec.Cmd
	pid       int
	startTime uint64
	log       string // the file its output goes to
	done      chan struct{}
	// state is set before done is closed.
	state *os.ProcessState
}

// startProcess runs path with args in dir, output appended to logPath.
func startProcess(path string, args []string, dir, logPath string) (*process, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own copy
	cmd := exec.Command(path, args...)
	cmd.Dir = dir
	cmd.Stdin = nil
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &process{cmd: cmd, pid: cmd.Process.Pid, log: logPath, done: make(chan struct{})}
	p.startTime, _ = procStartTime(p.pid)
	go func() {
		_ = cmd.Wait()
		p.state = cmd.ProcessState
		close(p.done)
	}()
	return p, nil
}

// exitCode is the process's exit status, -1 when a signal ended it.
func (p *process) exitCode() int {
	if p.state == nil {
		return -1
	}
	return p.state.ExitCode()
}

// stop asks the process to end (SIGTERM), and kills it if it has not after
// grace. It returns once the process is gone.
func (p *process) stop(grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// procStartTime returns a process's start time in clock ticks after boot,
// field 22 of /proc/<pid>/stat.
func procStartTime(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces and parentheses: fields
	// are counted after its closing parenthesis.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("malformed stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, errors.New("malformed stat")
	}
	return strconv.ParseUint(f[19], 10, 64) // field 22 is the 20th after the name
}

// killRecorded kills the process a node.started event recorded, if that
// very process (same pid, same start time) still runs. It reports whether
// it found it.
func killRecorded(ctx context.Context, pid int, startTime uint64) bool {
	if pid <= 0 {
		return false
	}
	if st, err := procStartTime(pid); err != nil || st != startTime {
		return false
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if st, err := procStartTime(pid); err != nil || st != startTime {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	return true
}

// logTail returns the last max bytes of a log file, for error messages.
func logTail(path string, max int64) string {
	f, err := os.Open(path)
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

// describeExit says how a process ended, for a log.error message.
func describeExit(what string, code int, tail string) string {
	msg := fmt.Sprintf("%s process has stopped, return code: %d", what, code)
	if tail != "" {
		msg += "\n" + tail
	}
	return msg
}

// killStragglers kills every process still working in dir. VPCS forks a
// helper into a session of its own, which a signal to VPCS's pid does not
// reach when VPCS is killed outright; every process of a node runs in the
// node's directory, so that is how they are found.
func killStragglers(dir string) int {
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
