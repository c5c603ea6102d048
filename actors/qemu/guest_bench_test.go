package qemu

import (
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"labd/actors/qemu/qemutest"
	"labd/nio"
)

// BenchmarkGuest boots the tiny guest and pings it from the test's end of
// its NIC, wired directly to QEMU's socket netdev or through one labd
// bridge (a node port's bridge: QEMU ↔ tunnel ↔ bridge ↔ link). One op is
// one boot. It reports the time from QEMU's start to the first echo reply
// (boot-s) and the round trip of 200 pings after it, one at a time
// (p50-µs, p99-µs): the bridge's added latency for QEMU traffic is the
// difference between the two wirings.
func BenchmarkGuest(b *testing.B) {
	bin, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		b.Fatalf("qemu-system-x86_64 is not installed (make deps installs it): %v", err)
	}
	kernel, initrd := qemutest.Guest(b)
	for _, via := range []string{"direct", "bridge"} {
		b.Run(via, func(b *testing.B) { // no "=": QEMU options cannot hold one in the temp dir path
			var boots, rtts []time.Duration
			for b.Loop() {
				wire := guestWire(directWire)
				if via == "bridge" {
					wire = bridgeWire(b)
				}
				g := startTestGuest(b, bin, kernel, initrd, wire)
				boots = append(boots, g.firstReply(b))
				rtts = append(rtts, g.roundTrips(b, 200)...)
				_ = syscall.Kill(-g.pid, syscall.SIGKILL)
				<-g.done
			}
			slices.Sort(boots)
			slices.Sort(rtts)
			b.ReportMetric(boots[len(boots)/2].Seconds(), "boot-s")
			b.ReportMetric(float64(rtts[len(rtts)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(rtts[len(rtts)*99/100].Microseconds()), "p99-µs")
		})
	}
}

// bridgeWire puts a labd bridge between QEMU and the test, as a node port
// has one: QEMU sends to the bridge's tunnel socket, the test to its link
// socket.
func bridgeWire(b *testing.B) guestWire {
	return func(qemu, test *net.UDPAddr) (*net.UDPAddr, *net.UDPAddr) {
		tunnel := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: guestFreeUDPPort(b)}
		local := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: guestFreeUDPPort(b)}
		br, err := nio.OpenBridge(nio.BridgeConfig{Name: "bench", Tunnel: tunnel.AddrPort(), Node: qemu.AddrPort()})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { br.Close() })
		if err := br.Attach(local.AddrPort(), netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(test.Port))); err != nil {
			b.Fatal(err)
		}
		return tunnel, local
	}
}

// firstReply sends an echo request every 50 ms from QEMU's start until the
// guest answers one, and returns how long after the start that was.
func (g *testGuest) firstReply(t testing.TB) time.Duration {
	t.Helper()
	for seq := uint16(1000); ; seq++ {
		g.echo(t, seq)
		if g.receive(t, 50*time.Millisecond, func() bool { return len(g.echoed) > 0 }) {
			return time.Since(g.started)
		}
		select {
		case <-g.done:
			t.Fatalf("QEMU exited before the guest answered: %v", g.waitErr)
		default:
		}
		if time.Since(g.started) > guestBootTimeout {
			t.Fatalf("no echo reply %v after QEMU started", guestBootTimeout)
		}
	}
}

// roundTrips pings the guest n times, one request in flight, and returns
// the round trips.
func (g *testGuest) roundTrips(t testing.TB, n int) []time.Duration {
	t.Helper()
	rtts := make([]time.Duration, 0, n)
	for seq := range uint16(n) {
		start := time.Now()
		g.echo(t, seq)
		if !g.receive(t, 2*time.Second, func() bool { return g.echoed[seq] }) {
			t.Fatalf("echo request %d not answered", seq)
		}
		rtts = append(rtts, time.Since(start))
	}
	return rtts
}

// echo sends one echo request to the guest.
func (g *testGuest) echo(t testing.TB, seq uint16) {
	t.Helper()
	g.send(t,
		&layers.Ethernet{SrcMAC: guestPeerMAC, DstMAC: guestMAC, EthernetType: layers.EthernetTypeIPv4},
		&layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: guestPeerIP, DstIP: guestIP},
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: guestPingID, Seq: seq},
		gopacket.Payload("labd tiny guest ping, 56 bytes of payload.............."))
}
