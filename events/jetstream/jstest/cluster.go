package jstest

import (
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// clusterName is the NATS cluster name of every test cluster.
const clusterName = "labd-test"

// Cluster is a JetStream cluster of nats-servers running in the test's
// process, each listening for clients and routes on its own 127.0.0.1
// ports and storing under its own temporary directory. A node can be
// killed and restarted on the same ports and directory.
type Cluster struct {
	t     testing.TB
	nodes []*clusterNode
	log   *logSink
}

// clusterNode is one member of a Cluster: what it needs to start again
// as itself, and the server while it runs.
type clusterNode struct {
	name        string
	dir         string
	clientPort  int
	clusterPort int

	mu  sync.Mutex
	srv *server.Server // nil while killed
}

// StartCluster starts n nodes (three, for replicated streams) and waits
// until JetStream has a meta leader that sees every node. The cluster is
// shut down when the test ends; the servers' log lines are shown if it
// failed.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	if n < 1 {
		t.Fatalf("jstest: a cluster of %d nodes", n)
	}
	// The directory first: cleanups run last-registered first, and the
	// nodes must be down before their directories are removed.
	root := t.TempDir()
	c := &Cluster{t: t, log: &logSink{}}
	t.Cleanup(func() {
		c.Shutdown()
		if t.Failed() {
			t.Logf("nats-server log lines (warnings and errors):\n%s", c.log.String())
		}
	})
	ports := freeTCPPorts(t, 2*n)
	for i := range n {
		c.nodes = append(c.nodes, &clusterNode{
			name:        "n" + strconv.Itoa(i),
			dir:         filepath.Join(root, "n"+strconv.Itoa(i)),
			clientPort:  ports[2*i],
			clusterPort: ports[2*i+1],
		})
	}
	for i := range c.nodes {
		if err := c.start(i); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.waitMetaLeader(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	return c
}

// URL returns node i's client URL.
func (c *Cluster) URL(i int) string {
	return "nats://127.0.0.1:" + strconv.Itoa(c.nodes[i].clientPort)
}

// URLs returns the client URLs of every node, comma-separated, as
// nats.Connect and labd's --nats-url take them. With first >= 0, node
// first's URL comes first (to connect to it with nats.DontRandomize);
// otherwise they are in node order.
func (c *Cluster) URLs(first ...int) string {
	urls := make([]string, 0, len(c.nodes))
	for _, i := range first {
		urls = append(urls, c.URL(i))
	}
	for i := range c.nodes {
		if !slices.Contains(first, i) {
			urls = append(urls, c.URL(i))
		}
	}
	return strings.Join(urls, ",")
}

// Connect connects to the cluster as labd does with --nats-url: every
// node's URL, reconnecting forever; opts add to or override that. The
// connection is closed when the test ends.
func (c *Cluster) Connect(name string, opts ...nats.Option) *nats.Conn {
	c.t.Helper()
	return c.connect(name, c.URLs(), opts)
}

// ConnectTo is Connect, but to node i first: the connection moves to
// another node only when node i goes away.
func (c *Cluster) ConnectTo(i int, name string, opts ...nats.Option) *nats.Conn {
	c.t.Helper()
	return c.connect(name, c.URLs(i), append([]nats.Option{nats.DontRandomize()}, opts...))
}

func (c *Cluster) connect(name, urls string, opts []nats.Option) *nats.Conn {
	c.t.Helper()
	nc, err := nats.Connect(urls, append([]nats.Option{nats.Name(name), nats.MaxReconnects(-1)}, opts...)...)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(nc.Close)
	return nc
}

// Server returns node i's server, nil while it is killed.
func (c *Cluster) Server(i int) *server.Server {
	n := c.nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.srv
}

// Kill shuts node i down and waits until it has stopped. It is a clean
// shutdown: the node hands off the raft groups it leads before it goes,
// as a nats-server does on SIGTERM.
func (c *Cluster) Kill(i int) {
	n := c.nodes[i]
	n.mu.Lock()
	s := n.srv
	n.srv = nil
	n.mu.Unlock()
	if s != nil {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

// Restart starts a killed node i again, on its ports and directory, and
// waits until it accepts clients. It does not wait for the node to catch
// up with the cluster.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	if err := c.start(i); err != nil {
		c.t.Fatal(err)
	}
}

// StreamLeader returns the index of the node leading the stream (in the
// global account), -1 if no running node leads it.
func (c *Cluster) StreamLeader(stream string) int {
	for i := range c.nodes {
		if s := c.Server(i); s != nil && s.JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, stream) {
			return i
		}
	}
	return -1
}

// StreamCurrent reports whether node i is running and caught up with
// the stream's leader.
func (c *Cluster) StreamCurrent(i int, stream string) bool {
	s := c.Server(i)
	return s != nil && s.JetStreamIsStreamCurrent(server.DEFAULT_GLOBAL_ACCOUNT, stream)
}

// MetaLeader returns the index of the node leading the JetStream meta
// group, -1 if there is none.
func (c *Cluster) MetaLeader() int {
	for i := range c.nodes {
		if s := c.Server(i); s != nil && s.JetStreamIsLeader() {
			return i
		}
	}
	return -1
}

// Shutdown stops every running node; it is safe to call more than once.
func (c *Cluster) Shutdown() {
	var wg sync.WaitGroup
	for i := range c.nodes {
		wg.Go(func() { c.Kill(i) })
	}
	wg.Wait()
}

// start starts node i, which must not be running.
func (c *Cluster) start(i int) error {
	n := c.nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.srv != nil {
		return fmt.Errorf("jstest: node %s is already running", n.name)
	}
	routes := make([]string, len(c.nodes))
	for j, m := range c.nodes {
		// Every node lists every route, its own included: JetStream sizes
		// its meta group from the route count.
		routes[j] = "nats-route://127.0.0.1:" + strconv.Itoa(m.clusterPort)
	}
	opts := &server.Options{
		ServerName:             n.name,
		Host:                   "127.0.0.1",
		Port:                   n.clientPort,
		JetStream:              true,
		StoreDir:               n.dir,
		JetStreamMaxMemory:     64 << 20,
		JetStreamMaxStore:      1 << 30,
		NoSigs:                 true,
		DisableJetStreamBanner: true,
		Cluster: server.ClusterOpts{
			Name: clusterName,
			Host: "127.0.0.1",
			Port: n.clusterPort,
		},
		Routes: server.RoutesFromStr(strings.Join(routes, ",")),
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("jstest: node %s: %w", n.name, err)
	}
	s.SetLoggerV2(&serverLog{node: n.name, sink: c.log}, false, false, false)
	s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		return fmt.Errorf("jstest: node %s did not become ready; log:\n%s", n.name, c.log.String())
	}
	n.srv = s
	return nil
}

// waitMetaLeader waits until a node leads the JetStream meta group and
// sees every node online.
func (c *Cluster) waitMetaLeader(within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		if i := c.MetaLeader(); i >= 0 {
			if s := c.Server(i); s != nil && len(s.JetStreamClusterPeers()) == len(c.nodes) {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("jstest: no JetStream meta leader seeing all %d nodes after %v; log:\n%s", len(c.nodes), within, c.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freeTCPPorts returns n distinct TCP ports on 127.0.0.1 that were free a
// moment ago. They stay reserved for the nodes' restarts.
func freeTCPPorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, n)
	lns := make([]net.Listener, n)
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[i] = ln
		ports[i] = ln.Addr().(*net.TCPAddr).Port
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}

// serverLog keeps a node's warnings and errors; Fatalf must not exit.
type serverLog struct {
	node string
	sink *logSink
}

func (l *serverLog) Noticef(string, ...any)         {}
func (l *serverLog) Debugf(string, ...any)          {}
func (l *serverLog) Tracef(string, ...any)          {}
func (l *serverLog) Warnf(format string, v ...any)  { l.sink.add(l.node, "WRN", format, v) }
func (l *serverLog) Errorf(format string, v ...any) { l.sink.add(l.node, "ERR", format, v) }
func (l *serverLog) Fatalf(format string, v ...any) { l.sink.add(l.node, "FTL", format, v) }

// logSink is the cluster's log, bounded to its last lines.
type logSink struct {
	mu    sync.Mutex
	lines []string
}

const maxLogLines = 500

func (s *logSink) add(node, level, format string, v []any) {
	line := time.Now().Format("15:04:05.000") + " " + node + " " + level + " " + fmt.Sprintf(format, v...)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.lines) == maxLogLines {
		s.lines = append(s.lines[:0], s.lines[1:]...)
	}
	s.lines = append(s.lines, line)
}

func (s *logSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.lines, "\n")
}
