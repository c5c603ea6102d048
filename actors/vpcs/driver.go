package vpcs

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"labd/actors/kind"
)

// Kind is VPCS's node type.
const Kind = "vpcs"

// stopGrace is how long VPCS has to end after SIGTERM before it is killed
// (GNS3: 3 s).
const stopGrace = 3 * time.Second

// relayOffset is where VPCS 0.5 binds its relay port: NodePort+9.
const relayOffset = 9

// Patch is a create's or an update's change to a VPCS node.
type Patch struct {
	// StartupScript replaces the startup script; nil keeps it.
	StartupScript *string
}

// Driver runs VPCS nodes: one process per node, one port (0/0), a telnet
// console.
type Driver struct {
	// Path is the VPCS program, a name looked up in PATH or a path.
	Path string
}

// Info describes the kind.
func (d Driver) Info() kind.Info {
	return kind.Info{Kind: Kind, Title: "VPCS", ConsoleTypes: []string{"telnet", "none"}, MACOffset: true}
}

// Available reports whether the VPCS program is installed.
func (d Driver) Available() error {
	if _, err := exec.LookPath(d.Path); err != nil {
		return kind.Conflict("VPCS executable %q not found: %v", d.Path, err)
	}
	return nil
}

// Settle checks nothing: a VPCS node has no properties of its own.
func (d Driver) Settle(kind.Node, any) (json.RawMessage, error) { return nil, nil }

// Ports is VPCS's one port.
func (d Driver) Ports(json.RawMessage) []kind.Port { return []kind.Port{{}} }

// Prepare writes the startup script a create or an update gives, or
// renames the node in the script it has.
func (d Driver) Prepare(old *kind.Node, n kind.Node, patch any) error {
	p, _ := patch.(*Patch)
	switch {
	case p != nil && p.StartupScript != nil && old == nil:
		// GNS3 keeps a script already on disk (a project opened again).
		if _, ok, _ := ReadScript(n.Dir); ok {
			return nil
		}
		return WriteScript(n.Dir, *p.StartupScript, n.Name)
	case p != nil && p.StartupScript != nil:
		return WriteScript(n.Dir, *p.StartupScript, n.Name)
	case old != nil && old.Name != n.Name:
		return Rename(n.Dir, n.Name)
	}
	return nil
}

// Launch starts VPCS on the node's tunnel, its console on a free port of
// 127.0.0.1 for labd's proxy.
func (d Driver) Launch(h kind.Host, n kind.Node) (_ kind.Run, err error) {
	bin, err := exec.LookPath(d.Path)
	if err != nil {
		return nil, kind.Conflict("VPCS executable %q not found: %v", d.Path, err)
	}
	version, err := Detect(context.Background(), bin)
	if err != nil {
		return nil, kind.Conflict("%s is not a usable VPCS: %v", bin, err)
	}
	ts, err := h.AllocateTunnels(d.Ports(nil))
	if err != nil {
		return nil, err
	}
	r := &run{h: h, rec: kind.Record{Tunnels: ts}}
	defer func() {
		if err != nil {
			r.Stop(kind.StopKill)
		}
	}()
	if r.rec.InternalConsole, err = kind.FreeTCPPort(); err != nil {
		return nil, kind.Conflict("no internal console port: %v", err)
	}
	if !version.HasRelayFlag() {
		if err := takeRelayPort(h, &r.rec.Tunnels[0]); err != nil {
			return nil, err
		}
	}
	_, hasScript, _ := ReadScript(n.Dir)
	t0 := r.rec.Tunnels[0]
	args := Args(version, Options{
		Console: r.rec.InternalConsole, MACID: n.MACID,
		LocalPort: t0.NodePort, RemotePort: t0.BridgePort, Script: hasScript,
	})
	// The bridges first: the node's first frames must find them.
	if r.bridges, err = h.OpenBridges("VPCS", n.ID, r.rec.Tunnels); err != nil {
		return nil, err
	}
	if r.proc, err = kind.StartProcess(bin, args, n.Dir, filepath.Join(n.Dir, LogName), h.User.Credential()); err != nil {
		return nil, kind.Conflict("could not start VPCS: %v", err)
	}
	r.rec.PID, r.rec.ProcStart = r.proc.PID(), r.proc.StartTime()
	r.rec.CommandLine = strings.Join(append([]string{bin}, args...), " ")
	return r, nil
}

// takeRelayPort holds the relay port a VPCS without -R binds, so that the
// pool never hands it to another node: when the tunnel's node port p has
// p+9 taken, it moves to the lowest port that has both free.
func takeRelayPort(h kind.Host, t *kind.Tunnel) error {
	if h.UDP.Take(t.NodePort+relayOffset) == nil {
		t.RelayPort = t.NodePort + relayOffset
		return nil
	}
	r := h.UDP.Range()
	for p := r.First; p+relayOffset <= r.Last; p++ {
		if h.UDP.Take(p) != nil {
			continue
		}
		if h.UDP.Take(p+relayOffset) != nil {
			h.UDP.Release(p)
			continue
		}
		h.UDP.Release(t.NodePort)
		t.NodePort, t.RelayPort = p, p+relayOffset
		return nil
	}
	return kind.Conflict("no free UDP port p with p+%d free too (VPCS's relay port) in %v", relayOffset, r)
}

// Adopt takes over a VPCS a labd before this one started: its bridges
// bound again on the recorded tunnel ports.
func (d Driver) Adopt(h kind.Host, n kind.Node, rec kind.Record) (kind.Run, error) {
	p, err := kind.AdoptProcess(rec.PID, rec.ProcStart, filepath.Join(n.Dir, LogName))
	if err != nil {
		return nil, err
	}
	r := &run{h: h, rec: rec, proc: p}
	if r.bridges, err = h.OpenBridges("VPCS", n.ID, rec.Tunnels); err != nil {
		p.Release()
		return nil, err
	}
	return r, nil
}

// run is a running VPCS.
type run struct {
	h       kind.Host
	rec     kind.Record
	proc    *kind.Process
	bridges kind.Bridges
}

func (r *run) End(p kind.Port) kind.End    { return r.bridges.End(p) }
func (r *run) Process() *kind.Process      { return r.proc }
func (r *run) Record() kind.Record         { return r.rec }
func (r *run) Notices() <-chan kind.Notice { return nil }
func (r *run) Suspend() error              { return kind.ErrUnsupported }
func (r *run) Resume() error               { return kind.ErrUnsupported }
func (r *run) Reset(kind.Node) error       { return kind.ErrUnsupported }
func (r *run) Update(kind.Node) error      { return nil }
func (r *run) LinkChanged(kind.Port, bool) {}

func (r *run) Console() string { return kind.ConsoleAddr(r.rec.InternalConsole) }

func (r *run) Stop(mode kind.StopMode) int {
	code := 0
	if r.proc != nil {
		if mode == kind.StopWait {
			<-r.proc.Done()
		} else {
			r.proc.Stop(stopGrace)
		}
		code = r.proc.ExitCode()
	}
	r.bridges.Close()
	r.h.ReleaseTunnels(r.rec.Tunnels)
	return code
}

func (r *run) Release() {
	if r.proc != nil {
		r.proc.Release()
	}
	r.bridges.Close()
}

var _ kind.Driver = Driver{}
