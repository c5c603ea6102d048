package qemu

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"labd/actors/qemu/qemutest"
)

// The tiny guest's link: the guest's e1000 at guestIP, and the test itself,
// holding the other end of QEMU's UDP socket netdev, at guestPeerIP.
var (
	guestMAC     = net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}
	guestIP      = net.IPv4(10, 44, 0, 2).To4()
	guestPeerMAC = net.HardwareAddr{0x52, 0x54, 0x00, 0x00, 0x00, 0x01}
	guestPeerIP  = net.IPv4(10, 44, 0, 1).To4()
)

const (
	// guestBootTimeout is generous: under TCG the guest boots in seconds.
	guestBootTimeout     = 120 * time.Second
	guestPowerOffTimeout = 60 * time.Second
	guestPings           = 5
	guestPingID          = 0x4c41
)

// TestTinyGuestBootsPingsAndPowersOff builds the tiny Debian guest
// (testdata/guest/build.sh, cached across runs), boots it in a real QEMU
// with an e1000 on a UDP socket netdev, checks that it answers ARP and ICMP
// echo on that wire, then presses the ACPI power button through QMP and
// checks that the guest powers off and QEMU exits by itself with status 0.
func TestTinyGuestBootsPingsAndPowersOff(t *testing.T) {
	bin, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Fatalf("qemu-system-x86_64 is not installed (make deps installs it): %v", err)
	}
	kernel, initrd := qemutest.Guest(t)
	g := startTestGuest(t, bin, kernel, initrd, directWire)
	g.waitReady(t)

	if mac := g.resolve(t); !bytes.Equal(mac, guestMAC) {
		t.Fatalf("ARP: %s is at %s, want %s", guestIP, mac, guestMAC)
	}
	if n := g.ping(t); n < 3 {
		t.Fatalf("%d of %d echo requests answered, want at least 3", n, guestPings)
	}

	g.powerDown(t)
	g.waitPowerOff(t)
}

// testGuest is one running QEMU with the tiny guest, and the test's end of
// its NIC.
type testGuest struct {
	serial  string // the guest's serial console, as QEMU writes it
	qmp     string // QEMU's QMP socket
	started time.Time
	pid     int

	done    chan struct{} // closed when QEMU has exited and been reaped
	waitErr error         // QEMU's exit; read only after done is closed

	link     *net.UDPConn // the test's end of the guest's NIC
	qemuAddr *net.UDPAddr // where QEMU takes the frames for the guest
	sendTo   *net.UDPAddr // where the test sends them: qemuAddr, or a relay's
	rbuf     []byte
	sbuf     gopacket.SerializeBuffer

	// Decoding of the frames the guest sends.
	parser  *gopacket.DecodingLayerParser
	eth     layers.Ethernet
	arp     layers.ARP
	ip4     layers.IPv4
	icmp    layers.ICMPv4
	payload gopacket.Payload
	decoded []gopacket.LayerType

	// What the guest has sent so far.
	arpMAC  net.HardwareAddr // the MAC of the guest's ARP reply for guestIP
	echoed  map[uint16]bool  // sequence numbers of the echo replies
	arpAsks int              // ARP requests of the guest for guestPeerIP
}

// guestWire says where QEMU sends the guest's frames and where the test
// sends frames for it; wired directly, each sends to the other.
type guestWire func(qemu, test *net.UDPAddr) (qemuSendsTo, testSendsTo *net.UDPAddr)

func directWire(qemu, test *net.UDPAddr) (*net.UDPAddr, *net.UDPAddr) { return test, qemu }

// startTestGuest starts QEMU in its own process group, killed when the
// test ends, its NIC wired to the test's socket by wire.
func startTestGuest(t testing.TB, bin, kernel, initrd string, wire guestWire) *testGuest {
	t.Helper()
	dir := t.TempDir()
	link, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { link.Close() })
	g := &testGuest{
		serial:   filepath.Join(dir, "serial.log"),
		qmp:      filepath.Join(dir, "qmp.sock"),
		done:     make(chan struct{}),
		link:     link,
		qemuAddr: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: guestFreeUDPPort(t)},
		rbuf:     make([]byte, 2048),
		sbuf:     gopacket.NewSerializeBuffer(),
		echoed:   make(map[uint16]bool),
	}
	qemuSendsTo, testSendsTo := wire(g.qemuAddr, link.LocalAddr().(*net.UDPAddr))
	g.sendTo = testSendsTo
	g.parser = gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet, &g.eth, &g.arp, &g.ip4, &g.icmp, &g.payload)
	g.parser.IgnoreUnsupported = true

	accel := Accel() // the choice labd makes
	args := []string{
		"-machine", "q35,accel=" + accel, "-m", "128", "-nodefaults", "-display", "none",
		"-serial", "file:" + g.serial,
		"-kernel", kernel, "-initrd", initrd,
		"-append", "console=ttyS0 labd.ip=" + guestIP.String() + "/24 quiet",
		"-device", "e1000,netdev=n0,mac=" + guestMAC.String(),
		"-netdev", "socket,id=n0,udp=" + qemuSendsTo.String() + ",localaddr=" + g.qemuAddr.String(),
		"-qmp", "unix:" + g.qmp + ",server=on,wait=off",
		"-no-reboot",
	}
	logPath := filepath.Join(dir, "qemu.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close() // QEMU holds its own descriptor
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	g.started, g.pid = time.Now(), cmd.Process.Pid
	go func() {
		g.waitErr = cmd.Wait()
		close(g.done)
	}()
	t.Cleanup(func() {
		select {
		case <-g.done:
		default:
			syscall.Kill(-g.pid, syscall.SIGKILL)
			<-g.done
		}
		if t.Failed() {
			serial, _ := os.ReadFile(g.serial)
			qemuLog, _ := os.ReadFile(logPath)
			t.Logf("QEMU (accel=%s) log:\n%s\nserial console:\n%s", accel, qemuLog, serial)
		}
	})
	t.Logf("QEMU pid %d, accel=%s", g.pid, accel)
	return g
}

// guestFreeUDPPort returns a UDP port of 127.0.0.1 that was free a moment
// ago, for QEMU to bind.
func guestFreeUDPPort(t testing.TB) int {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// waitReady waits for the guest's ready line on the serial console.
func (g *testGuest) waitReady(t testing.TB) {
	t.Helper()
	marker := []byte("labd-guest ready " + guestIP.String())
	deadline := g.started.Add(guestBootTimeout)
	for {
		if b, _ := os.ReadFile(g.serial); bytes.Contains(b, marker) {
			t.Logf("guest booted in %v", time.Since(g.started).Round(time.Millisecond))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q on the serial console after %v", marker, guestBootTimeout)
		}
		select {
		case <-g.done:
			t.Fatalf("QEMU exited before the guest was ready: %v", g.waitErr)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// resolve asks the guest for guestIP's MAC over ARP, and returns it.
func (g *testGuest) resolve(t testing.TB) net.HardwareAddr {
	t.Helper()
	start := time.Now()
	for try := 1; try <= 5; try++ {
		g.send(t, &layers.Ethernet{SrcMAC: guestPeerMAC, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP},
			guestARP(layers.ARPRequest, guestIP, net.HardwareAddr{0, 0, 0, 0, 0, 0}))
		if g.receive(t, time.Second, func() bool { return g.arpMAC != nil }) {
			t.Logf("ARP reply after %v (request %d)", time.Since(start).Round(time.Millisecond), try)
			return g.arpMAC
		}
	}
	t.Fatalf("no ARP reply for %s", guestIP)
	return nil
}

// ping sends guestPings echo requests to the guest, one at a time, and
// returns how many it answered.
func (g *testGuest) ping(t testing.TB) int {
	t.Helper()
	start := time.Now()
	for seq := range uint16(guestPings) {
		g.echo(t, seq)
		g.receive(t, 2*time.Second, func() bool { return g.echoed[seq] })
	}
	t.Logf("%d of %d pings answered in %v (the guest asked for our MAC %d times)",
		len(g.echoed), guestPings, time.Since(start).Round(time.Millisecond), g.arpAsks)
	return len(g.echoed)
}

// guestARP returns an ARP packet from the test about target.
func guestARP(op uint16, target net.IP, targetMAC net.HardwareAddr) *layers.ARP {
	return &layers.ARP{
		AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4,
		HwAddressSize: 6, ProtAddressSize: 4, Operation: op,
		SourceHwAddress: guestPeerMAC, SourceProtAddress: guestPeerIP,
		DstHwAddress: targetMAC, DstProtAddress: target,
	}
}

// send writes one frame to the guest, padded to Ethernet's minimum size.
func (g *testGuest) send(t testing.TB, ls ...gopacket.SerializableLayer) {
	t.Helper()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(g.sbuf, opts, ls...); err != nil {
		t.Fatal(err)
	}
	frame := make([]byte, max(60, len(g.sbuf.Bytes())))
	copy(frame, g.sbuf.Bytes())
	if _, err := g.link.WriteToUDP(frame, g.sendTo); err != nil {
		t.Fatal(err)
	}
}

// receive handles the guest's frames for up to wait, until done reports
// true; it returns done's last answer.
func (g *testGuest) receive(t testing.TB, wait time.Duration, done func() bool) bool {
	t.Helper()
	if err := g.link.SetReadDeadline(time.Now().Add(wait)); err != nil {
		t.Fatal(err)
	}
	for !done() {
		n, err := g.link.Read(g.rbuf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return false
		}
		if err != nil {
			t.Fatal(err)
		}
		g.handle(t, g.rbuf[:n])
	}
	return true
}

// handle records the guest's ARP and echo replies and answers its ARP
// requests for guestPeerIP.
func (g *testGuest) handle(t testing.TB, frame []byte) {
	t.Helper()
	if err := g.parser.DecodeLayers(frame, &g.decoded); err != nil {
		return // not one of ours (e.g. IPv6 from the guest)
	}
	for _, l := range g.decoded {
		switch l {
		case layers.LayerTypeARP:
			switch {
			case g.arp.Operation == layers.ARPReply && net.IP(g.arp.SourceProtAddress).Equal(guestIP):
				g.arpMAC = slices.Clone(g.arp.SourceHwAddress)
			case g.arp.Operation == layers.ARPRequest && net.IP(g.arp.DstProtAddress).Equal(guestPeerIP):
				g.arpAsks++
				g.send(t, &layers.Ethernet{SrcMAC: guestPeerMAC, DstMAC: g.eth.SrcMAC, EthernetType: layers.EthernetTypeARP},
					guestARP(layers.ARPReply, net.IP(g.arp.SourceProtAddress), g.arp.SourceHwAddress))
			}
		case layers.LayerTypeICMPv4:
			if g.icmp.TypeCode.Type() == layers.ICMPv4TypeEchoReply && g.icmp.Id == guestPingID &&
				g.ip4.SrcIP.Equal(guestIP) && g.ip4.DstIP.Equal(guestPeerIP) {
				g.echoed[g.icmp.Seq] = true
			}
		}
	}
}

// powerDown presses the guest's ACPI power button: system_powerdown over
// QMP, in the fewest lines of the protocol (labd's QMP client lives in
// package qmp).
func (g *testGuest) powerDown(t testing.TB) {
	t.Helper()
	conn, err := net.DialTimeout("unix", g.qmp, 5*time.Second)
	if err != nil {
		t.Fatalf("QMP: %v", err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(conn)
	var greeting struct{ QMP json.RawMessage }
	if line, err := r.ReadBytes('\n'); err != nil || json.Unmarshal(line, &greeting) != nil || greeting.QMP == nil {
		t.Fatalf("QMP greeting %q: %v", line, err)
	}
	guestQMPExecute(t, conn, r, "qmp_capabilities")
	guestQMPExecute(t, conn, r, "system_powerdown")
}

// guestQMPExecute runs one QMP command without arguments and waits for its
// success, skipping the events QEMU sends meanwhile.
func guestQMPExecute(t testing.TB, conn net.Conn, r *bufio.Reader, command string) {
	t.Helper()
	req, err := json.Marshal(map[string]string{"execute": command})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(append(req, '\n')); err != nil {
		t.Fatalf("QMP %s: %v", command, err)
	}
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			t.Fatalf("QMP %s: %v", command, err)
		}
		var reply struct {
			Return json.RawMessage
			Error  *struct{ Class, Desc string }
		}
		if err := json.Unmarshal(line, &reply); err != nil {
			t.Fatalf("QMP %s: reply %q: %v", command, line, err)
		}
		switch {
		case reply.Error != nil:
			t.Fatalf("QMP %s: %s: %s", command, reply.Error.Class, reply.Error.Desc)
		case reply.Return != nil:
			return
		}
	}
}

// waitPowerOff checks that the guest powers off on the button press, so
// that QEMU exits by itself, with status 0.
func (g *testGuest) waitPowerOff(t testing.TB) {
	t.Helper()
	start := time.Now()
	select {
	case <-g.done:
	case <-time.After(guestPowerOffTimeout):
		t.Fatalf("QEMU still runs %v after system_powerdown", guestPowerOffTimeout)
	}
	if g.waitErr != nil {
		t.Fatalf("QEMU exited after system_powerdown with %v, want status 0", g.waitErr)
	}
	if b, _ := os.ReadFile(g.serial); !bytes.Contains(b, []byte("labd-guest powering off")) {
		t.Fatal("QEMU exited, but the guest's power button handler did not run")
	}
	t.Logf("guest powered off %v after system_powerdown", time.Since(start).Round(time.Millisecond))
}
