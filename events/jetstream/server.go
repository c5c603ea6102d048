package jetstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"labd/events"
)

// ServerConfig configures the embedded NATS server.
type ServerConfig struct {
	// Name is the server name (it shows in logs and cluster views).
	Name string
	// Dir is the storage directory; JetStream keeps its files under
	// Dir/jetstream.
	Dir string
	// Listen, when set ("host:port"), also serves NATS clients over TCP.
	// Empty: in-process connections only, no listener at all.
	Listen string
	// SyncInterval is how often stored messages are fsynced. Zero means
	// after every write, so an acknowledged event survives a power cut.
	SyncInterval time.Duration
	// MaxStore caps JetStream's disk usage (bytes); 0 picks 64 GiB.
	MaxStore int64
	// Logger receives the server's log lines. Required: without it the
	// server fails to start silently.
	Logger *slog.Logger
	// Users, when set, are the only accounts clients may connect as, the
	// in-process connection included (ConnectInProcess with its user).
	// Without them any client that reaches Listen may do anything.
	Users []User
}

// User is an account of the embedded server.
type User struct {
	Name, Password string
	// Subscriber limits the account to reading: it may subscribe to
	// anything and consume the stream, but not publish events nor create,
	// change, purge or delete streams, so it cannot rewrite the history.
	Subscriber bool
}

// subscriberDenied are the subjects a Subscriber may not publish to: the
// events themselves, and the JetStream API calls that change streams.
var subscriberDenied = []string{
	events.Prefix + ".>",
	"$JS.API.STREAM.CREATE.>", "$JS.API.STREAM.UPDATE.>", "$JS.API.STREAM.DELETE.>",
	"$JS.API.STREAM.PURGE.>", "$JS.API.STREAM.MSG.DELETE.>", "$JS.API.STREAM.RESTORE.>",
	"$JS.API.STREAM.PEER.>", "$JS.API.STREAM.LEADER.>", "$JS.API.CONSUMER.LEADER.>",
	"$JS.API.ACCOUNT.PURGE.>", "$JS.API.META.>", "$JS.API.SERVER.>",
}

func serverUsers(us []User) []*server.User {
	var out []*server.User
	for _, u := range us {
		su := &server.User{Username: u.Name, Password: u.Password}
		if u.Subscriber {
			su.Permissions = &server.Permissions{Publish: &server.SubjectPermission{Deny: subscriberDenied}}
		}
		out = append(out, su)
	}
	return out
}

// StartServer starts an embedded JetStream server and waits until it
// accepts connections.
func StartServer(cfg ServerConfig) (*server.Server, error) {
	if cfg.Logger == nil {
		return nil, errors.New("jetstream: ServerConfig.Logger is required")
	}
	maxStore := cfg.MaxStore
	if maxStore == 0 {
		maxStore = 64 << 30
	}
	opts := &server.Options{
		ServerName:             cfg.Name,
		JetStream:              true,
		StoreDir:               cfg.Dir,
		JetStreamMaxMemory:     256 << 20,
		JetStreamMaxStore:      maxStore,
		NoSigs:                 true, // labd owns SIGINT/SIGTERM; nats-server would os.Exit
		DisableJetStreamBanner: true,
		SyncAlways:             cfg.SyncInterval == 0,
		SyncInterval:           cfg.SyncInterval,
		Users:                  serverUsers(cfg.Users),
	}
	if cfg.Listen == "" {
		opts.DontListen = true
	} else {
		host, port, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("jetstream: listen address %q: %w", cfg.Listen, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil || p < 0 || p > 65535 {
			return nil, fmt.Errorf("jetstream: listen port %q is not a port number", port)
		}
		if p == 0 {
			p = -1 // nats-server reads 0 as 4222; -1 is "any free port"
		}
		opts.Host, opts.Port = host, p
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	s.SetLoggerV2(slogLogger{cfg.Logger}, cfg.Logger.Enabled(context.Background(), slog.LevelDebug), false, false)
	s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		return nil, errors.New("jetstream: embedded server did not become ready (see its log lines)")
	}
	if !s.JetStreamEnabled() {
		s.Shutdown()
		return nil, errors.New("jetstream: embedded server started without JetStream (see its log lines)")
	}
	return s, nil
}

// ConnectInProcess connects to an embedded server without a socket, as
// user when the server has accounts (nil: none).
func ConnectInProcess(s *server.Server, name string, user *User) (*nats.Conn, error) {
	opts := []nats.Option{nats.InProcessServer(s), nats.Name(name), nats.MaxReconnects(-1)}
	if user != nil {
		opts = append(opts, nats.UserInfo(user.Name, user.Password))
	}
	nc, err := nats.Connect("", opts...)
	if err != nil {
		return nil, fmt.Errorf("jetstream: connect to embedded server: %w", err)
	}
	return nc, nil
}

// slogLogger routes nats-server's log calls to slog. Fatalf must not exit:
// the daemon decides what a failed start means.
type slogLogger struct{ l *slog.Logger }

func (g slogLogger) Noticef(format string, v ...any) { g.l.Info(fmt.Sprintf(format, v...)) }
func (g slogLogger) Warnf(format string, v ...any)   { g.l.Warn(fmt.Sprintf(format, v...)) }
func (g slogLogger) Fatalf(format string, v ...any)  { g.l.Error(fmt.Sprintf(format, v...)) }
func (g slogLogger) Errorf(format string, v ...any)  { g.l.Error(fmt.Sprintf(format, v...)) }
func (g slogLogger) Debugf(format string, v ...any)  { g.l.Debug(fmt.Sprintf(format, v...)) }
func (g slogLogger) Tracef(format string, v ...any)  { g.l.Debug(fmt.Sprintf(format, v...)) }
