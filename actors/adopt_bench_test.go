package actors_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"labd/actors"
	"labd/actors/actorstest"
	"labd/actors/vpcs"
	"labd/events/jetstream/jstest"
	"labd/nio"
	"labd/replay"
)

// BenchmarkStartupAdopting100Nodes measures a restart of labd over a lab
// of 100 running VPCS nodes left behind (as by --keep-nodes or a crash):
// one op is the fold of the history and actors.Start, which returns once
// every node is adopted (its process recognised, its bridge rebound, its
// console proxy serving). Reported: ms per restart and per node.
func BenchmarkStartupAdopting100Nodes(b *testing.B) {
	const nodes = 100
	env := jstest.Start(b, jstest.Options{})
	dir := b.TempDir()
	start := func(keep bool) *actors.Client {
		st, err := replay.Rehydrate(context.Background(), env.Store, compute, nil)
		if err != nil {
			b.Fatal(err)
		}
		// Below the kernel's ephemeral ports (32768 and up), which any
		// process may be given, and away from other packages' ranges.
		udp, _ := nio.NewPool("udp", "127.0.0.1", nio.PortRange{First: 31000, Last: 31999})
		consoles, _ := nio.NewPool("tcp", "127.0.0.1", nio.PortRange{First: 30000, Last: 30999})
		c, err := actors.Start(actors.Config{
			ComputeID: compute, Store: env.Store, ProjectsDir: filepath.Join(dir, "projects"), UDPPorts: udp, ConsolePorts: consoles,
			Logger: slog.New(slog.DiscardHandler), KeepNodes: keep, NodeUser: actorstest.NodeUser(b, dir),
		}, st)
		if err != nil {
			b.Fatal(err)
		}
		return c
	}
	c := start(true)
	pid := uuid.NewString()
	if _, _, err := c.CreateProject(context.Background(), actors.CreateProject{ProjectID: pid, Name: "bench"}); err != nil {
		b.Fatal(err)
	}
	for i := range nodes {
		ref := actors.NodeRef{ProjectID: pid, NodeID: uuid.NewString()}
		if _, err := c.CreateNode(context.Background(), actors.CreateNode{NodeRef: ref, Kind: vpcs.Kind, Name: "PC" + string(rune('A'+i%26))}); err != nil {
			b.Fatal(err)
		}
		if _, err := c.NodeDo(context.Background(), actors.StartNode{NodeRef: ref}); err != nil {
			b.Fatal(err)
		}
	}
	// VPCS 0.5b2 busy-loops in its CLI child (~11% of a core each): 100
	// of them would starve a 2-core machine and the benchmark would
	// measure that. They are frozen while labd adopts them (a stopped
	// process is still the recorded one).
	frozen := processesUnder(b, filepath.Join(dir, "projects"))
	signalAll(frozen, syscall.SIGSTOP)
	defer func() {
		signalAll(frozen, syscall.SIGCONT)
		// The last daemon stops the nodes.
		last := start(false)
		last.Stop(context.Background())
	}()
	var total time.Duration
	for b.Loop() {
		if err := c.Stop(context.Background()); err != nil { // the nodes keep running
			b.Fatal(err)
		}
		t0 := time.Now()
		c = start(true)
		total += time.Since(t0)
		ns, err := c.Nodes(pid)
		if err != nil || len(ns) != nodes {
			b.Fatalf("%d nodes after the restart: %v", len(ns), err)
		}
		for _, n := range ns {
			if !n.Running() {
				b.Fatalf("node %s is %s after the restart, want adopted", n.ID, n.Status)
			}
		}
	}
	c.Stop(context.Background())
	per := total / time.Duration(b.N)
	b.ReportMetric(float64(per.Microseconds())/1000, "ms/restart")
	b.ReportMetric(float64(per.Microseconds())/1000/nodes, "ms/node")
}

// processesUnder returns the processes working under dir.
func processesUnder(b *testing.B, dir string) []int {
	var pids []int
	entries, err := os.ReadDir("/proc")
	if err != nil {
		b.Fatal(err)
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if cwd, err := os.Readlink("/proc/" + e.Name() + "/cwd"); err == nil && strings.HasPrefix(cwd, dir+"/") {
			pids = append(pids, pid)
		}
	}
	return pids
}

func signalAll(pids []int, sig syscall.Signal) {
	for _, pid := range pids {
		_ = syscall.Kill(pid, sig)
	}
}
