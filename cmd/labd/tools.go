package main

// The history tools (labd replay, labd audit, labd events tail) read the
// event store without serving anything. They open it one of two ways:
//
//   - offline, on a data directory: they take the data directory's lock,
//     as labd serve does, and start its embedded JetStream in process with
//     no listener. A running daemon holds that lock, so its store is never
//     opened by two servers at once: the tools refuse and point to
//     --nats-url instead.
//   - online, with --nats-url: a client of a NATS server that labd uses
//     (an external cluster, or the embedded one a daemon serves with
//     --nats-listen), safe while labd runs.
//
// Either way they only read: they refuse a stream that does not exist
// rather than create one.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"labd/events"
	"labd/events/jetstream"
)

// storeFlags locate the event store a tool reads.
type storeFlags struct {
	dataDir   string
	natsURL   string
	stream    string
	computeID string
}

// register adds the store flags to fs, with serve's defaults.
func (f *storeFlags) register(fs *flag.FlagSet) {
	hostname, _ := os.Hostname()
	fs.StringVar(&f.dataDir, "data-dir", defaultDataDir(),
		"labd's data directory `DIR`: read its embedded event store (refused while labd runs on it)")
	fs.StringVar(&f.natsURL, "nats-url", "",
		"read the events from the NATS server or cluster at `URL` (comma-separated URLs) instead of a data directory; works while labd runs")
	fs.StringVar(&f.stream, "nats-stream", jetstream.DefaultStream, "JetStream `STREAM` holding the events")
	fs.StringVar(&f.computeID, "compute-id", events.ComputeIDFrom(hostname), "the compute `ID` whose events to read (labd serve's --compute-id)")
}

// setUsage makes fs's -h print the command's synopsis and what it does
// before its flags.
func setUsage(fs *flag.FlagSet, synopsis, about string) {
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: %s\n\n%s\n\nflags:\n", synopsis, about)
		fs.PrintDefaults()
	}
}

// storeSynopsis is the part of each tool's synopsis naming the store.
const storeSynopsis = "[--data-dir DIR | --nats-url URL] [--nats-stream STREAM] [--compute-id ID]"

// parseToolFlags parses a tool's arguments and checks the store flags.
func parseToolFlags(fs *flag.FlagSet, args []string, sf *storeFlags) error {
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s: unexpected arguments %q", fs.Name(), fs.Args())
	}
	if err := events.ValidateComputeID(sf.computeID); err != nil {
		return fmt.Errorf("--compute-id: %w", err)
	}
	if sf.natsURL != "" && flagSet(fs, "data-dir") {
		return errors.New("--data-dir and --nats-url name two stores: give one")
	}
	return nil
}

// flagSet reports whether the flag name was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	found := false
	fs.Visit(func(f *flag.Flag) { found = found || f.Name == name })
	return found
}

// openToolStore opens the store sf names, online or offline. The returned
// function closes everything it opened, the lock last.
func openToolStore(ctx context.Context, sf storeFlags) (*jetstream.Store, func(), error) {
	if sf.natsURL != "" {
		return openOnline(ctx, sf)
	}
	return openOffline(ctx, sf)
}

func openOnline(ctx context.Context, sf storeFlags) (*jetstream.Store, func(), error) {
	nc, err := nats.Connect(sf.natsURL, nats.Name("labd tool "+sf.computeID), nats.MaxReconnects(-1))
	if err != nil {
		return nil, nil, fmt.Errorf("connect to NATS %s: %w", sf.natsURL, err)
	}
	st, err := openExistingStream(ctx, nc, sf.stream)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return st, nc.Close, nil
}

func openOffline(ctx context.Context, sf storeFlags) (*jetstream.Store, func(), error) {
	if _, err := os.Stat(sf.dataDir); err != nil {
		return nil, nil, fmt.Errorf("data directory: %w", err)
	}
	unlock, err := lockDataDirForTool(sf.dataDir)
	if err != nil {
		return nil, nil, err
	}
	natsDir := filepath.Join(sf.dataDir, "nats")
	if _, err := os.Stat(filepath.Join(natsDir, "jetstream")); err != nil {
		unlock()
		return nil, nil, fmt.Errorf("%s holds no event store (no %s): has labd served on it?", sf.dataDir, natsDir)
	}
	s, err := jetstream.StartServer(jetstream.ServerConfig{
		Name:   "labd-tool-" + sf.computeID,
		Dir:    natsDir,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
	})
	if err != nil {
		unlock()
		return nil, nil, err
	}
	nc, err := jetstream.ConnectInProcess(s, "labd tool "+sf.computeID, nil)
	if err != nil {
		s.Shutdown()
		unlock()
		return nil, nil, err
	}
	closeAll := func() {
		nc.Close()
		s.Shutdown()
		s.WaitForShutdown()
		unlock()
	}
	st, err := openExistingStream(ctx, nc, sf.stream)
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	return st, closeAll, nil
}

// openExistingStream opens the store on a stream that must already exist,
// as it is: jetstream.Open would otherwise create an empty stream under a
// mistyped name, or change a cluster's replicas, and a subscriber's
// account may not change streams at all.
func openExistingStream(ctx context.Context, nc *nats.Conn, name string) (*jetstream.Store, error) {
	st, err := jetstream.Attach(ctx, nc, name)
	if errors.Is(err, natsjs.ErrStreamNotFound) {
		return nil, fmt.Errorf("no stream %s: nothing was recorded there (see --nats-stream)", name)
	}
	return st, err
}

// errDataDirBusy is the refusal of an offline tool on a data directory
// whose lock is held: by a running labd, most likely.
var errDataDirBusy = errors.New("labd is running on this data dir: use --nats-url")

// lockDataDirForTool takes the lock labd serve takes on a data directory
// (an exclusive flock on <dir>/labd.lock), without writing the pid in it:
// the file names the last daemon, not a tool.
func lockDataDirForTool(dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, "labd.lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock data directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s: %w", dir, errDataDirBusy)
		}
		return nil, fmt.Errorf("lock data directory %s: %w", dir, err)
	}
	return func() { f.Close() }, nil
}

// checkToken refuses an id that cannot be one token of a subject filter.
func checkToken(flagName, id string) error {
	if id != "" && strings.ContainsAny(id, ".*> \t\r\n") {
		return fmt.Errorf("--%s %q: not an id", flagName, id)
	}
	return nil
}

// aggregateFilter is the subject filter for the events of one compute,
// narrowed to a project, a node, or a node of a project.
func aggregateFilter(compute, projectID, nodeID string) string {
	switch {
	case projectID != "" && nodeID != "":
		return events.NodeSubject(compute, projectID, nodeID)
	case projectID != "":
		return events.ProjectFilter(compute, projectID)
	case nodeID != "":
		return events.Prefix + "." + compute + ".*.node." + nodeID
	}
	return events.ComputeFilter(compute)
}

// point is a moment of history: a stream sequence or a time.
type point struct {
	seq uint64
	at  time.Time
}

// parsePoint reads a sequence number or an RFC 3339 time.
func parsePoint(s string) (point, error) {
	if n, err := strconv.ParseUint(s, 10, 64); err == nil {
		if n == 0 {
			return point{}, errors.New("sequences start at 1")
		}
		return point{seq: n}, nil
	}
	t, err := parseTime(s)
	if err != nil {
		return point{}, errors.New("want a sequence number or an RFC 3339 time (2026-11-22T10:00:00Z)")
	}
	return point{at: t}, nil
}

func parseTime(s string) (time.Time, error) { return time.Parse(time.RFC3339Nano, s) }

func (p point) isZero() bool { return p.seq == 0 && p.at.IsZero() }

// beyond reports whether r comes after p.
func (p point) beyond(r events.Record) bool {
	if p.seq != 0 {
		return r.Seq > p.seq
	}
	return r.At.After(p.at)
}

func (p point) String() string {
	if p.seq != 0 {
		return strconv.FormatUint(p.seq, 10)
	}
	return p.at.Format(time.RFC3339Nano)
}

// eventLine is one event of the JSON lines output of audit and tail.
type eventLine struct {
	Seq       uint64      `json:"seq"`
	At        time.Time   `json:"at"`
	Type      events.Type `json:"type"`
	ProjectID string      `json:"project_id"`
	NodeID    string      `json:"node_id"`
	Data      events.Data `json:"data"`
}

// timeLayout is how the tables print times: UTC, to the millisecond.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// maxDataText caps a payload in the table; --json prints it whole.
const maxDataText = 160

// eventWriter prints events as a table or as JSON lines.
type eventWriter struct {
	w       io.Writer
	json    bool
	started bool // the table's header was written
}

const eventRowFormat = "%-8s %-24s %-36s %-36s %-26s %s\n"

// write prints one event.
func (ew *eventWriter) write(r events.Record) error {
	project, node := r.ProjectID, r.NodeID
	if subj, err := events.ParseSubject(r.Subject); err == nil {
		project, node = subj.ProjectID, subj.NodeID
	}
	if ew.json {
		b, err := json.Marshal(eventLine{Seq: r.Seq, At: r.At, Type: r.Type, ProjectID: project, NodeID: node, Data: r.Data})
		if err != nil {
			return fmt.Errorf("sequence %d: %w", r.Seq, err)
		}
		_, err = fmt.Fprintf(ew.w, "%s\n", b)
		return err
	}
	if err := ew.header(); err != nil {
		return err
	}
	data, err := json.Marshal(r.Data)
	if err != nil {
		return fmt.Errorf("sequence %d: %w", r.Seq, err)
	}
	_, err = fmt.Fprintf(ew.w, eventRowFormat, strconv.FormatUint(r.Seq, 10), r.At.Format(timeLayout),
		orDash(project), orDash(node), r.Type, compactData(data))
	return err
}

// header prints the table's header once (not in JSON mode).
func (ew *eventWriter) header() error {
	if ew.json || ew.started {
		return nil
	}
	ew.started = true
	_, err := fmt.Fprintf(ew.w, eventRowFormat, "SEQ", "TIME", "PROJECT", "NODE", "TYPE", "DATA")
	return err
}

// compactData shortens a payload's JSON for a table row.
func compactData(b []byte) string {
	s := string(b)
	if s == "{}" || s == "null" {
		return ""
	}
	if len(s) <= maxDataText {
		return s
	}
	cut := maxDataText
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
