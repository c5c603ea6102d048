package nio

// The fabric benchmarks put a switch (two access ports of one VLAN) or a
// hub (two ports) where BenchmarkRelay puts a bridge, in the same relay
// child process, with the same sender and sink:
//
//	sender -> port 0's link | switch | port 1's link -> sink
//
// which is one relay hop, like a bridge's. The sender's frames go from one
// MAC to another; the sink's MAC is taught to the switch before the clock
// starts (one frame from the sink), so the switch forwards known unicast.

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"labd/nio/pcap"
)

const (
	viaSwitch path = "switch"
	viaHub    path = "hub"
	// Two node ports (bridges) with a switch between them, as in a lab of
	// two VPCS on a switch: sender -> bridge == switch == bridge -> sink.
	viaNodesSwitch      path = "node-switch-node"
	viaNodesSwitchPlane path = "node-switch-node+plane" // the same, spliced by a Plane
)

// switched reports whether p's frames cross a switch, and fabric whether
// they cross a switch or a hub.
func (p path) switched() bool {
	return p == viaSwitch || p == viaNodesSwitch || p == viaNodesSwitchPlane
}
func (p path) fabric() bool { return p.switched() || p == viaHub }

// The MACs of the benchmarks' sender and sink.
var benchSrcMAC, benchSinkMAC = mac(0x51), mac(0x52)

// benchFrame is what the sender sends through p: zeros, or for a fabric
// an Ethernet frame from the sender's MAC to the sink's.
func benchFrame(p path, size int) []byte {
	buf := make([]byte, size)
	if p.fabric() {
		copy(buf, benchSinkMAC)
		copy(buf[macLen:], benchSrcMAC)
		binary.BigEndian.PutUint16(buf[tagOffset:], testEthertype)
	}
	return buf
}

// teachSink sends a frame from the sink into the relay's sink side, so
// that the switch knows where the sink's MAC is.
func teachSink(tb testing.TB, p path, relay *child, sink *net.UDPConn) {
	tb.Helper()
	if !p.switched() {
		return
	}
	port, err := strconv.Atoi(relay.ready[1])
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := sink.WriteToUDPAddrPort(ether(benchSrcMAC, benchSinkMAC, 0), netip.AddrPortFrom(loopback, uint16(port))); err != nil {
		tb.Fatal(err)
	}
}

// childFabric runs a switch or a hub of two ports in the relay child:
// port 0's link talks to node, port 1's to remote; or, for the
// node-switch-node paths, the switch's ports link to two bridges whose
// tunnels talk to node and remote. The "ready" line gives the ports node
// and remote send to.
func childFabric(kind string, node, remote netip.AddrPort) error {
	if p := path(kind); p == viaNodesSwitch || p == viaNodesSwitchPlane {
		return childNodesSwitch(node, remote, p == viaNodesSwitchPlane)
	}
	var open func(int) (*Bridge, error)
	switch kind {
	case string(viaSwitch):
		sw := NewSwitch(SwitchConfig{Name: "bench"})
		defer sw.Close()
		open = func(n int) (*Bridge, error) { return sw.OpenPort(n, access(1)) }
	case string(viaHub):
		h := NewHub(HubConfig{Name: "bench"})
		defer h.Close()
		open = h.OpenPort
	default:
		return fmt.Errorf("unknown fabric %q", kind)
	}
	any := netip.AddrPortFrom(loopback, 0)
	var ports [2]*Bridge
	for i, peer := range []netip.AddrPort{node, remote} {
		b, err := open(i)
		if err != nil {
			return err
		}
		if err := b.Attach(any, peer); err != nil {
			return err
		}
		ports[i] = b
	}
	fmt.Printf("ready %d %d\n", ports[0].linkAddr().Port(), ports[1].linkAddr().Port())
	io.Copy(io.Discard, os.Stdin)
	return nil
}

func childNodesSwitch(node, remote netip.AddrPort, splice bool) error {
	var plane *Plane
	if splice {
		plane = NewPlane()
	}
	sw := NewSwitch(SwitchConfig{Name: "bench", Plane: plane})
	defer sw.Close()
	var tunnels [2]netip.AddrPort
	for i, peer := range []netip.AddrPort{node, remote} {
		b, err := OpenBridge(BridgeConfig{Name: fmt.Sprint("node-", i), Tunnel: netip.AddrPortFrom(loopback, 0), Node: peer, Plane: plane})
		if err != nil {
			return err
		}
		defer b.Close()
		p, err := sw.OpenPort(i, access(1))
		if err != nil {
			return err
		}
		if err := linkBridges(b, p); err != nil {
			return err
		}
		tunnels[i] = b.tunnelAddr()
	}
	fmt.Printf("ready %d %d\n", tunnels[0].Port(), tunnels[1].Port())
	io.Copy(io.Discard, os.Stdin)
	return nil
}

// linkBridges attaches the links of a and b to each other on loopback.
func linkBridges(a, b *Bridge) error {
	any := netip.AddrPortFrom(loopback, 0)
	if err := a.Attach(any, netip.AddrPortFrom(loopback, 9)); err != nil {
		return err
	}
	la := a.linkAddr()
	if err := b.Attach(any, la); err != nil {
		return err
	}
	return a.Attach(la, b.linkAddr())
}

// reportCell reports one throughput cell like BenchmarkRelay does, and
// its ratio to the bridge of the same size in the same run.
func reportCell(b *testing.B, r throughput, directPPS, bridgePPS float64) {
	b.ReportMetric(0, "ns/op") // a cell is one timed trial, not b.N operations
	b.ReportMetric(r.offered(), "offered-pps")
	b.ReportMetric(r.delivered(), "pps")
	b.ReportMetric(r.loss(), "loss%")
	if directPPS > 0 {
		b.ReportMetric(r.delivered()/directPPS, "ratio")
	}
	if bridgePPS > 0 && r.path != viaBridge {
		b.ReportMetric(r.delivered()/bridgePPS, "vs-bridge")
	}
	if r.path != direct {
		b.ReportMetric(r.relayUs(), "relay-us/pkt")
	}
	b.ReportMetric(100*r.foreignCPU.Seconds()/r.dur.Seconds(), "foreign-cpu%")
}

// BenchmarkSwitch compares flat-out throughput and relay CPU direct,
// through a bridge, and through a switch between two access ports, for
// 64, 512 and 1400-byte frames.
func BenchmarkSwitch(b *testing.B) {
	benchFabric(b, []int{64, 512, 1400}, viaSwitch)
}

// BenchmarkHub does the same through a two-port hub, 512-byte frames.
func BenchmarkHub(b *testing.B) {
	benchFabric(b, []int{512}, viaHub)
}

// BenchmarkSwitchPlane measures a lab's path between two nodes on one
// switch (two node bridges and the switch, in one relay child) against a
// direct link between two nodes (two bridges), each through its link
// sockets and spliced by a Plane, 512-byte frames.
func BenchmarkSwitchPlane(b *testing.B) {
	var rows []throughput
	for _, p := range []path{viaPair, viaPlane, viaNodesSwitch, viaNodesSwitchPlane} {
		b.Run(string(p), func(b *testing.B) {
			r := once(b, tputCells, func() throughput { return measureThroughput(b, 512, p) })
			reportCell(b, r, 0, 0)
			if b.N == 1 {
				rows = append(rows, r)
			}
		})
	}
	printThroughput(rows)
}

func benchFabric(b *testing.B, sizes []int, via path) {
	var rows []throughput
	for _, size := range sizes {
		var directPPS, bridgePPS float64
		for _, p := range []path{direct, viaBridge, via} {
			b.Run(fmt.Sprintf("size=%d/%s", size, p), func(b *testing.B) {
				r := once(b, tputCells, func() throughput { return measureThroughput(b, size, p) })
				switch p {
				case direct:
					directPPS = r.delivered()
				case viaBridge:
					bridgePPS = r.delivered()
				}
				reportCell(b, r, directPPS, bridgePPS)
				if b.N == 1 {
					rows = append(rows, r)
				}
			})
		}
	}
	printThroughput(rows)
}

// BenchmarkSwitchInProcess relays one 512-byte frame per iteration
// through a switch in this process, between access ports (sent as it
// is), from an access port to a trunk (tag pushed), and flooded to two
// ports, and reports allocations per frame, which must be 0.
func BenchmarkSwitchInProcess(b *testing.B) {
	for _, tc := range []struct {
		name  string
		out   PortConfig
		flood bool
	}{{"access-access", access(1), false}, {"access-trunk", trunk(99), false}, {"flooded", access(1), true}} {
		b.Run(tc.name, func(b *testing.B) {
			sw := newTestSwitch(b)
			in := openSwitchPort(b, sw, 0, access(1))
			out := openSwitchPort(b, sw, 1, tc.out)
			dst := mac(2)
			if tc.flood {
				openSwitchPort(b, sw, 2, access(1))
				dst = broadcast
			}
			out.sendAll(ether(broadcast, mac(2), 0, tag{0x8100, 1}))
			benchInProcess(b, in, out, ether(dst, mac(1), 1), 512)
		})
	}
}

// BenchmarkHubInProcess is the same through a hub of two and three ports.
func BenchmarkHubInProcess(b *testing.B) {
	for _, n := range []int{2, 3} {
		b.Run(fmt.Sprintf("ports=%d", n), func(b *testing.B) {
			h := newTestHub(b)
			var ports []*station
			for i := range n {
				ports = append(ports, openHubPort(b, h, i))
			}
			benchInProcess(b, ports[0], ports[1], ether(broadcast, mac(1), 1), 512)
		})
	}
}

// benchInProcess sends f, padded to size, into port in and reads it at
// port out, once per iteration, with out's capture on.
func benchInProcess(b *testing.B, in, out *station, f []byte, size int) {
	c, err := pcap.Create(filepath.Join(b.TempDir(), "x.pcap"))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	out.b.SetCapture(c)
	f = append(f, make([]byte, size-len(f))...)
	to := in.b.linkAddr()
	buf := make([]byte, 2048)
	for range 100 { // warm up: batches pooled, stacks grown
		in.e.c.WriteToUDPAddrPort(f, to)
		out.e.c.ReadFromUDPAddrPort(buf)
	}
	b.ReportAllocs()
	for b.Loop() {
		in.e.c.WriteToUDPAddrPort(f, to)
		out.e.c.ReadFromUDPAddrPort(buf)
	}
}
