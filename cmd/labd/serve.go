package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"labd/actors"
	"labd/actors/qemu"
	"labd/events"
	"labd/events/jetstream"
	"labd/http/api"
	"labd/http/danube"
	"labd/http/e24"
	"labd/http/notify"
	"labd/http/nova"
	"labd/nio"
)

const defaultGNS3Version = "2.2.59"

// serveConfig is what the serve flags set.
type serveConfig struct {
	host               string
	port               int
	dataDir            string
	computeID          string
	natsURL            string
	natsListen         string
	natsStream         string
	natsReplicas       int
	natsSync           string
	gns3Version        string
	consolePorts       nio.PortRange
	udpPorts           nio.PortRange
	logLevel           slog.Level
	allowServerControl bool
	shutdownTimeout    time.Duration
	vpcsPath           string
	imagesDir          string
	qemuDirs           []string
	vncPorts           nio.PortRange
	qemuShutdown       time.Duration
	keepNodes          bool
	qemuOptions        qemu.OptionPolicy
	cloudInterfaces    []string
	nodeUser           *actors.NodeUser
	authUser           string
	authPassword       string
	noAuth             bool
	allowOrigins       []string
	allowHosts         []string
	novaListen         string
	novaTokens         map[string]string
	novaFlavors        []nova.Flavor
	novaShutdown       time.Duration
	danubeListen       string
	danubeKeys         map[string]danube.Key
	danubeStopTimeout  time.Duration
	e24Listen          string
	e24Keys            map[string]e24.Key
}

// passwordEnv holds the API password when no --auth-password-file is
// given: a command-line value would show in ps.
const passwordEnv = "LABD_AUTH_PASSWORD"

// defaultDataDir is where labd keeps its state: the XDG data directory of
// the account, but /var/lib/labd for root, whose home the node user
// cannot enter.
func defaultDataDir() string {
	if os.Geteuid() == 0 {
		return "/var/lib/labd"
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".local", "share", "labd")
}

func parseServeFlags(args []string) (serveConfig, error) {
	var c serveConfig
	fs := flag.NewFlagSet("labd serve", flag.ContinueOnError)
	hostname, _ := os.Hostname()
	var consoleRange, udpRange, vncRange, qemuDirs, logLevel, nodeUser, passwordFile string
	var qemuAllow []string
	fs.StringVar(&c.host, "host", "127.0.0.1", "address to serve the API on")
	fs.IntVar(&c.port, "port", 3080, "port to serve the API on (0: any free port)")
	fs.StringVar(&c.dataDir, "data-dir", defaultDataDir(), "directory for the event store, projects and images")
	fs.StringVar(&c.computeID, "compute-id", events.ComputeIDFrom(hostname), "this compute's id in event subjects (letters, digits, - and _)")
	fs.StringVar(&c.natsURL, "nats-url", "", "external NATS server or cluster (comma-separated URLs); empty: embedded JetStream in <data-dir>/nats")
	fs.StringVar(&c.natsListen, "nats-listen", "", "also serve the embedded NATS on this host:port (default: in-process only)")
	fs.StringVar(&c.natsStream, "nats-stream", jetstream.DefaultStream, "JetStream stream holding the events")
	fs.IntVar(&c.natsReplicas, "nats-replicas", 0, "stream replicas (0: 1 on a single server, 3 on a cluster)")
	fs.StringVar(&c.natsSync, "nats-sync", "always", `embedded JetStream fsync: "always" (after every event) or an interval such as "1s"`)
	fs.StringVar(&c.gns3Version, "gns3-version", defaultGNS3Version, "GNS3 version reported to clients (a GNS3 controller requires its own)")
	fs.StringVar(&consoleRange, "console-port-range", "5000-10000", "TCP ports for node consoles")
	fs.StringVar(&udpRange, "udp-port-range", "20000-30000", "UDP ports for link tunnels")
	fs.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.BoolVar(&c.allowServerControl, "allow-server-control", false, "allow POST /v1/server/shutdown and /v1/config/reload")
	fs.StringVar(&c.vpcsPath, "vpcs-path", "vpcs", "the VPCS program (a name looked up in PATH, or a path)")
	fs.DurationVar(&c.shutdownTimeout, "shutdown-timeout", 30*time.Second, "how long a graceful shutdown waits for in-flight requests")
	fs.StringVar(&c.imagesDir, "images-dir", "", "image store; QEMU images in its QEMU folder (default: <data-dir>/images)")
	fs.StringVar(&qemuDirs, "qemu-dirs", "", "comma-separated directories searched for qemu-system-* and qemu-img before PATH")
	fs.StringVar(&vncRange, "vnc-port-range", "5900-10000", "the part of the console range VNC consoles take ports from")
	fs.BoolVar(&c.keepNodes, "keep-nodes", false, "leave node processes running when labd stops, for the next labd to adopt")
	fs.DurationVar(&c.qemuShutdown, "qemu-shutdown-timeout", 120*time.Second, "how long a stop with on_close shutdown_signal waits for the guest")
	fs.Func("qemu-allow-option", "also accept this QEMU option (name without the dash) with any argument in a node's options; repeatable (see SECURITY.md)", func(v string) error {
		qemuAllow = append(qemuAllow, v)
		return nil
	})
	fs.Func("cloud-interface", "let cloud nodes use this host interface (a name or a shell pattern such as 'tap*'); repeatable; none by default (see SECURITY.md)", func(v string) error {
		if _, err := path.Match(v, ""); err != nil || v == "" {
			return fmt.Errorf("%q is not an interface name or pattern", v)
		}
		c.cloudInterfaces = append(c.cloudInterfaces, v)
		return nil
	})
	fs.StringVar(&nodeUser, "node-user", actors.DefaultNodeUser, "unprivileged account node processes run as when labd runs as root")
	fs.StringVar(&c.authUser, "auth-user", "", "require HTTP Basic authentication as this user (password from --auth-password-file or "+passwordEnv+")")
	fs.StringVar(&passwordFile, "auth-password-file", "", "file holding the --auth-user password")
	fs.StringVar(&c.novaListen, "nova-listen", "", "also serve the OpenStack Nova API on this host:port of its own (it is always on the main listener at /v2.1/ and /v2/{project_id}/)")
	fs.Func("nova-tokens", "Nova token table `FILE`: one \"TOKEN PROJECT_ID\" per line; without one, Nova takes any token on loopback only", func(v string) (err error) {
		c.novaTokens, err = nova.ReadTokens(v)
		return err
	})
	fs.Func("nova-flavors", "Nova flavor table `FILE` (a JSON array of {id, name, vcpus, ram, disk}) instead of the built-in one", func(v string) (err error) {
		c.novaFlavors, err = nova.ReadFlavors(v)
		return err
	})
	fs.StringVar(&c.danubeListen, "danube-listen", "", "also serve the Danube Cloud API on this host:port of its own (it is always on the main listener at /api/)")
	fs.Func("danube-keys", "Danube Cloud API key table `FILE`: one \"KEY PROJECT_ID [USERNAME]\" per line; without one, Danube takes requests without ES-API-KEY on loopback only", func(v string) (err error) {
		c.danubeKeys, err = danube.ReadKeys(v)
		return err
	})
	fs.DurationVar(&c.danubeStopTimeout, "danube-stop-timeout", danube.DefaultStopTimeout, "how long a Danube stop or reboot without force waits for the guest when the request gives no timeout")
	fs.StringVar(&c.e24Listen, "e24-listen", "", "also serve the e24cloud API on this host:port of its own (it is always on the main listener at /v2/virtual-machines)")
	fs.Func("e24-keys", "e24cloud key table `FILE`: one \"KEY SECRET PROJECT_ID\" per line; without one, e24cloud takes unsigned requests on loopback only", func(v string) (err error) {
		c.e24Keys, err = e24.ReadKeys(v)
		return err
	})
	fs.DurationVar(&c.novaShutdown, "nova-shutdown-timeout", nova.DefaultShutdownTimeout, "how long a Nova os-stop or SOFT reboot waits for the guest before forcing (Nova's shutdown_timeout)")
	fs.BoolVar(&c.noAuth, "no-auth", false, "serve a non-loopback address without authentication (anyone who reaches it controls the host's labs)")
	fs.Func("allow-origin", "also let web pages of this origin (http://host:port) call the API; repeatable", func(v string) error {
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return fmt.Errorf("%q is not an origin (scheme://host[:port])", v)
		}
		c.allowOrigins = append(c.allowOrigins, strings.TrimSuffix(v, "/"))
		return nil
	})
	fs.Func("allow-host", "also answer requests addressed to this host name (besides IP addresses and localhost); repeatable", func(v string) error {
		if v == "" || strings.ContainsAny(v, ":/ ") {
			return fmt.Errorf("%q is not a host name", v)
		}
		c.allowHosts = append(c.allowHosts, v)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return c, errUsage
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("serve: unexpected arguments %q", fs.Args())
	}
	var err error
	if c.consolePorts, err = nio.ParsePortRange(consoleRange); err != nil {
		return c, fmt.Errorf("--console-port-range: %w", err)
	}
	if c.udpPorts, err = nio.ParsePortRange(udpRange); err != nil {
		return c, fmt.Errorf("--udp-port-range: %w", err)
	}
	if c.vncPorts, err = nio.ParsePortRange(vncRange); err != nil {
		return c, fmt.Errorf("--vnc-port-range: %w", err)
	}
	for d := range strings.SplitSeq(qemuDirs, ",") {
		if d = strings.TrimSpace(d); d != "" {
			c.qemuDirs = append(c.qemuDirs, d)
		}
	}
	if c.imagesDir == "" {
		c.imagesDir = filepath.Join(c.dataDir, "images")
	}
	if c.imagesDir, err = filepath.Abs(c.imagesDir); err != nil {
		return c, fmt.Errorf("--images-dir: %w", err)
	}
	if c.qemuShutdown <= 0 {
		return c, fmt.Errorf("--qemu-shutdown-timeout %v: want a positive duration", c.qemuShutdown)
	}
	if err := c.logLevel.UnmarshalText([]byte(logLevel)); err != nil {
		return c, fmt.Errorf("--log-level: %w", err)
	}
	if err := events.ValidateComputeID(c.computeID); err != nil {
		return c, fmt.Errorf("--compute-id: %w", err)
	}
	if c.port < 0 || c.port > 65535 {
		return c, fmt.Errorf("--port %d: not a port", c.port)
	}
	if c.natsSync != "always" {
		if d, err := time.ParseDuration(c.natsSync); err != nil || d <= 0 {
			return c, fmt.Errorf(`--nats-sync %q: want "always" or a positive duration`, c.natsSync)
		}
	}
	if c.natsURL != "" && c.natsListen != "" {
		return c, errors.New("--nats-listen serves the embedded NATS: it does not go with --nats-url")
	}
	if c.qemuOptions, err = qemu.NewOptionPolicy(qemuAllow...); err != nil {
		return c, fmt.Errorf("--qemu-allow-option: %w", err)
	}
	if err := c.readPassword(passwordFile); err != nil {
		return c, err
	}
	if err := c.checkExposure(); err != nil {
		return c, err
	}
	explicitUser := false
	fs.Visit(func(f *flag.Flag) { explicitUser = explicitUser || f.Name == "node-user" })
	switch {
	case os.Geteuid() == 0:
		if c.nodeUser, err = actors.LookupNodeUser(nodeUser); err != nil {
			return c, fmt.Errorf("--node-user: %w (make deps creates %s; labd runs no node as root)", err, actors.DefaultNodeUser)
		}
	case explicitUser:
		return c, fmt.Errorf("--node-user %s: only root can run node processes as another account", nodeUser)
	}
	return c, nil
}

// readPassword takes the --auth-user password from its file or the
// environment, never from the command line.
func (c *serveConfig) readPassword(file string) error {
	switch {
	case c.authUser == "" && file != "":
		return errors.New("--auth-password-file needs --auth-user")
	case c.authUser == "":
		return nil
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("--auth-password-file: %w", err)
		}
		c.authPassword = strings.TrimRight(string(b), "\r\n")
	default:
		c.authPassword = os.Getenv(passwordEnv)
	}
	if c.authPassword == "" {
		return fmt.Errorf("--auth-user %s needs a password: put it in --auth-password-file or %s", c.authUser, passwordEnv)
	}
	if strings.ContainsAny(c.authUser, ":") {
		return errors.New("--auth-user must not hold a colon (HTTP Basic separates user and password with one)")
	}
	return nil
}

// checkExposure refuses to serve the API, or the embedded NATS, on an
// address other machines can reach without authentication, unless
// --no-auth says so: whoever reaches labd runs programs on the host.
func (c *serveConfig) checkExposure() error {
	// GNS3's HTTP Basic does not guard the VM dialects, whose clients
	// send their own credentials.
	if !c.noAuth {
		for _, d := range []struct {
			flag, addr, table string
			has               bool
		}{
			{"--nova-listen", c.novaListen, "--nova-tokens", c.novaTokens != nil},
			{"--danube-listen", c.danubeListen, "--danube-keys", c.danubeKeys != nil},
			{"--e24-listen", c.e24Listen, "--e24-keys", c.e24Keys != nil},
		} {
			if d.addr == "" || d.has {
				continue
			}
			host, _, err := net.SplitHostPort(d.addr)
			if err != nil {
				return fmt.Errorf("%s %q: %w", d.flag, d.addr, err)
			}
			if !isLoopback(host) {
				return fmt.Errorf("%s %s is reachable from other machines: give %s or --no-auth", d.flag, d.addr, d.table)
			}
		}
	}
	if c.authUser != "" || c.noAuth {
		return nil
	}
	if !isLoopback(c.host) {
		return fmt.Errorf("--host %s is reachable from other machines: give --auth-user (and its password) or, to serve it to anyone, --no-auth", c.host)
	}
	if c.natsListen != "" {
		host, _, err := net.SplitHostPort(c.natsListen)
		if err != nil {
			return fmt.Errorf("--nats-listen %q: %w", c.natsListen, err)
		}
		if !isLoopback(host) {
			return fmt.Errorf("--nats-listen %s is reachable from other machines: give --auth-user (NATS clients then log in with it) or --no-auth", c.natsListen)
		}
	}
	return nil
}

// isLoopback reports whether host names only this machine: a loopback
// address or localhost. An empty host is every address.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// serve runs the daemon until ctx ends or an allowed /v1/server/shutdown
// asks it to stop, then shuts down in the reverse order of startup.
func serve(ctx context.Context, args []string) error {
	c, err := parseServeFlags(args)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: c.logLevel}))
	if c.noAuth && c.authUser == "" && (!isLoopback(c.host) || c.natsListen != "") {
		log.Warn("serving without authentication (--no-auth): anyone who reaches labd controls this host's labs", "host", c.host, "nats_listen", c.natsListen)
	}
	if c.nodeUser != nil {
		log.Info("node processes run unprivileged", "node_user", c.nodeUser.Name, "uid", c.nodeUser.UID)
	}
	if w := c.qemuOptions.Widened(); len(w) > 0 {
		log.Warn("QEMU options allowed beyond labd's list: nodes may pass them with any argument", "options", w)
	}

	projectsDir := filepath.Join(c.dataDir, "projects")
	if err := os.MkdirAll(projectsDir, 0o755); err != nil {
		return err
	}
	unlock, err := lockDataDir(c.dataDir)
	if err != nil {
		return err
	}
	defer unlock()

	nc, closeNATSOnce, replicas, err := connectNATS(c, log)
	if err != nil {
		return err
	}
	closeNATS := sync.OnceFunc(closeNATSOnce)
	defer closeNATS()
	if c.natsReplicas > 0 {
		replicas = c.natsReplicas
	}
	store, err := jetstream.Open(ctx, nc, jetstream.Config{Stream: c.natsStream, Replicas: replicas})
	if err != nil {
		return err
	}

	start := time.Now()
	hub := notify.New(notify.Config{Store: store, ComputeID: c.computeID, Logger: log.With("component", "notify")})
	state, err := hub.Rehydrate(ctx)
	if err != nil {
		return err
	}
	log.Info("history replayed", "compute_id", c.computeID, "projects", len(state.Projects), "through_sequence", state.Seq, "took", time.Since(start))

	udpPool, err := nio.NewPool("udp", c.host, c.udpPorts)
	if err != nil {
		return err
	}
	consolePool, err := nio.NewPool("tcp", c.host, c.consolePorts)
	if err != nil {
		return err
	}
	client, err := actors.Start(actors.Config{
		ComputeID:           c.computeID,
		Store:               store,
		ProjectsDir:         projectsDir,
		UDPPorts:            udpPool,
		ConsolePorts:        consolePool,
		Host:                c.host,
		VPCSPath:            c.vpcsPath,
		VNCPorts:            c.vncPorts,
		Images:              qemu.Images{Root: c.imagesDir},
		QEMU:                qemu.Finder{Dirs: c.qemuDirs},
		QEMUShutdownTimeout: c.qemuShutdown,
		QEMUOptions:         c.qemuOptions,
		CloudInterfaces:     c.cloudInterfaces,
		NodeUser:            c.nodeUser,
		KeepNodes:           c.keepNodes,
		Logger:              log.With("component", "actors"),
	}, state)
	if err != nil {
		return err
	}

	ctx, requestStop := context.WithCancel(ctx)
	defer requestStop()
	handler := api.New(api.Config{
		Client:             client,
		Hub:                hub,
		Logger:             log.With("component", "api"),
		Version:            c.gns3Version,
		ConsolePorts:       c.consolePorts,
		ConsolePortsInUse:  client.ConsolePortsInUse,
		Images:             qemu.Images{Root: c.imagesDir},
		QEMU:               qemu.Finder{Dirs: c.qemuDirs},
		AllowServerControl: c.allowServerControl,
		AuthUser:           c.authUser,
		AuthPassword:       c.authPassword,
		AllowOrigins:       c.allowOrigins,
		AllowHosts:         c.allowHosts,
		Shutdown:           requestStop,
		Reload: func() error {
			log.Info("configuration reload requested: labd takes its configuration from flags, there is nothing to re-read")
			return nil
		},
	})

	// Each VM dialect on a listener: it takes requests without keys or
	// tokens only on loopback (or with --no-auth). On a listener of its
	// own, Nova also answers GET / (on the main one GET / is GNS3's).
	novaOn := func(host string, own bool) http.Handler {
		return nova.New(nova.Config{
			Client: client, Images: qemu.Images{Root: c.imagesDir}, Flavors: c.novaFlavors, Tokens: c.novaTokens,
			Open:            c.novaTokens == nil && (isLoopback(host) || c.noAuth),
			ShutdownTimeout: c.novaShutdown, ComputeID: c.computeID, Root: own,
			AllowOrigins: c.allowOrigins, AllowHosts: c.allowHosts, Logger: log.With("component", "nova"),
		})
	}
	danubeOn := func(host string, _ bool) http.Handler {
		return danube.New(danube.Config{
			Client: client, Images: qemu.Images{Root: c.imagesDir}, Keys: c.danubeKeys,
			Open: c.danubeKeys == nil && (isLoopback(host) || c.noAuth), StopTimeout: c.danubeStopTimeout,
			Version: version, AllowOrigins: c.allowOrigins, AllowHosts: c.allowHosts, Logger: log.With("component", "danube"),
		})
	}
	e24On := func(host string, _ bool) http.Handler {
		return e24.New(e24.Config{
			Client: client, Images: qemu.Images{Root: c.imagesDir}, Keys: c.e24Keys,
			Open: c.e24Keys == nil && (isLoopback(host) || c.noAuth), ComputeID: c.computeID,
			AllowOrigins: c.allowOrigins, AllowHosts: c.allowHosts, Logger: log.With("component", "e24"),
		})
	}
	// The main listener routes by path segment: Nova's /v2/{project_id}
	// is any /v2/ segment that is not GNS3's compute nor e24cloud's
	// virtual-machines.
	main := front{gns3: handler, dialects: []dialect{
		{owns: e24.Owns, handler: e24On(c.host, false)},
		{owns: danube.Owns, handler: danubeOn(c.host, false)},
		{owns: func(p string) bool { return nova.Owns(p, "virtual-machines") }, handler: novaOn(c.host, false)},
	}}
	own := []struct {
		name, addr string
		handler    func(host string, own bool) http.Handler
	}{{"Nova", c.novaListen, novaOn}, {"Danube Cloud", c.danubeListen, danubeOn}, {"e24cloud", c.e24Listen, e24On}}

	var wg sync.WaitGroup
	hubCtx, stopHub := context.WithCancel(context.Background())
	wg.Go(func() { hub.Run(hubCtx) })

	ln, err := net.Listen("tcp", net.JoinHostPort(c.host, strconv.Itoa(c.port)))
	if err != nil {
		stopHub()
		wg.Wait()
		client.Stop(context.Background())
		return err
	}
	srv := &http.Server{
		Handler:           main,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	srvErr := make(chan error, 1+len(own))
	wg.Go(func() { srvErr <- srv.Serve(ln) })
	var dialectSrvs []*http.Server
	for _, d := range own {
		if d.addr == "" {
			continue
		}
		host, _, _ := net.SplitHostPort(d.addr)
		dln, err := net.Listen("tcp", d.addr)
		if err != nil {
			srv.Close()
			for _, s := range dialectSrvs {
				s.Close()
			}
			stopHub()
			wg.Wait()
			client.Stop(context.Background())
			return err
		}
		ds := &http.Server{Handler: d.handler(host, true), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
		dialectSrvs = append(dialectSrvs, ds)
		wg.Go(func() { srvErr <- ds.Serve(dln) })
		log.Info("labd serves "+d.name, "addr", dln.Addr().String())
	}
	log.Info("labd is serving", "addr", ln.Addr().String(), "data_dir", c.dataDir, "gns3_version", c.gns3Version, "version", version)

	select {
	case <-ctx.Done():
	case err = <-srvErr:
	}
	log.Info("shutting down")

	// Reverse order: stop taking requests and finish those in flight,
	// then the actors, then the notification feed, then NATS.
	handler.Close()
	sctx, cancel := context.WithTimeout(context.Background(), c.shutdownTimeout)
	defer cancel()
	if serr := srv.Shutdown(sctx); serr != nil {
		log.Warn("in-flight requests did not finish in time", "err", serr)
		srv.Close()
	}
	for _, ds := range dialectSrvs {
		if serr := ds.Shutdown(sctx); serr != nil {
			ds.Close()
		}
	}
	if serr := client.Stop(sctx); serr != nil {
		log.Warn("actors did not stop in time", "err", serr)
	}
	stopHub()
	wg.Wait()
	closeNATS()
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	log.Info("stopped")
	return nil
}

// connectNATS connects to the external NATS given by --nats-url, or starts
// the embedded server. It returns the connection, what closes it all, and
// the replica count the stream should have.
func connectNATS(c serveConfig, log *slog.Logger) (*nats.Conn, func(), int, error) {
	if c.natsURL != "" {
		nc, err := nats.Connect(c.natsURL, nats.Name("labd "+c.computeID), nats.MaxReconnects(-1),
			nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { log.Warn("NATS disconnected", "err", err) }),
			nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("NATS reconnected", "server", nc.ConnectedUrlRedacted()) }))
		if err != nil {
			return nil, nil, 0, fmt.Errorf("connect to NATS %s: %w", c.natsURL, err)
		}
		replicas := 1
		if nc.ConnectedClusterName() != "" {
			replicas = 3
		}
		return nc, func() { nc.Drain() }, replicas, nil
	}
	sc := jetstream.ServerConfig{
		Name:   "labd-" + c.computeID,
		Dir:    filepath.Join(c.dataDir, "nats"),
		Listen: c.natsListen,
		Logger: log.With("component", "nats-server"),
	}
	// With a listener and a password, NATS clients log in as the API's
	// user, who may read the history but not write it; labd's own
	// in-process connection has an account of its own.
	var self *jetstream.User
	if c.natsListen != "" && c.authUser != "" {
		self = &jetstream.User{Name: "labd-" + c.computeID, Password: rand.Text()}
		sc.Users = []jetstream.User{*self, {Name: c.authUser, Password: c.authPassword, Subscriber: true}}
	}
	if c.natsSync != "always" {
		sc.SyncInterval, _ = time.ParseDuration(c.natsSync)
	}
	s, err := jetstream.StartServer(sc)
	if err != nil {
		return nil, nil, 0, err
	}
	if c.natsListen != "" {
		log.Info("embedded NATS serves clients", "url", s.ClientURL())
	}
	nc, err := jetstream.ConnectInProcess(s, "labd "+c.computeID, self)
	if err != nil {
		s.Shutdown()
		return nil, nil, 0, err
	}
	return nc, func() { shutdownEmbedded(nc, s) }, 1, nil
}

func shutdownEmbedded(nc *nats.Conn, s *natsserver.Server) {
	nc.Close()
	s.Shutdown()
	s.WaitForShutdown()
}

// lockDataDir takes an exclusive lock on the data directory, so that two
// daemons never share one event store and one set of projects. The kernel
// releases it when the process dies, however it dies.
func lockDataDir(dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, "labd.lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("data directory %s is in use by another labd", dir)
		}
		return nil, fmt.Errorf("lock data directory %s: %w", dir, err)
	}
	f.Truncate(0)
	f.WriteString(strconv.Itoa(os.Getpid()) + "\n")
	return func() { f.Close() }, nil
}
