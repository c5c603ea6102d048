package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"time"

	"labd/actors"
	"labd/events"
	"labd/replay"
)

// auditTool is `labd audit`: the timeline of a compute's events, filtered
// by project, node and time; or, with --verify, a check of the whole
// history's invariants.
func auditTool(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("labd audit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var sf storeFlags
	sf.register(fs)
	setUsage(fs, "labd audit "+storeSynopsis+" [--project ID] [--node ID] [--since TIME] [--until TIME] [--json] [--operations]\n       labd audit "+storeSynopsis+" --verify",
		`Print the timeline of a compute's events, oldest first, or with --verify
fold the whole history and check its invariants: every event folds, no port
is held twice, every NIO is on an existing node and port, every capture is on
a linked port, no node outlives its project. --verify exits non-zero on any
violation.`)
	projectID := fs.String("project", "", "only the events of this project `ID` (the project and its nodes)")
	nodeID := fs.String("node", "", "only the events of this node `ID`")
	since := fs.String("since", "", "only the events at or after this RFC 3339 `TIME`")
	until := fs.String("until", "", "only the events at or before this RFC 3339 `TIME`")
	asJSON := fs.Bool("json", false, "print JSON lines: one {seq, at, type, project_id, node_id, data} object per event")
	operations := fs.Bool("operations", false, "print the lifecycle operation records instead of the events: what was asked of each node, when, and its outcome")
	verify := fs.Bool("verify", false, "fold the whole history and check its invariants; exit non-zero on any violation")
	if err := parseToolFlags(fs, args, &sf); err != nil {
		return err
	}
	if err := checkToken("project", *projectID); err != nil {
		return err
	}
	if err := checkToken("node", *nodeID); err != nil {
		return err
	}
	var from, to time.Time
	var err error
	if *since != "" {
		if from, err = parseTime(*since); err != nil {
			return fmt.Errorf("--since: want an RFC 3339 time: %w", err)
		}
	}
	if *until != "" {
		if to, err = parseTime(*until); err != nil {
			return fmt.Errorf("--until: want an RFC 3339 time: %w", err)
		}
	}
	if *verify && (*projectID != "" || *nodeID != "" || *since != "" || *until != "" || *asJSON || *operations) {
		return errors.New("--verify checks the whole history: it does not go with --project, --node, --since, --until, --json or --operations")
	}

	store, closeStore, err := openToolStore(ctx, sf)
	if err != nil {
		return err
	}
	defer closeStore()
	if *verify {
		return runVerify(ctx, store, sf.computeID, stdout)
	}
	if *operations {
		return auditOperations(ctx, store, aggregateFilter(sf.computeID, *projectID, *nodeID), from, to, *asJSON, stdout)
	}
	ew := &eventWriter{w: stdout, json: *asJSON}
	if err := ew.header(); err != nil {
		return err
	}
	_, err = store.Load(ctx, aggregateFilter(sf.computeID, *projectID, *nodeID), 1, func(r events.Record) error {
		if (!from.IsZero() && r.At.Before(from)) || (!to.IsZero() && r.At.After(to)) {
			return nil
		}
		return ew.write(r)
	})
	return err
}

// runVerify folds the history of compute, checks it and prints the report.
// A history with problems is an error: the exit status says so.
func runVerify(ctx context.Context, l replay.Loader, compute string, w io.Writer) error {
	rep, err := verifyHistory(ctx, l, compute)
	if err != nil {
		return err
	}
	rep.print(w)
	if len(rep.Problems) > 0 {
		return fmt.Errorf("verify: %s in the history of compute %s", plural(len(rep.Problems), "problem"), compute)
	}
	return nil
}

// verifyHistory folds the whole history of compute and checks the state
// it reaches. A record the fold refuses, or that cannot be decoded, is a
// problem of the history and stops the fold there; a store that cannot be
// read is an error.
func verifyHistory(ctx context.Context, l replay.Loader, compute string) (verifyReport, error) {
	s := replay.New()
	folded := 0
	_, err := l.Load(ctx, events.ComputeFilter(compute), 1, func(r events.Record) error {
		if err := s.Apply(r); err != nil {
			return &foldError{Record: r, Err: err}
		}
		folded++
		return nil
	})
	var fe *foldError
	unreadable := errors.Is(err, events.ErrUnknownType) || errors.Is(err, events.ErrSchema) || errors.Is(err, events.ErrMalformed)
	if err != nil && !errors.As(err, &fe) && !unreadable {
		return verifyReport{}, fmt.Errorf("verify compute %s: %w", compute, err)
	}
	return verifyState(s, folded, err), nil
}

// verifyReport is what audit --verify found.
type verifyReport struct {
	Events   int // events folded
	Projects int // project aggregates with history
	Nodes    int // node aggregates with history
	// Problems are the violated invariants, in a stable order.
	Problems []string
	// Captures are the captures still running at the end of the history:
	// listed, not a problem.
	Captures []string
	// InFlight are the operations in flight at the end of the history:
	// listed, not a problem (labd may be running them).
	InFlight []string
}

func (r verifyReport) print(w io.Writer) {
	for _, c := range r.Captures {
		fmt.Fprintf(w, "capture still running: %s\n", c)
	}
	for _, o := range r.InFlight {
		fmt.Fprintf(w, "operation in flight: %s\n", o)
	}
	if len(r.Problems) == 0 {
		fmt.Fprintf(w, "verify: OK (%d events, %d projects, %d nodes)\n", r.Events, r.Projects, r.Nodes)
		return
	}
	for _, p := range r.Problems {
		fmt.Fprintf(w, "problem: %s\n", p)
	}
	fmt.Fprintf(w, "verify: FAILED, %s (%d events folded, %d projects, %d nodes)\n", plural(len(r.Problems), "problem"), r.Events, r.Projects, r.Nodes)
}

// plural says "1 problem", "2 problems".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// verifyState checks the invariants of a folded state. foldErr is why the
// fold stopped early, nil when it reached the end: the state is then the
// one just before the refused record, and is still checked. The
// invariants:
//
//   - every event folds;
//   - no port is held twice: the UDP ports of open projects and the tunnel
//     ports of running nodes are all distinct, and so are the console
//     ports of existing nodes;
//   - every NIO is on an existing node and on a port that node has (VPCS:
//     0/0; QEMU: adapters 0 to "adapters"-1 of its properties, port 0);
//   - every capture is on its linked port;
//   - no node exists in a project that is not open, and a node has a
//     process exactly when it is running or paused (GNS3: started or suspended).
//
// It reads only the exported state, not the fold's own indexes, so that
// it checks the fold rather than trusts it.
func verifyState(s *replay.State, folded int, foldErr error) verifyReport {
	sum := replay.Summarize(s)
	rep := verifyReport{Events: folded, Projects: len(sum.Projects), Nodes: len(sum.Nodes)}
	problem := func(format string, args ...any) { rep.Problems = append(rep.Problems, fmt.Sprintf(format, args...)) }
	if foldErr != nil {
		problem("%v; the events after it were not checked", foldErr)
	}

	udp := map[int]string{} // held port → its holder
	holdUDP := func(port int, holder string) {
		if prev, ok := udp[port]; ok {
			problem("UDP port %d held twice: by %s and by %s", port, prev, holder)
			return
		}
		udp[port] = holder
	}
	for _, p := range sum.Projects {
		if !p.IsOpen() {
			if len(p.UDPPorts) > 0 {
				problem("project %s is %s but holds UDP ports %v", p.ID, p.Status, p.UDPPorts)
			}
			continue
		}
		for _, port := range p.UDPPorts {
			holdUDP(port, "project "+p.ID)
		}
	}

	consoles := map[int]string{}
	for _, n := range sum.Nodes {
		name := fmt.Sprintf("node %s (project %s)", n.ID, n.ProjectID)
		if !n.Exists() {
			if len(n.Links) > 0 {
				problem("%s is %s but has %d NIOs", name, n.Status, len(n.Links))
			}
			if n.Process != nil {
				problem("%s is %s but has a process (pid %d)", name, n.Status, n.Process.PID)
			}
			continue
		}
		if p := s.Projects[n.ProjectID]; !p.IsOpen() {
			status := "unknown"
			if p != nil {
				status = string(p.Status)
			}
			problem("%s exists but its project is %s", name, status)
		}
		if n.Console != 0 {
			if prev, ok := consoles[n.Console]; ok {
				problem("console port %d held twice: by %s and by %s", n.Console, prev, name)
			} else {
				consoles[n.Console] = name
			}
		}
		op := n.InFlight()
		switch {
		case op != nil:
			rep.InFlight = append(rep.InFlight, fmt.Sprintf("%s %s of %s since %s", op.Op, op.ID, name, op.Started.Format(timeLayout)))
		case n.Task != "":
			problem("%s is %s but no operation is in flight", name, n.Task)
		}
		switch {
		case n.Process != nil && n.Status != replay.NodeRunning && n.Status != replay.NodePaused:
			problem("%s is %s but has a process (pid %d)", name, n.Status, n.Process.PID)
		case n.Process == nil && (n.Status == replay.NodeRunning || n.Status == replay.NodePaused):
			problem("%s is %s but has no process", name, n.Status)
		}
		if n.Process != nil {
			for _, t := range n.Process.Tunnels {
				holdUDP(t.NodePort, fmt.Sprintf("%s tunnel %d/%d (node end)", name, t.Adapter, t.Port))
				holdUDP(t.BridgePort, fmt.Sprintf("%s tunnel %d/%d (bridge end)", name, t.Adapter, t.Port))
				if t.RelayPort != 0 {
					holdUDP(t.RelayPort, fmt.Sprintf("%s tunnel %d/%d (VPCS relay)", name, t.Adapter, t.Port))
				}
			}
		}
		checkLinks(n, name, &rep, problem)
	}
	return rep
}

// checkLinks checks a node's NIOs and captures.
func checkLinks(n *replay.Node, name string, rep *verifyReport, problem func(string, ...any)) {
	ports, known, err := nodePorts(n)
	if err != nil {
		problem("%s: %v", name, err)
	}
	for _, l := range n.Links {
		if known && !slices.Contains(ports, [2]int{l.Adapter, l.Port}) {
			problem("NIO on port %d/%d of %s, a %s node without that port (its ports: %v)", l.Adapter, l.Port, name, n.Kind, ports)
		}
		c := l.Capture
		if c == nil {
			continue
		}
		if c.Adapter != l.Adapter || c.Port != l.Port {
			problem("capture of port %d/%d recorded on port %d/%d of %s", c.Adapter, c.Port, l.Adapter, l.Port, name)
			continue
		}
		rep.Captures = append(rep.Captures, fmt.Sprintf("%s port %d/%d to %s", name, l.Adapter, l.Port, c.File))
	}
}

// nodePorts returns the ports a node has, as adapter/port pairs; known is
// false for a kind whose ports this build cannot tell.
func nodePorts(n *replay.Node) (ports [][2]int, known bool, err error) {
	if len(n.Properties) > 0 && !json.Valid(n.Properties) {
		return nil, false, errors.New("properties do not decode: not JSON")
	}
	ps, known := actors.Ports(n.Kind, n.Properties)
	for _, p := range ps {
		ports = append(ports, [2]int{p.Adapter, p.Port})
	}
	return ports, known, nil
}
