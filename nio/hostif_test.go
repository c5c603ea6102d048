package nio

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"

	"labd/host"
)

func TestCheckInterfaceName(t *testing.T) {
	for _, name := range []string{"eth0", "tap0", "gns3tap0-1", "br-lab", "a", "123456789012345", "vlan.10", "ünï"} {
		if err := CheckInterfaceName(name); err != nil {
			t.Errorf("CheckInterfaceName(%q) = %v, want nil", name, err)
		}
	}
	for _, name := range []string{"", ".", "..", "1234567890123456", "a/b", "../etc", "eth0:1", "a b", "a\tb", "a\nb", "a\x00b", "a\x7fb", "\x01"} {
		if err := CheckInterfaceName(name); !errors.Is(err, ErrBadInterfaceName) {
			t.Errorf("CheckInterfaceName(%q) = %v, want ErrBadInterfaceName", name, err)
		}
	}
}

// The tests of TAP and Ethernet endpoints need root and iproute2, which
// this project's environment has: they fail without them rather than
// skip. Every interface they make is their own, named with a random
// suffix, and traffic goes to a network namespace of their own, never to
// the host's interfaces.

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root (CAP_NET_ADMIN), as labd has on lab hosts")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatalf("this test needs iproute2's ip: %v", err)
	}
}

func ip(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// uniqueName returns prefix and random hex digits, 15 bytes at most.
func uniqueName(prefix string) string {
	var b [4]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// newNetns creates a network namespace, deleted (with every interface in
// it) when the test ends.
func newNetns(t *testing.T) string {
	t.Helper()
	ns := uniqueName("labd-nio-")
	ip(t, "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	ip(t, "-n", ns, "link", "set", "lo", "up")
	return ns
}

// ifExists reports whether interface name exists in this namespace.
func ifExists(t *testing.T, name string) bool {
	t.Helper()
	_, err := ifIndex(name)
	if err != nil && !errors.Is(err, ErrNoInterface) {
		t.Fatal(err)
	}
	return err == nil
}

// ifFlags reads the flags of interface name from sysfs.
func ifFlags(t *testing.T, name string) uint64 {
	t.Helper()
	data, err := os.ReadFile("/sys/class/net/" + name + "/flags")
	if err != nil {
		t.Fatal(err)
	}
	f, err := strconv.ParseUint(strings.TrimSpace(string(data)), 0, 32)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// The lab side of the host-endpoint tests: a station at 10.199.x.2 with
// this MAC, talking to the namespace's 10.199.x.1. hostMAC is the source
// of frames the host itself sends out of an interface.
var (
	labMAC  = net.HardwareAddr{0x02, 0x1a, 0xbd, 0, 0, 0x02}
	hostMAC = net.HardwareAddr{0x02, 0x1a, 0xbd, 0, 0, 0x99}
)

// ours reports whether a frame that came out of a bridge's link was sent
// by the test itself (a loop).
func ours(f []byte) bool {
	return len(f) >= 12 && (bytes.Equal(f[6:12], labMAC) || bytes.Equal(f[6:12], hostMAC))
}

// sendOut sends frame out of interface name from a packet socket of its
// own, as the host's stack would: the interface's other packet sockets
// see it as PACKET_OUTGOING.
func sendOut(t *testing.T, name string, frame []byte) {
	t.Helper()
	index, err := ifIndex(name)
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Sendto(fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: index, Protocol: htons(unix.ETH_P_ALL)}); err != nil {
		t.Fatal(err)
	}
}

// arpRequest builds a who-has target tell sender frame from labMAC.
func arpRequest(t *testing.T, sender, target netip.Addr) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: labMAC, DstMAC: broadcast, EthernetType: layers.EthernetTypeARP}
	arp := &layers.ARP{
		AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4,
		HwAddressSize: 6, ProtAddressSize: 4, Operation: layers.ARPRequest,
		SourceHwAddress: labMAC, SourceProtAddress: sender.AsSlice(),
		DstHwAddress: make([]byte, 6), DstProtAddress: target.AsSlice(),
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true}, eth, arp); err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(buf.Bytes())
}

// pingRequest builds an ICMP echo request from sender (labMAC) to target
// at targetMAC.
func pingRequest(t *testing.T, sender, target netip.Addr, targetMAC net.HardwareAddr, seq uint16) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: labMAC, DstMAC: targetMAC, EthernetType: layers.EthernetTypeIPv4}
	ip4 := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: sender.AsSlice(), DstIP: target.AsSlice()}
	icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 0x1abd, Seq: seq}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, eth, ip4, icmp, gopacket.Payload("labd nio test")); err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(buf.Bytes())
}

// converse sends an ARP request for the namespace's address through the
// bridge's link, waits for the reply, then pings it; it fails if one of
// its own frames comes back.
func converse(t *testing.T, b *Bridge, peer *endpoint, lab, host netip.Addr) {
	t.Helper()
	req := arpRequest(t, lab, host)
	peer.send(b.linkAddr(), req)
	var hostMAC net.HardwareAddr
	await(t, peer, "an ARP reply", func(pkt gopacket.Packet) bool {
		arp, _ := pkt.Layer(layers.LayerTypeARP).(*layers.ARP)
		if arp == nil || arp.Operation != layers.ARPReply || !bytes.Equal(arp.DstHwAddress, labMAC) ||
			!bytes.Equal(arp.SourceProtAddress, host.AsSlice()) {
			return false
		}
		hostMAC = net.HardwareAddr(bytes.Clone(arp.SourceHwAddress))
		return true
	})
	ping := pingRequest(t, lab, host, hostMAC, 1)
	peer.send(b.linkAddr(), ping)
	await(t, peer, "an echo reply", func(pkt gopacket.Packet) bool {
		icmp, _ := pkt.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
		ip4, _ := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		return icmp != nil && ip4 != nil && icmp.TypeCode.Type() == layers.ICMPv4TypeEchoReply &&
			icmp.Id == 0x1abd && icmp.Seq == 1 && ip4.SrcIP.Equal(host.AsSlice())
	})
}

// await reads the peer's frames until match accepts one, failing if one
// of the test's own frames comes back or nothing matches within 5 s.
// Other frames (the namespace's IPv6 chatter) are skipped.
func await(t *testing.T, peer *endpoint, what string, match func(gopacket.Packet) bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		f, ok := peer.recv(time.Until(deadline))
		if !ok {
			break
		}
		if ours(f) {
			t.Fatalf("a frame sent out of the interface came back to the link: % x", f)
		}
		if match(gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)) {
			return
		}
	}
	t.Fatalf("no %s within 5s", what)
}

func TestTAPCreateReopenDelete(t *testing.T) {
	needRoot(t)
	name := uniqueName("tapl") // "tap...": host.Interfaces calls it a TAP
	t.Cleanup(func() { exec.Command("ip", "link", "del", name).Run() })

	b, created, err := OpenTAP(HostConfig{Name: "cloud-0", Interface: name})
	if err != nil {
		t.Fatal(err)
	}
	if !created {
		t.Fatal("OpenTAP of a new name did not report it created")
	}
	if ifFlags(t, name)&unix.IFF_UP == 0 {
		t.Fatal("the TAP is not up")
	}
	ifs, err := host.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	var listed bool
	for _, hi := range ifs {
		if hi.Name == name {
			listed = hi.Type == "tap" && !hi.Special && hi.MAC != ""
		}
	}
	if !listed {
		t.Fatalf("host.Interfaces does not list %s as a tap: %+v", name, ifs)
	}
	if _, _, err := OpenTAP(HostConfig{Name: "cloud-1", Interface: name}); err == nil {
		t.Fatal("a second OpenTAP of an open TAP succeeded")
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if !ifExists(t, name) {
		t.Fatal("the TAP did not survive its bridge's Close: it must persist for the next labd")
	}

	// The next labd opens it again.
	b, created, err = OpenTAP(HostConfig{Name: "cloud-0", Interface: name})
	if err != nil {
		t.Fatal(err)
	}
	if created {
		t.Fatal("reopening an existing TAP reported it created")
	}
	if err := DeleteTAP(name); err == nil {
		t.Fatal("DeleteTAP of an open TAP succeeded")
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := DeleteTAP(name); err != nil {
		t.Fatal(err)
	}
	if ifExists(t, name) {
		t.Fatal("the TAP still exists after DeleteTAP")
	}
	if err := DeleteTAP(name); err != nil {
		t.Fatalf("DeleteTAP of a TAP that is gone: %v", err)
	}
	if _, _, err := OpenTAP(HostConfig{Interface: "a/b"}); !errors.Is(err, ErrBadInterfaceName) {
		t.Fatalf("OpenTAP of a bad name: %v", err)
	}

	// DeleteTAP leaves other kinds of interfaces alone.
	veth := uniqueName("lpk")
	ip(t, "link", "add", veth, "type", "veth", "peer", "name", veth+"p")
	t.Cleanup(func() { exec.Command("ip", "link", "del", veth).Run() })
	if err := DeleteTAP(veth); err == nil {
		t.Fatal("DeleteTAP of a veth succeeded")
	}
	if !ifExists(t, veth) {
		t.Fatal("DeleteTAP removed a veth")
	}
	if _, _, err := OpenTAP(HostConfig{Interface: veth}); err == nil {
		t.Fatal("OpenTAP of a veth succeeded")
	}
}

// TestTAPBridge moves a TAP opened by OpenTAP into a namespace of its
// own with an address, and talks to that namespace's kernel (ARP, ping)
// from the bridge's link.
func TestTAPBridge(t *testing.T) {
	needRoot(t)
	ns := newNetns(t)
	name := uniqueName("ltap")
	t.Cleanup(func() { exec.Command("ip", "link", "del", name).Run() })
	var logs bytes.Buffer
	b, created, err := OpenTAP(HostConfig{Name: "cloud-0", Interface: name, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if !created {
		t.Fatal("not created")
	}
	// Its descriptor follows the TAP into the namespace.
	ip(t, "link", "set", name, "netns", ns)
	ip(t, "-n", ns, "addr", "add", "10.199.0.1/24", "dev", name)
	ip(t, "-n", ns, "link", "set", name, "up")

	peer := newEndpoint(t)
	if err := b.Attach(netip.AddrPortFrom(loopback, 0), peer.addr()); err != nil {
		t.Fatal(err)
	}
	converse(t, b, peer, netip.MustParseAddr("10.199.0.2"), netip.MustParseAddr("10.199.0.1"))
	// Counters are published after the send: the reply may come first.
	waitFor(t, 5*time.Second, "two frames counted each way", func() bool {
		st := b.Stats()
		return st.LinkToNode.Packets >= 2 && st.NodeToLink.Packets >= 2
	})
	// (Node->link may have dropped the namespace's IPv6 chatter from
	// before the link was attached.)
	if st := b.Stats(); st.LinkToNode.Dropped != 0 {
		t.Fatalf("stats %+v, want nothing from the link dropped", st)
	}

	// A TAP that is down refuses frames: counted, not logged.
	ip(t, "-n", ns, "link", "set", name, "down")
	for range 3 {
		peer.send(b.linkAddr(), arpRequest(t, netip.MustParseAddr("10.199.0.2"), netip.MustParseAddr("10.199.0.1")))
	}
	waitFor(t, 5*time.Second, "3 frames dropped by the TAP that is down", func() bool {
		st := b.Stats().LinkToNode
		return st.DroppedSendError == 3 && st.PeerErrors == 3
	})
	if logs.Len() != 0 {
		t.Fatalf("logged: %s", logs.String())
	}
}

// TestEthernetBridge opens an AF_PACKET endpoint on one end of a veth
// pair whose other end is in a namespace of its own, and talks to that
// namespace's kernel (ARP, ping) from the bridge's link. Frames sent out
// of the interface, by the bridge or by the host, never reach the link.
func TestEthernetBridge(t *testing.T) {
	needRoot(t)
	ns := newNetns(t)
	host := uniqueName("lpk")
	ip(t, "link", "add", host, "type", "veth", "peer", "name", "peer0", "netns", ns)
	t.Cleanup(func() { exec.Command("ip", "link", "del", host).Run() })
	ip(t, "-n", ns, "addr", "add", "10.199.1.1/24", "dev", "peer0")
	ip(t, "-n", ns, "link", "set", "peer0", "up")
	ip(t, "link", "set", host, "up")

	if _, err := OpenEthernet(HostConfig{Interface: uniqueName("nope")}); !errors.Is(err, ErrNoInterface) {
		t.Fatalf("OpenEthernet of a missing interface: %v", err)
	}
	if _, err := OpenEthernet(HostConfig{Interface: ".."}); !errors.Is(err, ErrBadInterfaceName) {
		t.Fatalf("OpenEthernet of a bad name: %v", err)
	}
	b, err := OpenEthernet(HostConfig{Name: "cloud-0", Interface: host})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if ifFlags(t, host)&unix.IFF_PROMISC == 0 {
		t.Fatal("the interface is not promiscuous while its bridge is open")
	}
	peer := newEndpoint(t)
	if err := b.Attach(netip.AddrPortFrom(loopback, 0), peer.addr()); err != nil {
		t.Fatal(err)
	}
	// The host sends a frame out first: had it been read, it would come
	// before the replies below.
	sendOut(t, host, ether(broadcast, hostMAC, 1))
	converse(t, b, peer, netip.MustParseAddr("10.199.1.2"), netip.MustParseAddr("10.199.1.1"))
	// A burst both ways: every request is answered, none comes back.
	nsMAC := func() net.HardwareAddr {
		ifi, err := exec.Command("ip", "-n", ns, "-o", "link", "show", "peer0").Output()
		if err != nil {
			t.Fatal(err)
		}
		f := strings.Fields(string(ifi))
		for i, w := range f {
			if w == "link/ether" {
				m, err := net.ParseMAC(f[i+1])
				if err != nil {
					t.Fatal(err)
				}
				return m
			}
		}
		t.Fatalf("no MAC in %q", ifi)
		return nil
	}()
	lab, nsAddr := netip.MustParseAddr("10.199.1.2"), netip.MustParseAddr("10.199.1.1")
	const burst = 50
	for i := range burst {
		peer.send(b.linkAddr(), pingRequest(t, lab, nsAddr, nsMAC, uint16(100+i)))
	}
	replies := 0
	deadline := time.Now().Add(5 * time.Second)
	for replies < burst && time.Now().Before(deadline) {
		f, ok := peer.recv(time.Until(deadline))
		if !ok {
			break
		}
		if ours(f) {
			t.Fatalf("a frame sent out of the interface came back to the link: % x", f)
		}
		pkt := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
		if icmp, _ := pkt.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4); icmp != nil && icmp.TypeCode.Type() == layers.ICMPv4TypeEchoReply {
			replies++
		}
	}
	if replies != burst {
		t.Fatalf("%d echo replies to %d requests", replies, burst)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if ifFlags(t, host)&unix.IFF_PROMISC != 0 {
		t.Fatal("the interface is still promiscuous after its bridge's Close")
	}
}
