// Command labd is a GNS3-compatible compute daemon: it serves the GNS3
// compute API (/v1 and /v2/compute), keeps every state change as an event in
// NATS JetStream, and rebuilds itself from that history when it starts.
//
// Usage:
//
//	labd serve [flags]         run the daemon (labd serve -h lists the flags)
//	labd replay [flags]        print the state rebuilt from the history, now or at a past moment
//	labd audit [flags]         print the timeline of events, or check the history (--verify)
//	labd events tail [flags]   follow new events live
//	labd version               print labd's version and the GNS3 version it reports
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// version is labd's own version; the GNS3 version it reports is a flag.
var version = "0.1.0-dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		if !errors.Is(err, errUsage) {
			fmt.Fprintln(os.Stderr, "labd:", err)
		}
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		usage()
		return errUsage
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:])
	case "replay":
		return replayTool(ctx, args[1:], os.Stdout, os.Stderr)
	case "audit":
		return auditTool(ctx, args[1:], os.Stdout, os.Stderr)
	case "events":
		return eventsTool(ctx, args[1:], os.Stdout, os.Stderr)
	case "version", "--version":
		fmt.Printf("labd %s (reports GNS3 %s by default)\n", version, defaultGNS3Version)
		return nil
	case "help", "-h", "--help":
		usage()
		return nil
	}
	fmt.Fprintf(os.Stderr, "labd: unknown command %q\n", args[0])
	usage()
	return errUsage
}

func usage() {
	fmt.Fprint(os.Stderr, `usage: labd <command> [flags]

commands:
  serve         run the compute daemon (labd serve -h for its flags)
  replay        print the state rebuilt from the history, now or --at a past moment
  audit         print the timeline of events; --verify checks the history
  events tail   follow new events live, until interrupted
  version       print the version

replay, audit and events tail read a stopped labd's --data-dir, or a running
labd's NATS through --nats-url (labd <command> -h for their flags).
`)
}
