package nio

// The relay benchmark measures the bridge against a direct loopback path the
// way /work/shared/reference/dataplane-anchors.md measured ubridge: a sender
// doing one write(2) per datagram flat out, a recvmmsg sink with a large
// SO_RCVBUF, and the relay in a process of its own (this test binary
// re-executed, see TestMain) whose CPU time is read from /proc.
//
// Every cell is one fixed-duration trial per benchmark invocation, whatever
// b.N is; the numbers are reported as custom metrics and as a table.
//
// Knobs (environment of `go test -bench`):
//
//	NIO_BENCH_DURATION=2.5s   length of each throughput cell
//	NIO_BENCH_PROFILE=DIR     write the relay child's CPU profile per cell to DIR
//	NIO_BENCH_RELAY_PROCS=N   GOMAXPROCS of the relay child
//	NIO_BENCH_GSO=0           relay without UDP GSO
//	NIO_BENCH_PERF=DIR        run `perf record -g` on the relay child during each cell
//	NIO_BENCH_PERF_MODE=stat  ... or `perf stat` of context switches and syscalls

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"labd/nio/pcap"
)

// clockTick is the unit of utime and stime in /proc/PID/stat (USER_HZ,
// which is 100 on every Linux ABI Go supports).
const clockTick = 10 * time.Millisecond

// Child process environment.
const (
	envNode       = "LABD_NIO_NODE"
	envRemote     = "LABD_NIO_REMOTE"
	envPcap       = "LABD_NIO_PCAP"
	envCPUProfile = "LABD_NIO_CPUPROFILE"
	envLinks      = "LABD_NIO_LINKS"
	envPair       = "LABD_NIO_PAIR"
	envFabric     = "LABD_NIO_FABRIC"
)

// runChild plays a benchmark child role and returns the exit code.
func runChild(role string) int {
	var err error
	switch role {
	case "relay":
		err = childRelay()
	case "idle":
		err = childIdle()
	default:
		err = fmt.Errorf("unknown role %q", role)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench child:", err)
		return 1
	}
	return 0
}

// childRelay runs one bridge: node and remote come from the environment,
// the tunnel and link ports are chosen by the kernel and printed on the
// "ready" line. It relays until stdin closes. With LABD_NIO_PAIR set, it
// runs two linked bridges instead (node - A == B - remote), spliced by a
// Plane when the value is "plane"; with LABD_NIO_FABRIC, a switch or a
// hub (see childFabric).
func childRelay() error {
	node, err := netip.ParseAddrPort(os.Getenv(envNode))
	if err != nil {
		return err
	}
	remote, err := netip.ParseAddrPort(os.Getenv(envRemote))
	if err != nil {
		return err
	}
	if os.Getenv("NIO_BENCH_RAWSYSCALL") == "0" {
		rawSyscalls = false
	}
	if os.Getenv("NIO_BENCH_GSO") == "0" {
		useGSO = false
	}
	if path := os.Getenv(envCPUProfile); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if kind := os.Getenv(envFabric); kind != "" {
		return childFabric(kind, node, remote)
	}
	var b *Bridge
	if pair := os.Getenv(envPair); pair != "" {
		var plane *Plane
		if pair == "plane" {
			plane = NewPlane()
		}
		a, z, err := openPair(node, remote, plane)
		if err != nil {
			return err
		}
		defer a.Close()
		defer z.Close()
		b = a
	} else {
		b, err = OpenBridge(BridgeConfig{Name: "bench", Tunnel: netip.AddrPortFrom(loopback, 0), Node: node})
		if err != nil {
			return err
		}
		defer b.Close()
		if err := b.Attach(netip.AddrPortFrom(loopback, 0), remote); err != nil {
			return err
		}
	}
	if path := os.Getenv(envPcap); path != "" {
		c, err := pcap.Create(path)
		if err != nil {
			return err
		}
		defer c.Close() // after the bridges' Close, deferred earlier
		b.SetCapture(c)
	}
	fmt.Printf("ready %d\n", b.tunnelAddr().Port())
	io.Copy(io.Discard, os.Stdin)
	return nil
}

// openPair opens bridges A (node side) and Z (remote side) whose links
// point at each other on loopback.
func openPair(node, remote netip.AddrPort, plane *Plane) (a, z *Bridge, err error) {
	a, err = OpenBridge(BridgeConfig{Name: "A", Tunnel: netip.AddrPortFrom(loopback, 0), Node: node, Plane: plane})
	if err != nil {
		return nil, nil, err
	}
	z, err = OpenBridge(BridgeConfig{Name: "Z", Tunnel: netip.AddrPortFrom(loopback, 0), Node: remote, Plane: plane})
	if err != nil {
		a.Close()
		return nil, nil, err
	}
	// Bind A's link first on any port, then Z's pointing at it, then
	// re-attach A pointing at Z.
	anyPort := netip.AddrPortFrom(loopback, 0)
	if err = a.Attach(anyPort, netip.AddrPortFrom(loopback, 9)); err == nil {
		la := a.linkAddr()
		if err = z.Attach(anyPort, la); err == nil {
			err = a.Attach(la, z.linkAddr())
		}
	}
	if err != nil {
		a.Close()
		z.Close()
		return nil, nil, err
	}
	return a, z, nil
}

// childIdle opens many bridges, all with the same node and remote, and
// reports its RSS: at start, then (on each "measure" line from stdin)
// after a GC.
func childIdle() error {
	node, err := netip.ParseAddrPort(os.Getenv(envNode))
	if err != nil {
		return err
	}
	remote, err := netip.ParseAddrPort(os.Getenv(envRemote))
	if err != nil {
		return err
	}
	n, err := strconv.Atoi(os.Getenv(envLinks))
	if err != nil {
		return err
	}
	base := settledRSS()
	bridges := make([]*Bridge, 0, n)
	defer func() {
		for _, b := range bridges {
			b.Close()
		}
	}()
	ports := make([]string, 0, n)
	for i := range n {
		b, err := OpenBridge(BridgeConfig{Name: fmt.Sprint("idle-", i), Tunnel: netip.AddrPortFrom(loopback, 0), Node: node})
		if err != nil {
			return err
		}
		bridges = append(bridges, b)
		if err := b.Attach(netip.AddrPortFrom(loopback, 0), remote); err != nil {
			return err
		}
		ports = append(ports, strconv.Itoa(int(b.tunnelAddr().Port())))
	}
	fmt.Printf("ready %d %s\n", base, strings.Join(ports, ","))
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		if sc.Text() == "measure" {
			fmt.Printf("rss %d %d\n", settledRSS(), runtime.NumGoroutine())
		}
	}
	return nil
}

// settledRSS collects garbage, returns freed memory to the OS and reads
// VmRSS in kB.
func settledRSS() int {
	runtime.GC()
	debug.FreeOSMemory()
	time.Sleep(100 * time.Millisecond)
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for line := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			return kb
		}
	}
	return -1
}

// child is a running benchmark child.
type child struct {
	pcap  string // the capture file of a relay child, if any
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Scanner
	ready []string // fields of the "ready" line after the word
}

// startChild starts the test binary in role with env and waits for its
// "ready" line.
func startChild(tb testing.TB, role string, env ...string) *child {
	tb.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), childRoleEnv+"="+role)
	if p := os.Getenv("NIO_BENCH_RELAY_PROCS"); p != "" {
		cmd.Env = append(cmd.Env, "GOMAXPROCS="+p)
	}
	cmd.Env = append(cmd.Env, env...)
	cmd.Stderr = os.Stderr
	cmd.WaitDelay = 5 * time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	c := &child{cmd: cmd, stdin: stdin, out: bufio.NewScanner(stdout)}
	c.out.Buffer(make([]byte, 1<<20), 1<<20)
	tb.Cleanup(func() { c.stop() })
	fields := c.expect(tb, "ready")
	c.ready = fields
	return c
}

// expect reads lines until one starts with word and returns its other
// fields.
func (c *child) expect(tb testing.TB, word string) []string {
	tb.Helper()
	for c.out.Scan() {
		f := strings.Fields(c.out.Text())
		if len(f) > 0 && f[0] == word {
			return f[1:]
		}
	}
	tb.Fatalf("child exited before %q: %v", word, c.out.Err())
	return nil
}

// stop closes the child's stdin and waits for it to exit.
func (c *child) stop() {
	if c.stdin == nil {
		return
	}
	c.stdin.Close()
	c.stdin = nil
	for c.out.Scan() {
	}
	c.cmd.Wait()
}

// perf starts `perf record -g` on the child when NIO_BENCH_PERF names a
// directory, and returns what stops it.
func (c *child) perf(tb testing.TB, name string) (stop func()) {
	dir := os.Getenv("NIO_BENCH_PERF")
	if dir == "" {
		return func() {}
	}
	args := []string{"record", "-g", "-q", "-o", filepath.Join(dir, name+".perf.data")}
	if os.Getenv("NIO_BENCH_PERF_MODE") == "stat" {
		args = []string{"stat", "-o", filepath.Join(dir, name+".perf.txt"), "-e",
			"cs,syscalls:sys_enter_recvmmsg,syscalls:sys_enter_sendmmsg,syscalls:sys_enter_epoll_pwait,syscalls:sys_enter_futex,syscalls:sys_enter_nanosleep"}
	}
	cmd := exec.Command("perf", append(args, "-p", strconv.Itoa(c.cmd.Process.Pid))...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Logf("perf: %v", err)
		return func() {}
	}
	return func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	}
}

// cpu returns the child's user+system CPU time so far.
func (c *child) cpu(tb testing.TB) time.Duration {
	tb.Helper()
	d, err := procCPU(c.cmd.Process.Pid)
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

// procCPU reads utime+stime of pid from /proc.
func procCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the parenthesised command: state is field 3, utime 14, stime 15.
	i := strings.LastIndexByte(string(data), ')')
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(ut+st) * clockTick, nil
}

// machineBusy returns the CPU time all CPUs spent not idle, from /proc/stat.
func machineBusy() time.Duration {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)[1:]
	var busy uint64
	for i, v := range f {
		n, _ := strconv.ParseUint(v, 10, 64)
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return time.Duration(busy) * clockTick
}

// selfCPU is this process's user+system time.
func selfCPU() time.Duration {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// listen opens a UDP socket on 127.0.0.1 with the given receive buffer (0:
// the default).
func listen(tb testing.TB, rcvbuf int) *net.UDPConn {
	tb.Helper()
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(loopback, 0)))
	if err != nil {
		tb.Fatal(err)
	}
	if rcvbuf > 0 {
		if err := c.SetReadBuffer(rcvbuf); err != nil {
			tb.Fatal(err)
		}
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

func addrOf(c *net.UDPConn) netip.AddrPort { return c.LocalAddr().(*net.UDPAddr).AddrPort() }

// connect connects the already bound socket c to to, so that Write is a
// plain write(2).
func connect(tb testing.TB, c *net.UDPConn, to netip.AddrPort) {
	tb.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		tb.Fatal(err)
	}
	var cerr error
	err = rc.Control(func(fd uintptr) {
		cerr = unix.Connect(int(fd), &unix.SockaddrInet4{Port: int(to.Port()), Addr: to.Addr().As4()})
	})
	if err := cmp.Or(err, cerr); err != nil {
		tb.Fatal(err)
	}
}

// counter counts datagrams arriving on a socket with recvmmsg.
type counter struct {
	n    atomic.Uint64
	done chan struct{}
}

func startCounter(c *net.UDPConn) *counter {
	k := &counter{done: make(chan struct{})}
	rc, _ := c.SyscallConn()
	bt := newBatch()
	go func() {
		defer close(k.done)
		rc.Read(func(fd uintptr) bool {
			for {
				n, errno := recvmmsg(fd, bt.recv)
				switch errno {
				case 0:
					k.n.Add(uint64(n))
				case unix.EAGAIN:
					return false
				}
			}
		})
	}()
	return k
}

// settle waits until the count has not moved for 50 ms (at most 1 s).
func (k *counter) settle() uint64 {
	last := k.n.Load()
	for range 20 {
		time.Sleep(50 * time.Millisecond)
		now := k.n.Load()
		if now == last {
			break
		}
		last = now
	}
	return last
}

// path is what a cell sends through.
type path string

const (
	direct     path = "direct"
	viaBridge  path = "bridge"
	viaCapture path = "bridge+capture"
	viaPair    path = "2-bridges"       // node - A == Z - sink, through the link sockets
	viaPlane   path = "2-bridges+plane" // the same, spliced by a Plane
)

// relayPath starts a relay child between node and remote for p and returns
// the address node must send to, or remote itself for the direct path.
func relayPath(tb testing.TB, p path, node, remote netip.AddrPort, profile string) (netip.AddrPort, *child) {
	tb.Helper()
	if p == direct {
		return remote, nil
	}
	env := []string{envNode + "=" + node.String(), envRemote + "=" + remote.String()}
	pcapPath := ""
	switch p {
	case viaCapture:
		pcapPath = filepath.Join(tb.TempDir(), "bench.pcap")
		env = append(env, envPcap+"="+pcapPath)
	case viaPair:
		env = append(env, envPair+"=sockets")
	case viaPlane:
		env = append(env, envPair+"=plane")
	case viaSwitch, viaHub, viaNodesSwitch, viaNodesSwitchPlane:
		env = append(env, envFabric+"="+string(p))
	}
	if dir := os.Getenv("NIO_BENCH_PROFILE"); dir != "" && profile != "" {
		env = append(env, envCPUProfile+"="+filepath.Join(dir, profile+".prof"))
	}
	ch := startChild(tb, "relay", env...)
	ch.pcap = pcapPath
	port, err := strconv.Atoi(ch.ready[0])
	if err != nil {
		tb.Fatal(err)
	}
	return netip.AddrPortFrom(loopback, uint16(port)), ch
}

// throughput is one flat-out cell's outcome.
type throughput struct {
	size           int
	path           path
	sent, received uint64
	dur            time.Duration
	relayCPU       time.Duration
	foreignCPU     time.Duration // CPU used by other processes during the cell
}

func (r throughput) offered() float64   { return float64(r.sent) / r.dur.Seconds() }
func (r throughput) delivered() float64 { return float64(r.received) / r.dur.Seconds() }
func (r throughput) loss() float64      { return 100 * (1 - float64(r.received)/float64(r.sent)) }
func (r throughput) relayUs() float64 {
	if r.received == 0 {
		return 0
	}
	return float64(r.relayCPU.Microseconds()) / float64(r.received)
}

func benchDuration() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("NIO_BENCH_DURATION")); err == nil {
		return d
	}
	return 2500 * time.Millisecond
}

// measureThroughput sends size-byte datagrams flat out for the benchmark
// duration, one write(2) each, through p to a recvmmsg sink.
func measureThroughput(tb testing.TB, size int, p path) throughput {
	sink := listen(tb, 4<<20)
	src := listen(tb, 0)
	to, relay := relayPath(tb, p, addrOf(src), addrOf(sink), fmt.Sprintf("relay-%d-%s", size, p))
	connect(tb, src, to)
	k := startCounter(sink)
	defer func() { sink.Close(); <-k.done }()

	// Make sure the path works before the clock starts.
	buf := benchFrame(p, size)
	for k.n.Load() == 0 {
		src.Write(buf)
		time.Sleep(time.Millisecond)
	}
	teachSink(tb, p, relay, sink)
	k.settle()
	k.n.Store(0)

	res := throughput{size: size, path: p, dur: benchDuration()}
	var cpu0 time.Duration
	if relay != nil {
		cpu0 = relay.cpu(tb)
	}
	if relay != nil {
		defer relay.perf(tb, fmt.Sprintf("relay-%d-%s", size, p))()
	}
	busy0, self0 := machineBusy(), selfCPU()
	start := time.Now()
	for time.Since(start) < res.dur {
		for range 64 {
			if _, err := src.Write(buf); err == nil {
				res.sent++
			}
		}
	}
	res.dur = time.Since(start)
	res.received = k.settle()
	if relay != nil {
		res.relayCPU = relay.cpu(tb) - cpu0
	}
	res.foreignCPU = machineBusy() - busy0 - (selfCPU() - self0) - res.relayCPU
	if relay != nil && relay.pcap != "" {
		// Every delivered frame must be in the capture (it also holds the
		// warm-up frames, and frames the sink's socket dropped).
		relay.stop()
		st, err := os.Stat(relay.pcap)
		if err != nil {
			tb.Fatal(err)
		}
		if captured := (st.Size() - 24) / int64(16+size); captured < int64(res.received) {
			tb.Fatalf("capture holds %d frames, %d were delivered", captured, res.received)
		}
	}
	return res
}

// latency is one ping-pong cell's outcome.
type latency struct {
	path     path
	rtts     []time.Duration // sorted
	lost     int
	relayCPU time.Duration
}

func (l latency) pct(p float64) time.Duration {
	if len(l.rtts) == 0 {
		return 0
	}
	return l.rtts[min(len(l.rtts)-1, int(p*float64(len(l.rtts))))]
}

// measureLatency bounces 64-byte datagrams off an echo socket, one in
// flight: through p, the bridge carries the ping node->link and the pong
// link->node.
func measureLatency(tb testing.TB, p path) latency {
	const warmup, rounds = 200, 10000
	echo := listen(tb, 0)
	client := listen(tb, 0)
	to, relay := relayPath(tb, p, addrOf(client), addrOf(echo), "latency-"+string(p))
	connect(tb, client, to)
	var wg sync.WaitGroup
	defer func() { echo.Close(); wg.Wait() }()
	wg.Go(func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := echo.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			echo.WriteToUDPAddrPort(buf[:n], from)
		}
	})

	res := latency{path: p, rtts: make([]time.Duration, 0, rounds)}
	ping, pong := make([]byte, 64), make([]byte, 2048)
	var cpu0 time.Duration
	for i := range warmup + rounds {
		if i == warmup && relay != nil {
			cpu0 = relay.cpu(tb)
		}
		seq := uint32(i)
		copy(ping, frame(seq, 4))
		start := time.Now()
		client.Write(ping)
		client.SetReadDeadline(start.Add(200 * time.Millisecond))
		for {
			n, err := client.Read(pong)
			if err != nil {
				if i >= warmup {
					res.lost++
				}
				break
			}
			if n == len(ping) && seqOf(pong) == seq { // skip late pongs of lost pings
				if i >= warmup {
					res.rtts = append(res.rtts, time.Since(start))
				}
				break
			}
		}
	}
	if relay != nil {
		res.relayCPU = relay.cpu(tb) - cpu0
	}
	slices.Sort(res.rtts)
	return res
}

// idle is the memory cost of idle links.
type idle struct {
	links             int
	baseKB, trafficKB int
	goroutines        int
	perLinkKB         float64
	delivered         int
}

// measureIdle opens n bridges with links in a child, pushes one 1400-byte
// frame through each, and reads the child's RSS growth.
func measureIdle(tb testing.TB, n int) idle {
	node := listen(tb, 0)
	sink := listen(tb, 4<<20)
	k := startCounter(sink)
	defer func() { sink.Close(); <-k.done }()
	ch := startChild(tb, "idle", envNode+"="+addrOf(node).String(), envRemote+"="+addrOf(sink).String(), envLinks+"="+strconv.Itoa(n))
	res := idle{links: n}
	res.baseKB, _ = strconv.Atoi(ch.ready[0])
	buf := make([]byte, 1400)
	for i, p := range strings.Split(ch.ready[1], ",") {
		port, _ := strconv.Atoi(p)
		node.WriteToUDPAddrPort(buf, netip.AddrPortFrom(loopback, uint16(port)))
		if i%100 == 99 {
			time.Sleep(time.Millisecond) // let the bridges drain; the sink is shared
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for k.n.Load() < uint64(n) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	res.delivered = int(k.n.Load())
	fmt.Fprintln(ch.stdin, "measure")
	f := ch.expect(tb, "rss")
	res.trafficKB, _ = strconv.Atoi(f[0])
	res.goroutines, _ = strconv.Atoi(f[1])
	res.perLinkKB = float64(res.trafficKB-res.baseKB) / float64(n)
	return res
}

// Results of the cells of this run, for ratios and the summary table.
var (
	benchMu     sync.Mutex
	tputCells   = map[string]throughput{}
	latCells    = map[string]latency{}
	idleResults = map[string]idle{}
)

// once runs measure only on the first call for b's name and returns the
// cached result afterwards, so that a cell is one trial whatever b.N the
// framework asks for.
func once[T any](b *testing.B, cache map[string]T, measure func() T) T {
	benchMu.Lock()
	r, ok := cache[b.Name()]
	benchMu.Unlock()
	if !ok {
		r = measure()
		benchMu.Lock()
		cache[b.Name()] = r
		benchMu.Unlock()
	}
	return r
}

// BenchmarkRelay compares flat-out throughput and relay CPU direct vs
// through a bridge (capture off and on), for 64, 512 and 1400-byte
// datagrams.
func BenchmarkRelay(b *testing.B) {
	var rows []throughput
	for _, size := range []int{64, 512, 1400} {
		var directPPS float64
		for _, p := range []path{direct, viaBridge, viaCapture} {
			b.Run(fmt.Sprintf("size=%d/%s", size, p), func(b *testing.B) {
				r := once(b, tputCells, func() throughput { return measureThroughput(b, size, p) })
				if p == direct {
					directPPS = r.delivered()
				}
				b.ReportMetric(0, "ns/op") // a cell is one timed trial, not b.N operations
				b.ReportMetric(r.offered(), "offered-pps")
				b.ReportMetric(r.delivered(), "pps")
				b.ReportMetric(r.loss(), "loss%")
				if directPPS > 0 {
					b.ReportMetric(r.delivered()/directPPS, "ratio")
				}
				if p != direct {
					b.ReportMetric(r.relayUs(), "relay-us/pkt")
				}
				b.ReportMetric(100*r.foreignCPU.Seconds()/r.dur.Seconds(), "foreign-cpu%")
				if b.N == 1 {
					rows = append(rows, r)
				}
			})
		}
	}
	printThroughput(rows)
}

func printThroughput(rows []throughput) {
	if len(rows) == 0 {
		return
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "\nrelay throughput, one write(2) per datagram flat out, %v per cell, GOMAXPROCS=%d (relay child: %s)\n",
		rows[0].dur.Round(100*time.Millisecond), runtime.GOMAXPROCS(0), cmp.Or(os.Getenv("NIO_BENCH_RELAY_PROCS"), "default"))
	fmt.Fprintf(&sb, "%-6s %-22s %12s %12s %7s %6s %13s %9s\n", "size", "path", "offered pps", "delivered", "loss %", "ratio", "relay µs/pkt", "foreign%")
	direct := map[int]float64{}
	for _, r := range rows {
		if r.path == "direct" {
			direct[r.size] = r.delivered()
		}
		ratio, us := "-", "-"
		if d := direct[r.size]; d > 0 {
			ratio = fmt.Sprintf("%.2f", r.delivered()/d)
		}
		if r.path != "direct" {
			us = fmt.Sprintf("%.2f", r.relayUs())
		}
		fmt.Fprintf(&sb, "%-6d %-22s %12.0f %12.0f %7.1f %6s %13s %9.0f\n", r.size, r.path, r.offered(), r.delivered(),
			r.loss(), ratio, us, 100*r.foreignCPU.Seconds()/r.dur.Seconds())
	}
	fmt.Print(sb.String())
}

// BenchmarkPlane compares two linked bridges in one process (one relay
// child) through their link sockets and spliced by a Plane, 512-byte
// datagrams.
func BenchmarkPlane(b *testing.B) {
	var rows []throughput
	for _, p := range []path{viaPair, viaPlane} {
		b.Run(string(p), func(b *testing.B) {
			r := once(b, tputCells, func() throughput { return measureThroughput(b, 512, p) })
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(r.offered(), "offered-pps")
			b.ReportMetric(r.delivered(), "pps")
			b.ReportMetric(r.loss(), "loss%")
			b.ReportMetric(r.relayUs(), "relay-us/pkt")
			if b.N == 1 {
				rows = append(rows, r)
			}
		})
	}
	printThroughput(rows)
}

// BenchmarkLatency measures ping-pong round trips, 64 bytes, one in
// flight, direct vs through a bridge (both of its directions).
func BenchmarkLatency(b *testing.B) {
	var rows []latency
	for _, p := range []path{direct, viaBridge} {
		b.Run(string(p), func(b *testing.B) {
			r := once(b, latCells, func() latency { return measureLatency(b, p) })
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(float64(r.pct(0.5).Nanoseconds())/1e3, "p50-us")
			b.ReportMetric(float64(r.pct(0.99).Nanoseconds())/1e3, "p99-us")
			b.ReportMetric(float64(r.lost), "lost")
			if b.N == 1 {
				rows = append(rows, r)
			}
		})
	}
	if len(rows) == 0 {
		return
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "\nping-pong RTT, 64 B, 1 in flight, %d round trips\n", len(rows[0].rtts)+rows[0].lost)
	fmt.Fprintf(&sb, "%-8s %8s %8s %8s %8s %8s %6s\n", "path", "min µs", "p50 µs", "p90 µs", "p99 µs", "max µs", "lost")
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
	for _, r := range rows {
		fmt.Fprintf(&sb, "%-8s %8.1f %8.1f %8.1f %8.1f %8.1f %6d\n", r.path, us(r.pct(0)), us(r.pct(0.5)), us(r.pct(0.9)),
			us(r.pct(0.99)), us(r.pct(1)), r.lost)
	}
	fmt.Print(sb.String())
}

// BenchmarkIdleLinks measures the resident memory of idle links: 1000
// bridges with attached links in a child process, each having relayed one
// 1400-byte frame.
func BenchmarkIdleLinks(b *testing.B) {
	const n = 1000
	r := once(b, idleResults, func() idle { return measureIdle(b, n) })
	if r.delivered < n {
		b.Fatalf("only %d of %d frames crossed their bridge", r.delivered, n)
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(r.perLinkKB, "KB/link")
	if b.N == 1 {
		fmt.Printf("\nidle links: %d bridges with links, one 1400 B frame each: RSS %d kB -> %d kB, %.1f KB/link, %d goroutines\n",
			n, r.baseKB, r.trafficKB, r.perLinkKB, r.goroutines)
	}
}

// BenchmarkRelayInProcess relays one 512-byte frame per iteration through
// a bridge in this process (node -> link) and reports allocations per
// relayed packet, which must be 0.
func BenchmarkRelayInProcess(b *testing.B) {
	for _, capture := range []bool{false, true} {
		b.Run(fmt.Sprintf("capture=%v", capture), func(b *testing.B) {
			r := newRig(b, true)
			if capture {
				c, err := pcap.Create(filepath.Join(b.TempDir(), "x.pcap"))
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				r.b.SetCapture(c)
			}
			f := frame(1, 512)
			to := r.b.tunnelAddr()
			for range 100 { // warm up: the first wake-up fills the batch pool
				r.node.c.WriteToUDPAddrPort(f, to)
				r.peer.c.ReadFromUDPAddrPort(r.peer.buf)
			}
			b.ReportAllocs()
			for b.Loop() {
				r.node.c.WriteToUDPAddrPort(f, to)
				r.peer.c.ReadFromUDPAddrPort(r.peer.buf)
			}
		})
	}
}
