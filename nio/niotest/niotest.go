// Package niotest gives tests a network of their own on this host: a
// network namespace holding an address, reached from the host namespace
// through a Linux bridge that a test joins TAP devices or veth ends to.
// Frames sent into it go to the namespace and nowhere else: never to the
// host's own interfaces. It needs root and iproute2, which the tests have
// (a test that cannot make its network fails, it does not skip).
package niotest

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
)

// Net is a namespace with one address, behind a bridge of the host
// namespace.
type Net struct {
	// NS is the namespace's name, Bridge the host bridge's.
	NS, Bridge string
}

var seq atomic.Int32

// Name returns an interface or namespace name unique to this test process:
// prefix (at most 5 bytes) and a number, within Linux's 15 bytes.
func Name(prefix string) string {
	return fmt.Sprintf("%s%d%c", prefix, os.Getpid()%100000, 'a'+seq.Add(1)%26)
}

// IP runs ip with args and fails the test if it fails.
func IP(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// LinkExists reports whether the host namespace has an interface name.
func LinkExists(name string) bool { return exec.Command("ip", "link", "show", name).Run() == nil }

// New makes the namespace, with addr (CIDR) on its end of a veth pair,
// and the bridge the other end is a port of. Everything goes at cleanup.
func New(t testing.TB, addr string) *Net {
	t.Helper()
	n := &Net{NS: "labd-" + Name("n"), Bridge: Name("lbr")}
	veth := Name("lve")
	IP(t, "netns", "add", n.NS)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", n.NS).Run() })
	IP(t, "link", "add", n.Bridge, "type", "bridge")
	t.Cleanup(func() { exec.Command("ip", "link", "del", n.Bridge).Run() })
	IP(t, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", n.NS)
	t.Cleanup(func() { exec.Command("ip", "link", "del", veth).Run() })
	IP(t, "link", "set", veth, "master", n.Bridge, "up")
	IP(t, "link", "set", n.Bridge, "up")
	IP(t, "-n", n.NS, "addr", "add", addr, "dev", "eth0")
	IP(t, "-n", n.NS, "link", "set", "eth0", "up")
	return n
}

// Join makes an interface of the host namespace (a TAP device) a port of
// the bridge.
func (n *Net) Join(t testing.TB, iface string) { IP(t, "link", "set", iface, "master", n.Bridge) }
