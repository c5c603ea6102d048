package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"labd/events"
	"labd/replay"
)

// replayTool is `labd replay`: the state of a compute rebuilt from its
// history, as it is now or as it was at a past moment.
func replayTool(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("labd replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var sf storeFlags
	sf.register(fs)
	setUsage(fs, "labd replay "+storeSynopsis+" [--at SEQ|TIME] [--json]",
		`Rebuild the state of a compute (projects and nodes) by folding its history,
up to its end or up to --at, and print it with the sequence it stopped at.`)
	at := fs.String("at", "", "fold the events up to `SEQ|TIME`: a sequence number (events with seq <= SEQ) or an RFC 3339 time (events up to the first one after TIME); default: the whole history")
	asJSON := fs.Bool("json", false, "print the state as JSON (projects by id, nodes by project and id)")
	if err := parseToolFlags(fs, args, &sf); err != nil {
		return err
	}
	var until point
	if *at != "" {
		var err error
		if until, err = parsePoint(*at); err != nil {
			return fmt.Errorf("--at %q: %w", *at, err)
		}
	}
	store, closeStore, err := openToolStore(ctx, sf)
	if err != nil {
		return err
	}
	defer closeStore()
	s, err := foldUntil(ctx, store, sf.computeID, until)
	if err != nil {
		return fmt.Errorf("%w (labd audit --verify lists every problem of the history)", err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(replay.Summarize(s))
	}
	return printState(stdout, sf.computeID, s, until)
}

// errPastPoint stops a fold that reached the moment it was asked for.
var errPastPoint = errors.New("past the requested point")

// foldUntil folds the history of compute from its start, up to the end or
// up to until (when it is not zero): the records up to the first one beyond
// until, in stream order. The state's Seq is where it stopped: every event
// of the compute up to it is folded.
func foldUntil(ctx context.Context, l replay.Loader, compute string, until point) (*replay.State, error) {
	s := replay.New()
	var stoppedAt uint64
	through, err := l.Load(ctx, events.ComputeFilter(compute), 1, func(r events.Record) error {
		if !until.isZero() && until.beyond(r) {
			stoppedAt = r.Seq - 1
			return errPastPoint
		}
		if err := s.Apply(r); err != nil {
			return &foldError{Record: r, Err: err}
		}
		return nil
	})
	switch {
	case errors.Is(err, errPastPoint):
		s.Seq = stoppedAt
	case err != nil:
		return nil, fmt.Errorf("replay compute %s: %w", compute, err)
	default:
		s.Seq = through
	}
	if until.seq != 0 && until.seq < s.Seq {
		s.Seq = until.seq
	}
	return s, nil
}

// foldError is a record the fold refused: the history is corrupt, or was
// written by a build with other rules.
type foldError struct {
	Record events.Record
	Err    error
}

func (e *foldError) Error() string {
	return fmt.Sprintf("sequence %d (%s on %s) does not fold: %v", e.Record.Seq, e.Record.Type, e.Record.Subject, e.Err)
}

func (e *foldError) Unwrap() error { return e.Err }

// printState prints s as two tables, projects then nodes.
func printState(w io.Writer, compute string, s *replay.State, until point) error {
	where := "end of history"
	if !until.isZero() {
		where = "--at " + until.String()
	}
	sum := replay.Summarize(s)
	fmt.Fprintf(w, "compute %s: state at sequence %d (%s): %d projects, %d nodes\n", compute, sum.Seq, where, len(sum.Projects), len(sum.Nodes))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if len(sum.Projects) > 0 {
		fmt.Fprintln(tw, "\nPROJECT\tNAME\tSTATUS\tUDP PORTS")
		for _, p := range sum.Projects {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.ID, p.Name, p.Status, joinInts(p.UDPPorts))
		}
	}
	if len(sum.Nodes) > 0 {
		fmt.Fprintln(tw, "\nPROJECT\tNODE\tKIND\tNAME\tSTATUS\tCONSOLE\tPID\tLINKS")
		for _, n := range sum.Nodes {
			pid := "-"
			if n.Running() {
				pid = strconv.Itoa(n.Process.PID)
			}
			console := "-"
			if n.Console != 0 {
				console = strconv.Itoa(n.Console)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\n", n.ProjectID, n.ID, n.Kind, n.Name, n.Status, console, pid, len(n.Links))
		}
	}
	return tw.Flush()
}

func joinInts(ns []int) string {
	if len(ns) == 0 {
		return "-"
	}
	parts := make([]string, len(ns))
	for i, n := range ns {
		parts[i] = strconv.Itoa(n)
	}
	return strings.Join(parts, ",")
}
