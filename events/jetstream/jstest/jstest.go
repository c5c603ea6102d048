// Package jstest starts real, embedded JetStream servers for tests: each on
// its own temporary directory, in process, with no TCP listener unless asked.
package jstest

import (
	"log/slog"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"labd/events/jetstream"
)

// Env is a running embedded server, a connection to it and a store on it.
type Env struct {
	Server *server.Server
	Conn   *nats.Conn
	Store  *jetstream.Store
	Dir    string
}

// Options tune Start.
type Options struct {
	// Dir reuses a storage directory (to test restarts); empty: t.TempDir().
	Dir string
	// Listen serves TCP clients too, e.g. "127.0.0.1:0".
	Listen string
	// SyncAlways fsyncs every write, as labd does by default. Tests leave it
	// off unless durability across a power cut is what they test: a killed
	// process loses nothing either way.
	SyncAlways bool
}

// Start starts a server, connects to it and opens the labd stream. All of
// it is shut down when the test ends.
func Start(t testing.TB, opts Options) *Env {
	t.Helper()
	dir := opts.Dir
	if dir == "" {
		dir = t.TempDir()
	}
	cfg := jetstream.ServerConfig{
		Name:   "test",
		Dir:    dir,
		Listen: opts.Listen,
		Logger: slog.New(slog.DiscardHandler),
	}
	if !opts.SyncAlways {
		cfg.SyncInterval = 2 * 60e9 // nats-server's own default: two minutes
	}
	s, err := jetstream.StartServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := jetstream.ConnectInProcess(s, "test", nil)
	if err != nil {
		s.Shutdown()
		t.Fatal(err)
	}
	st, err := jetstream.Open(t.Context(), nc, jetstream.Config{})
	if err != nil {
		nc.Close()
		s.Shutdown()
		t.Fatal(err)
	}
	env := &Env{Server: s, Conn: nc, Store: st, Dir: dir}
	t.Cleanup(env.Stop)
	return env
}

// Stop closes the connection and shuts the server down; it is safe to call
// more than once.
func (e *Env) Stop() {
	if !e.Conn.IsClosed() {
		e.Conn.Close()
	}
	e.Server.Shutdown()
	e.Server.WaitForShutdown()
}
