package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"labd/events"
)

// eventsTool is `labd events <subcommand>`; tail is the only one.
func eventsTool(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "tail" {
		fmt.Fprintln(stderr, "usage: labd events tail [flags]   follow new events (labd events tail -h lists the flags)")
		return errUsage
	}
	return tailTool(ctx, args[1:], stdout, stderr)
}

// tailTool is `labd events tail`: it prints the events of a compute as
// they are appended, one line each, until ctx ends (SIGINT or SIGTERM).
func tailTool(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("labd events tail", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var sf storeFlags
	sf.register(fs)
	setUsage(fs, "labd events tail "+storeSynopsis+" [--project ID] [--node ID] [--from SEQ] [--json]",
		`Follow a compute's events as they are appended, one line each, until
interrupted (SIGINT or SIGTERM).`)
	projectID := fs.String("project", "", "only the events of this project `ID` (the project and its nodes)")
	nodeID := fs.String("node", "", "only the events of this node `ID`")
	from := fs.Uint64("from", 0, "start at sequence `SEQ`, printing the stored events from it first (default: only the events appended from now on)")
	asJSON := fs.Bool("json", false, "print JSON lines: one {seq, at, type, project_id, node_id, data} object per event")
	if err := parseToolFlags(fs, args, &sf); err != nil {
		return err
	}
	if err := checkToken("project", *projectID); err != nil {
		return err
	}
	if err := checkToken("node", *nodeID); err != nil {
		return err
	}
	store, closeStore, err := openToolStore(ctx, sf)
	if err != nil {
		return err
	}
	defer closeStore()

	start := *from
	if start == 0 {
		last, err := store.LastSequence(ctx)
		if err != nil {
			return err
		}
		start = last + 1
	}
	filter := aggregateFilter(sf.computeID, *projectID, *nodeID)
	// On stderr, so that stdout stays pure JSON lines with --json; it also
	// tells a script that every event appended from now on will show.
	fmt.Fprintf(stderr, "following %s from sequence %d (interrupt to stop)\n", filter, start)
	ew := &eventWriter{w: stdout, json: *asJSON}
	if err := ew.header(); err != nil {
		return err
	}
	err = store.Follow(ctx, filter, start, func(r events.Record) error { return ew.write(r) })
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return nil // interrupted: the normal end of a tail
	}
	return err
}
