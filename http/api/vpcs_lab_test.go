package api_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// icmpCount counts the ICMP echo requests and replies between two
// addresses in a pcap stream.
func icmpCount(t *testing.T, r io.Reader, a, b string) (requests, replies int) {
	t.Helper()
	pr, err := pcapgo.NewReader(r)
	if err != nil {
		t.Fatalf("not a pcap stream: %v", err)
	}
	if pr.LinkType() != layers.LinkTypeEthernet {
		t.Fatalf("link type %v, want Ethernet", pr.LinkType())
	}
	var last time.Time
	for {
		data, ci, err := pr.ReadPacketData()
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return requests, replies
		}
		if err != nil {
			t.Fatalf("reading pcap: %v", err)
		}
		if ci.Timestamp.Before(last) || ci.Timestamp.IsZero() {
			t.Errorf("packet timestamp %v after %v", ci.Timestamp, last)
		}
		last = ci.Timestamp
		p := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.DecodeOptions{Lazy: true, NoCopy: true})
		ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		icmp, _ := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
		if ip == nil || icmp == nil {
			continue
		}
		src, dst := ip.SrcIP.String(), ip.DstIP.String()
		switch icmp.TypeCode.Type() {
		case layers.ICMPv4TypeEchoRequest:
			if src == a && dst == b || src == b && dst == a {
				requests++
			}
		case layers.ICMPv4TypeEchoReply:
			if src == a && dst == b || src == b && dst == a {
				replies++
			}
		}
	}
}

// TestSeedSessionOverHTTPAndTelnet plays the GNS3 1.5 documentation's
// sample session on real VPCS processes: a project, two VPCS, two UDP
// ports, two NIOs, start both, addresses on both consoles, and a ping that
// gets its replies through labd's bridges. A capture on the link shows the
// ICMP traffic both in its file and in the live pcap stream.
func TestSeedSessionOverHTTPAndTelnet(t *testing.T) {
	d := startDaemon(t, daemonOptions{})
	p := d.do("POST", "/v1/projects", `{"name": "test"}`).expect(t, 201, "/v1/projects").object(t)["project_id"].(string)
	vm := func(name string) map[string]any {
		o := d.do("POST", "/v1/projects/"+p+"/vpcs/vms", `{"name": `+quote(name)+`}`).
			expect(t, 201, "/v1/projects/{project_id}/vpcs/vms").object(t)
		keys(t, o, "console", "name", "project_id", "startup_script", "startup_script_path", "status", "vm_directory", "vm_id")
		if o["status"] != "stopped" {
			t.Fatalf("a new VM is %v", o["status"])
		}
		return o
	}
	vm1, vm2 := vm("VPCS 1"), vm("VPCS 2")
	base1 := "/v1/projects/" + p + "/vpcs/vms/" + vm1["vm_id"].(string)
	base2 := "/v1/projects/" + p + "/vpcs/vms/" + vm2["vm_id"].(string)
	port := func() int {
		return int(d.do("POST", "/v1/projects/"+p+"/ports/udp", "").expect(t, 201, "").object(t)["udp_port"].(float64))
	}
	u1, u2 := port(), port()
	nio1 := d.do("POST", base1+"/adapters/0/ports/0/nio", nioBody(u1, u2, "")).expect(t, 201, "").object(t)
	keys(t, nio1, "lport", "rhost", "rport", "type")
	d.do("POST", base2+"/adapters/0/ports/0/nio", nioBody(u2, u1, "")).expect(t, 201, "")

	// Capture the link on VM 1's side, through the v2 API: the same nodes.
	v2port := "/v2/compute/projects/" + p + "/vpcs/nodes/" + vm1["vm_id"].(string) + "/adapters/0/ports/0"
	capture := d.do("POST", v2port+"/start_capture", `{"capture_file_name": "seed.pcap", "data_link_type": "DLT_EN10MB"}`).
		expect(t, 200, "").object(t)
	pcapPath := capture["pcap_file_path"].(string)
	if want := d.DataDir + "/projects/" + p + "/project-files/captures/seed.pcap"; pcapPath != want {
		t.Fatalf("pcap_file_path %q, want %q", pcapPath, want)
	}
	// The live stream follows the capture from its start to its stop.
	resp, err := http.Get(d.URL + v2port + "/pcap")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/vnd.tcpdump.pcap" {
		t.Fatalf("pcap stream: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	streamed := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(resp.Body)
		streamed <- b
	}()

	d.do("POST", base1+"/start", "").expect(t, 204, "")
	d.do("POST", base2+"/start", "").expect(t, 204, "")
	for _, b := range []string{base1, base2} {
		if s := d.do("GET", b, "").expect(t, 200, "").object(t)["status"]; s != "started" {
			t.Fatalf("after start the VM is %v", s)
		}
	}

	c1 := dialConsole(t, int(vm1["console"].(float64)))
	c2 := dialConsole(t, int(vm2["console"].(float64)))
	c1.setIP("192.168.1.1")
	c2.setIP("192.168.1.2")
	replies, _ := c2.ping("192.168.1.1", 3, 20*time.Second)
	if replies < 3 {
		t.Fatalf("ping 192.168.1.1 from VPCS 2: %d of 3 replies; console:\n%s", replies, c2.output())
	}

	d.do("POST", v2port+"/stop_capture", "").expect(t, 204, "")
	var live []byte
	select {
	case live = <-streamed:
	case <-time.After(10 * time.Second):
		t.Fatal("the live pcap stream did not end with the capture")
	}
	file, err := os.ReadFile(pcapPath)
	if err != nil {
		t.Fatal(err)
	}
	for what, b := range map[string][]byte{"file": file, "stream": live} {
		req, rep := icmpCount(t, bytes.NewReader(b), "192.168.1.1", "192.168.1.2")
		if req < 3 || rep < 3 {
			t.Errorf("capture %s: %d echo requests and %d replies, want at least 3 of each", what, req, rep)
		}
	}
	if !bytes.HasPrefix(file, live[:24]) || len(live) > len(file) {
		t.Errorf("the stream (%d bytes) is not the file (%d bytes)", len(live), len(file))
	}
}

// farEnd is a test socket standing in for a link's remote end: it sends
// ARP requests into a node's link and counts the node's ARP replies.
type farEnd struct {
	conn *net.UDPConn
	mac  net.HardwareAddr
	ip   net.IP
}

func newFarEnd(t *testing.T) *farEnd {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &farEnd{conn: conn, mac: net.HardwareAddr{0x02, 0, 0, 0, 0, 0x42}, ip: net.IPv4(192, 168, 2, 2).To4()}
}

func (f *farEnd) port() int { return f.conn.LocalAddr().(*net.UDPAddr).Port }

// arpRequest is an ARP who-has for target, from the far end.
func (f *farEnd) arpRequest(t *testing.T, target net.IP) []byte {
	eth := layers.Ethernet{SrcMAC: f.mac, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP}
	arp := layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
		Operation: layers.ARPRequest, SourceHwAddress: f.mac, SourceProtAddress: f.ip,
		DstHwAddress: make([]byte, 6), DstProtAddress: target.To4()}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{}, &eth, &arp); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// flood sends n ARP requests for target to the node's link port, one every
// gap, and counts the ARP replies that come back until quiet for wait. It
// returns the replies and when the first and last arrived.
func (f *farEnd) flood(t *testing.T, linkPort, n int, gap time.Duration, target net.IP, wait time.Duration) (replies int, first, last time.Duration) {
	t.Helper()
	to := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: linkPort}
	frame := f.arpRequest(t, target)
	start := time.Now()
	go func() {
		for range n {
			f.conn.WriteToUDP(frame, to)
			time.Sleep(gap)
		}
	}()
	buf := make([]byte, 2048)
	for {
		f.conn.SetReadDeadline(time.Now().Add(wait))
		m, _, err := f.conn.ReadFromUDP(buf)
		if err != nil {
			return replies, first, last
		}
		p := gopacket.NewPacket(buf[:m], layers.LayerTypeEthernet, gopacket.Default)
		if arp, ok := p.Layer(layers.LayerTypeARP).(*layers.ARP); ok && arp.Operation == layers.ARPReply && net.IP(arp.SourceProtAddress).Equal(target) {
			replies++
			last = time.Since(start)
			if replies == 1 {
				first = last
			}
		}
	}
}

// TestLinkFiltersOnVPCSLinks shows the link filters on real VPCS traffic:
// a delay that adds to every round trip without serialising the link,
// packet loss, suspend, and a bad filter that is refused while the old
// ones keep working.
func TestLinkFiltersOnVPCSLinks(t *testing.T) {
	d := startDaemon(t, daemonOptions{})
	p := d.createProject("filters")
	a, b := d.createVPCS(p, "A"), d.createVPCS(p, "B")
	pa, pb := d.link(p, a, b)
	d.startNode(p, a)
	d.startNode(p, b)
	ca, cb := dialConsole(t, a.Console), dialConsole(t, b.Console)
	ca.setIP("192.168.1.1")
	cb.setIP("192.168.1.2")
	nioA := nodePath(p, a) + "/adapters/0/ports/0/nio"
	rtts := func(what string, count int) []time.Duration {
		t.Helper()
		replies, rtt := cb.ping("192.168.1.1", count, 30*time.Second)
		if replies != count {
			t.Fatalf("%s: %d of %d replies; console:\n%s", what, replies, count, cb.output())
		}
		return rtt
	}
	// Sub-millisecond on a quiet box; the bound only has to tell "no
	// delay" from the 200 ms below, on a loaded one too.
	for _, rtt := range rtts("no filter", 2) {
		if rtt > 150*time.Millisecond {
			t.Fatalf("round trip %v without any filter", rtt)
		}
	}

	// delay [100, 0] on A's side of the link: each direction waits 100 ms.
	echo := d.do("PUT", nioA, nioBody(pa, pb, `,"filters":{"delay":[100,0]}`)).expect(t, 201, "").object(t)
	if f, _ := echo["filters"].(map[string]any); f == nil || f["delay"] == nil {
		t.Fatalf("PUT nio echoed %v", echo)
	}
	for _, rtt := range rtts("delay 100", 3) {
		if rtt < 200*time.Millisecond {
			t.Fatalf("round trip %v with delay [100, 0] both ways, want above 200 ms", rtt)
		}
	}
	// A bad filter changes nothing: the delay stays.
	d.do("PUT", nioA, nioBody(pa, pb, `,"filters":{"packet_loss":[150]}`)).expect(t, 400, "")
	d.do("PUT", nioA, nioBody(pa, pb, `,"filters":{"delay":[100,0],"bogus":[1]}`)).expect(t, 400, "")
	for _, rtt := range rtts("delay after bad filters", 2) {
		if rtt < 200*time.Millisecond {
			t.Fatalf("round trip %v after a refused filter: the delay was lost", rtt)
		}
	}

	// suspend: nothing passes; unsuspended: replies again.
	d.do("PUT", nioA, nioBody(pa, pb, `,"filters":{},"suspend":true`)).expect(t, 201, "")
	if replies, _ := cb.ping("192.168.1.1 -w 300", 3, 30*time.Second); replies != 0 {
		t.Fatalf("%d replies through a suspended link", replies)
	}
	d.do("PUT", nioA, nioBody(pa, pb, `,"filters":{},"suspend":false`)).expect(t, 201, "")
	rtts("after suspend", 2)

	// A far end of our own on a third VPCS's link, to flood it.
	c := d.createVPCS(p, "C")
	far := newFarEnd(t)
	pc := d.udpPort(p)
	nioC := nodePath(p, c) + "/adapters/0/ports/0/nio"
	d.do("POST", nioC, nioBody(pc, far.port(), `,"filters":{"delay":[100,0]}`)).expect(t, 201, "")
	d.startNode(p, c)
	cc := dialConsole(t, c.Console)
	cc.setIP("192.168.2.1")
	target := net.IPv4(192, 168, 2, 1)

	// 1,000 ARP requests in about a second through a link delayed 100 ms
	// each way: every reply is 200 ms late, and all arrive at once rather
	// than one per delay (ubridge's sleeping reader would need 100 s).
	replies, first, last := far.flood(t, pc, 1000, time.Millisecond, target, 2*time.Second)
	t.Logf("delay flood: %d of 1000 replies, first after %v, last after %v", replies, first, last)
	if replies < 950 {
		t.Fatalf("delay flood: %d of 1000 replies", replies)
	}
	if first < 200*time.Millisecond || last > 20*time.Second {
		t.Fatalf("delay flood: first reply after %v (want >= 200 ms), last after %v (want well under 100 s)", first, last)
	}

	// packet_loss [50]: half the requests are lost on the way in (and half
	// of the replies on the way out). The capture, written after the
	// filters, counts the requests that got through.
	d.do("PUT", nioC, nioBody(pc, far.port(), `,"filters":{"packet_loss":[50]}`)).expect(t, 201, "")
	capPath := d.do("POST", nodePath(p, c)+"/adapters/0/ports/0/start_capture", `{"capture_file_name":"loss.pcap"}`).
		expect(t, 200, "").object(t)["pcap_file_path"].(string)
	replies, _, _ = far.flood(t, pc, 1000, 500*time.Microsecond, target, time.Second)
	d.do("POST", nodePath(p, c)+"/adapters/0/ports/0/stop_capture", "").expect(t, 204, "")
	requests := countARPRequests(t, capPath, far.mac)
	loss := 1 - float64(requests)/1000
	t.Logf("packet_loss 50: %d of 1000 requests passed (loss %.1f%%), %d replies came back (round trips %.1f%%)",
		requests, 100*loss, replies, float64(replies)/10)
	if loss < 0.35 || loss > 0.65 {
		t.Fatalf("packet_loss [50] lost %.1f%% of 1000 requests, want 35-65%%", 100*loss)
	}
	if replies > requests {
		t.Fatalf("%d replies to %d delivered requests", replies, requests)
	}
}

func countARPRequests(t *testing.T, path string, from net.HardwareAddr) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		data, _, err := r.ReadPacketData()
		if err != nil {
			return n
		}
		p := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
		if arp, ok := p.Layer(layers.LayerTypeARP).(*layers.ARP); ok && arp.Operation == layers.ARPRequest &&
			strings.EqualFold(net.HardwareAddr(arp.SourceHwAddress).String(), from.String()) {
			n++
		}
	}
}
