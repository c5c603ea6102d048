package api_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"labd/nio/niotest"
)

// Labs of real VPCS processes on labd's own switches, hubs and clouds,
// driven over HTTP and telnet only.

// createNode creates a node of a kind over v2 and returns its path.
func (d *daemon) createNode(project, kind, body string) (string, map[string]any) {
	d.t.Helper()
	n := d.do("POST", "/v2/compute/projects/"+project+"/"+kind+"/nodes", body).
		expect(d.t, 201, "/v2/compute/projects/{project_id}/"+kind+"/nodes").object(d.t)
	return "/v2/compute/projects/" + project + "/" + kind + "/nodes/" + n["node_id"].(string), n
}

// wire links port a of node path pa to port b of node path pb, as a GNS3
// controller does. Ports are "adapter/port".
func (d *daemon) wire(project, pa, a, pb, b string) {
	d.t.Helper()
	ua, ub := d.udpPort(project), d.udpPort(project)
	d.do("POST", pa+"/adapters/"+strings.Replace(a, "/", "/ports/", 1)+"/nio", nioBody(ua, ub, "")).expect(d.t, 201, "")
	d.do("POST", pb+"/adapters/"+strings.Replace(b, "/", "/ports/", 1)+"/nio", nioBody(ub, ua, "")).expect(d.t, 201, "")
}

// vpcsLab is a few VPCS with addresses, their consoles open.
type vpcsLab struct {
	d        *daemon
	project  string
	nodes    map[string]vpcsNode
	consoles map[string]*console
}

// addPCs creates VPCS nodes by name.
func (l *vpcsLab) addPCs(names ...string) {
	for _, name := range names {
		l.nodes[name] = l.d.createVPCS(l.project, name)
	}
}

// start starts every PC and gives each its address.
func (l *vpcsLab) start(t *testing.T, addrs map[string]string) {
	t.Helper()
	for name := range addrs {
		l.d.startNode(l.project, l.nodes[name])
	}
	for name, ip := range addrs {
		c := dialConsole(t, l.nodes[name].Console)
		c.setIP(ip)
		l.consoles[name] = c
	}
}

func newVPCSLab(d *daemon, name string) *vpcsLab {
	return &vpcsLab{d: d, project: d.createProject(name), nodes: map[string]vpcsNode{}, consoles: map[string]*console{}}
}

// pingsFrom asserts that from reaches ip (want true) or gets no reply.
func (l *vpcsLab) pingsFrom(t *testing.T, from, ip string, want bool) {
	t.Helper()
	replies, _ := l.consoles[from].ping(ip, 3, 30*time.Second)
	switch {
	case want && replies == 0:
		t.Fatalf("%s got no reply from %s; console:\n%s", from, ip, l.consoles[from].output())
	case !want && replies > 0:
		t.Fatalf("%s got %d replies from %s, which it must not reach; console:\n%s", from, replies, ip, l.consoles[from].output())
	}
}

// switchBody is a switch create with the given ports_mapping entries.
func switchBody(name string, ports ...string) string {
	return `{"name":` + quote(name) + `,"console_type":"telnet","ports_mapping":[` + strings.Join(ports, ",") + `]}`
}

func swPort(n int, typ string, vlan int, extra string) string {
	return fmt.Sprintf(`{"name":"Ethernet%d","port_number":%d,"type":%q,"vlan":%d%s}`, n, n, typ, vlan, extra)
}

// vlanFrames decodes a pcap stream and returns the VLAN ids of the 802.1Q
// tags of its frames, and how many frames had none.
func vlanFrames(t *testing.T, r io.Reader) (tagged map[uint16]int, untagged int) {
	t.Helper()
	pr, err := pcapgo.NewReader(r)
	if err != nil {
		t.Fatalf("not a pcap stream: %v", err)
	}
	tagged = map[uint16]int{}
	for {
		data, _, err := pr.ReadPacketData()
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return tagged, untagged
		}
		if err != nil {
			t.Fatalf("reading pcap: %v", err)
		}
		p := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
		if q, ok := p.Layer(layers.LayerTypeDot1Q).(*layers.Dot1Q); ok {
			tagged[q.VLANIdentifier]++
		} else {
			untagged++
		}
	}
}

// macLine is a row of the switch console's MAC address table.
var macLine = regexp.MustCompile(`(?m)^(\d+)\s+([0-9a-f]{4}\.[0-9a-f]{4}\.[0-9a-f]{4})\s+DYNAMIC\s+(\S+)`)

// vpcsMAC is the MAC address of VPCS with MAC offset id, as the switch
// console writes it: VPCS's 00:50:79:66:68:<id>.
func vpcsMAC(id int) string { return fmt.Sprintf("0050.7966.68%02x", id) }

// TestSwitchesWithATrunkKeepVLANsApart is issue 11's lab: four VPCS on two
// labd switches joined by a dot1q trunk, two in VLAN 10 and two in VLAN 20,
// all in one IP subnet. Same-VLAN pings cross the trunk, cross-VLAN pings
// get no reply, a capture on the trunk shows 802.1Q frames of both VLANs,
// and each switch's console lists the four MACs on the right ports and
// VLANs.
func TestSwitchesWithATrunkKeepVLANsApart(t *testing.T) {
	d := startDaemon(t, daemonOptions{})
	lab := newVPCSLab(d, "vlans")
	ports := []string{swPort(0, "access", 10, ""), swPort(1, "access", 20, ""), swPort(7, "dot1q", 1, "")}
	sw1, o1 := d.createNode(lab.project, "ethernet_switch", switchBody("SW1", ports...))
	sw2, o2 := d.createNode(lab.project, "ethernet_switch", switchBody("SW2", ports...))
	if o1["status"] != "started" {
		t.Fatalf("a new switch is %v, want started as GNS3's", o1["status"])
	}
	lab.addPCs("PC1", "PC2", "PC3", "PC4")
	path := func(name string) string { return nodePath(lab.project, lab.nodes[name]) }
	d.wire(lab.project, path("PC1"), "0/0", sw1, "0/0")
	d.wire(lab.project, path("PC2"), "0/0", sw1, "0/1")
	d.wire(lab.project, path("PC3"), "0/0", sw2, "0/0")
	d.wire(lab.project, path("PC4"), "0/0", sw2, "0/1")
	d.wire(lab.project, sw1, "0/7", sw2, "0/7")

	trunk := sw1 + "/adapters/0/ports/7"
	capture := d.do("POST", trunk+"/start_capture", `{"capture_file_name":"trunk.pcap","data_link_type":"DLT_EN10MB"}`).
		expect(t, 200, "").object(t)

	lab.start(t, map[string]string{"PC1": "10.0.0.1", "PC2": "10.0.0.2", "PC3": "10.0.0.3", "PC4": "10.0.0.4"})
	lab.pingsFrom(t, "PC1", "10.0.0.3", true) // VLAN 10 across the trunk
	lab.pingsFrom(t, "PC2", "10.0.0.4", true) // VLAN 20 across the trunk
	lab.pingsFrom(t, "PC1", "10.0.0.4", false)
	lab.pingsFrom(t, "PC3", "10.0.0.2", false)

	d.do("POST", trunk+"/stop_capture", "").expect(t, 204, "")
	file, err := os.ReadFile(capture["pcap_file_path"].(string))
	if err != nil {
		t.Fatal(err)
	}
	tagged, untagged := vlanFrames(t, bytes.NewReader(file))
	if tagged[10] == 0 || tagged[20] == 0 {
		t.Fatalf("trunk capture: 802.1Q frames by VLAN %v (and %d untagged), want VLAN 10 and 20", tagged, untagged)
	}
	for vlan := range tagged {
		if vlan != 10 && vlan != 20 {
			t.Fatalf("trunk capture: a frame tagged VLAN %d (by VLAN: %v)", vlan, tagged)
		}
	}
	req, rep := icmpCount(t, bytes.NewReader(file), "10.0.0.1", "10.0.0.3")
	if req == 0 || rep == 0 {
		t.Fatalf("trunk capture: %d echo requests, %d replies between PC1 and PC3", req, rep)
	}

	// The consoles: each switch knows the four PCs, the local ones on
	// their access ports, the far ones on the trunk.
	macs := map[string]int{}
	for name, n := range lab.nodes {
		macs[name] = macID(t, d, lab.project, n)
	}
	for _, sw := range []struct {
		obj   map[string]any
		where map[string]string // PC -> "VLAN port"
	}{
		{o1, map[string]string{"PC1": "10 Ethernet0", "PC2": "20 Ethernet1", "PC3": "10 Ethernet7", "PC4": "20 Ethernet7"}},
		{o2, map[string]string{"PC3": "10 Ethernet0", "PC4": "20 Ethernet1", "PC1": "10 Ethernet7", "PC2": "20 Ethernet7"}},
	} {
		c := dialConsole(t, int(sw.obj["console"].(float64)))
		c.waitFor(0, "# ", 10*time.Second)
		out := switchCommand(c, sw.obj["name"].(string), "show mac address-table")
		got := map[string]string{}
		for _, m := range macLine.FindAllStringSubmatch(out, -1) {
			got[m[2]] = m[1] + " " + m[3]
		}
		for pc, want := range sw.where {
			if g := got[vpcsMAC(macs[pc])]; g != want {
				t.Errorf("%s: %s (%s) is at %q, want %q; table:\n%s", sw.obj["name"], pc, vpcsMAC(macs[pc]), g, want, out)
			}
		}
		for _, cmd := range []string{"show vlan", "show interfaces"} {
			if out := switchCommand(c, sw.obj["name"].(string), cmd); !strings.Contains(out, "Ethernet7") {
				t.Errorf("%s: %q does not show the trunk:\n%s", sw.obj["name"], cmd, out)
			}
		}
		// The PCs are quiet now: a cleared table stays empty.
		switchCommand(c, sw.obj["name"].(string), "clear mac address-table")
		if out := switchCommand(c, sw.obj["name"].(string), "sh mac add"); !strings.Contains(out, "criterion: 0") {
			t.Errorf("%s: after clear mac address-table:\n%s", sw.obj["name"], out)
		}
	}
}

// switchCommand runs a command on a switch console and returns its output
// up to the next prompt.
func switchCommand(c *console, name, cmd string) string {
	c.t.Helper()
	m := c.mark()
	c.send(cmd)
	out := c.waitFor(m, "\n"+name+"# ", 10*time.Second)
	return out
}

// macID is a VPCS node's MAC offset, which its MAC address ends in.
func macID(t *testing.T, d *daemon, project string, n vpcsNode) int {
	t.Helper()
	st, err := d.Client.Node(project, n.ID)
	if err != nil {
		t.Fatal(err)
	}
	return st.MACID
}

// TestQinQPortPushesItsOuterTag shows a qinq port's outer tag on a trunk:
// a VPCS on a qinq port of VLAN 100 with ethertype 0x88A8 sends ARP, which
// leaves the trunk (a test socket) with the outer tag 0x88A8/100 in front
// of the untouched frame; a frame sent back with that outer tag reaches
// the VPCS without it.
func TestQinQPortPushesItsOuterTag(t *testing.T) {
	d := startDaemon(t, daemonOptions{})
	lab := newVPCSLab(d, "qinq")
	sw, _ := d.createNode(lab.project, "ethernet_switch", switchBody("SW",
		swPort(0, "qinq", 100, `,"ethertype":"0x88A8"`), swPort(1, "dot1q", 1, "")))
	lab.addPCs("PC1")
	d.wire(lab.project, nodePath(lab.project, lab.nodes["PC1"]), "0/0", sw, "0/0")
	far := newFarEnd(t)
	lport := d.udpPort(lab.project)
	d.do("POST", sw+"/adapters/0/ports/1/nio", nioBody(lport, far.port(), "")).expect(t, 201, "")
	lab.start(t, map[string]string{"PC1": "10.0.0.1"})

	c := lab.consoles["PC1"]
	c.send("ping 10.0.0.9 -c 1")
	buf := make([]byte, 2048)
	far.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	for {
		n, _, err := far.conn.ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("no frame from the qinq port on the trunk: %v", err)
		}
		frame := buf[:n]
		if n < 18 {
			continue
		}
		tpid, tci := binary.BigEndian.Uint16(frame[12:]), binary.BigEndian.Uint16(frame[14:])
		if tpid != 0x88A8 || tci&0x0fff != 100 {
			t.Fatalf("a frame from the qinq port left the trunk with tag %04x/%d, want 88a8/100: % x", tpid, tci&0x0fff, frame[:18])
		}
		// VPCS sends IPv6 too; the ARP of its ping is the frame looked for.
		if inner := binary.BigEndian.Uint16(frame[16:]); inner == uint16(layers.EthernetTypeARP) {
			break
		}
	}
	// Back: an ARP request for the VPCS with the outer tag; the VPCS
	// answers, so it got it untagged.
	req := far.arpRequest(t, net.IPv4(10, 0, 0, 1))
	tagged := append(append(append([]byte{}, req[:12]...), 0x88, 0xA8, 0x00, 100), req[12:]...)
	to := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: lport}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		far.conn.WriteToUDP(tagged, to)
		far.conn.SetReadDeadline(time.Now().Add(time.Second))
		for {
			n, _, err := far.conn.ReadFromUDP(buf)
			if err != nil {
				break
			}
			if n < 18 || binary.BigEndian.Uint16(buf[12:]) != 0x88A8 {
				continue
			}
			p := gopacket.NewPacket(buf[18:n], layers.LayerTypeARP, gopacket.Default)
			if arp, ok := p.Layer(layers.LayerTypeARP).(*layers.ARP); ok && arp.Operation == layers.ARPReply {
				return
			}
		}
	}
	t.Fatal("the VPCS did not answer an ARP request sent to it with the qinq outer tag")
}

// TestHubRepeatsEveryFrame: three VPCS on a hub; a capture on the third
// port sees the other two's ICMP.
func TestHubRepeatsEveryFrame(t *testing.T) {
	d := startDaemon(t, daemonOptions{})
	lab := newVPCSLab(d, "hub")
	hub, o := d.createNode(lab.project, "ethernet_hub", `{"name":"HUB"}`)
	if pm, _ := o["ports_mapping"].([]any); len(pm) != 8 {
		t.Fatalf("a new hub has ports %v, want GNS3's 8", o["ports_mapping"])
	}
	lab.addPCs("PC1", "PC2", "PC3")
	for i, name := range []string{"PC1", "PC2", "PC3"} {
		d.wire(lab.project, nodePath(lab.project, lab.nodes[name]), "0/0", hub, fmt.Sprintf("0/%d", i))
	}
	capture := d.do("POST", hub+"/adapters/0/ports/2/start_capture", `{"capture_file_name":"hub.pcap"}`).expect(t, 200, "").object(t)
	lab.start(t, map[string]string{"PC1": "10.0.0.1", "PC2": "10.0.0.2", "PC3": "10.0.0.3"})
	lab.pingsFrom(t, "PC1", "10.0.0.2", true)
	d.do("POST", hub+"/adapters/0/ports/2/stop_capture", "").expect(t, 204, "")
	file, err := os.ReadFile(capture["pcap_file_path"].(string))
	if err != nil {
		t.Fatal(err)
	}
	if req, rep := icmpCount(t, bytes.NewReader(file), "10.0.0.1", "10.0.0.2"); req < 3 || rep < 3 {
		t.Fatalf("the third port saw %d echo requests and %d replies between PC1 and PC2, want 3 of each", req, rep)
	}
}

// responder answers, on a test socket standing in for a UDP peer of a
// cloud port, the ARP requests and ICMP echo requests for its address.
type responder struct {
	conn *net.UDPConn
	mac  net.HardwareAddr
	ip   net.IP
	done chan struct{}
}

func startResponder(t *testing.T, ip net.IP) *responder {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	r := &responder{conn: conn, mac: net.HardwareAddr{0x02, 0, 0, 0, 0, 0x99}, ip: ip.To4(), done: make(chan struct{})}
	t.Cleanup(func() {
		conn.Close()
		<-r.done
	})
	go r.serve()
	return r
}

func (r *responder) port() int { return r.conn.LocalAddr().(*net.UDPAddr).Port }

func (r *responder) serve() {
	defer close(r.done)
	buf := make([]byte, 2048)
	for {
		n, from, err := r.conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		if reply := r.answer(buf[:n]); reply != nil {
			r.conn.WriteToUDP(reply, from)
		}
	}
}

// answer builds the reply to one frame, nil when there is none.
func (r *responder) answer(frame []byte) []byte {
	p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	eth, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	if eth == nil {
		return nil
	}
	out := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	reth := layers.Ethernet{SrcMAC: r.mac, DstMAC: eth.SrcMAC, EthernetType: eth.EthernetType}
	if arp, ok := p.Layer(layers.LayerTypeARP).(*layers.ARP); ok && arp.Operation == layers.ARPRequest && net.IP(arp.DstProtAddress).Equal(r.ip) {
		rarp := layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
			Operation: layers.ARPReply, SourceHwAddress: r.mac, SourceProtAddress: r.ip,
			DstHwAddress: arp.SourceHwAddress, DstProtAddress: arp.SourceProtAddress}
		if gopacket.SerializeLayers(out, opts, &reth, &rarp) != nil {
			return nil
		}
		return out.Bytes()
	}
	ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	icmp, _ := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
	if ip == nil || icmp == nil || !ip.DstIP.Equal(r.ip) || icmp.TypeCode.Type() != layers.ICMPv4TypeEchoRequest {
		return nil
	}
	rip := layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: r.ip, DstIP: ip.SrcIP}
	ricmp := layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoReply, 0), Id: icmp.Id, Seq: icmp.Seq}
	if gopacket.SerializeLayers(out, opts, &reth, &rip, &ricmp, gopacket.Payload(icmp.Payload)) != nil {
		return nil
	}
	return out.Bytes()
}

// freeUDPPort is a UDP port of 127.0.0.1 free right now, outside labd's
// pool (the kernel's ephemeral range).
func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// TestCloudUDPPortCarriesFramesBothWays: a VPCS linked to a cloud's udp
// port pings the test's own UDP socket behind it, which answers its ARP
// and its echo requests.
func TestCloudUDPPortCarriesFramesBothWays(t *testing.T) {
	d := startDaemon(t, daemonOptions{})
	lab := newVPCSLab(d, "cloud-udp")
	peer := startResponder(t, net.IPv4(10, 9, 0, 2))
	cloud, o := d.createNode(lab.project, "cloud", fmt.Sprintf(`{"name":"Cloud","ports_mapping":[
		{"name":"UDP tunnel 1","port_number":0,"type":"udp","lport":%d,"rhost":"127.0.0.1","rport":%d}]}`, freeUDPPort(t), peer.port()))
	if o["status"] != "started" {
		t.Fatalf("a new cloud is %v", o["status"])
	}
	lab.addPCs("PC1")
	d.wire(lab.project, nodePath(lab.project, lab.nodes["PC1"]), "0/0", cloud, "0/0")
	lab.start(t, map[string]string{"PC1": "10.9.0.1"})
	lab.pingsFrom(t, "PC1", "10.9.0.2", true)

	// A stopped cloud carries nothing; started again, it does.
	d.do("POST", cloud+"/stop", "").expect(t, 204, "")
	if s := d.do("GET", cloud, "").expect(t, 200, "").object(t)["status"]; s != "stopped" {
		t.Fatalf("a stopped cloud is %v", s)
	}
	lab.pingsFrom(t, "PC1", "10.9.0.2", false)
	d.do("POST", cloud+"/start", "").expect(t, 204, "")
	lab.pingsFrom(t, "PC1", "10.9.0.2", true)
}

// TestCloudTAPPortReachesANamespace: a cloud tap port on a TAP device labd
// creates; the test puts the TAP in a bridge to a namespace of its own,
// and a VPCS pings the namespace's address. Removing the link removes the
// TAP labd created.
func TestCloudTAPPortReachesANamespace(t *testing.T) {
	d := startDaemon(t, daemonOptions{})
	lab := newVPCSLab(d, "cloud-tap")
	ns := niotest.New(t, "10.8.0.1/24")
	tap := niotest.Name("ltap")
	t.Cleanup(func() { exec.Command("ip", "link", "del", tap).Run() })
	if niotest.LinkExists(tap) {
		t.Fatalf("%s exists already", tap)
	}
	cloud, _ := d.createNode(lab.project, "cloud", `{"name":"Cloud","ports_mapping":[
		{"name":"tap","port_number":0,"type":"tap","interface":`+quote(tap)+`}]}`)
	lab.addPCs("PC1")
	d.wire(lab.project, nodePath(lab.project, lab.nodes["PC1"]), "0/0", cloud, "0/0")
	if !niotest.LinkExists(tap) {
		t.Fatalf("linking the cloud's tap port did not create %s", tap)
	}
	ns.Join(t, tap)
	lab.start(t, map[string]string{"PC1": "10.8.0.2"})
	lab.pingsFrom(t, "PC1", "10.8.0.1", true)

	d.do("DELETE", cloud+"/adapters/0/ports/0/nio", "").expect(t, 204, "")
	if niotest.LinkExists(tap) {
		t.Fatalf("%s, which labd created, is still there after its link went", tap)
	}
}

// TestCloudHostInterfacesNeedAGrant: labd runs as root, so a host
// interface is the operator's to give (--cloud-interface). A cloud port on
// an interface not granted, or on a TAP device labd did not create, is
// refused at link time (403) and nothing is recorded; granted, an ethernet
// port on the bridge of a test namespace carries a VPCS's pings there.
func TestCloudHostInterfacesNeedAGrant(t *testing.T) {
	ns := niotest.New(t, "10.7.0.1/24")
	tap := niotest.Name("ltap")
	niotest.IP(t, "tuntap", "add", "dev", tap, "mode", "tap")
	t.Cleanup(func() { exec.Command("ip", "link", "del", tap).Run() })
	body := `{"name":"Cloud","ports_mapping":[
		{"name":"eth","port_number":0,"type":"ethernet","interface":` + quote(ns.Bridge) + `},
		{"name":"tap","port_number":1,"type":"tap","interface":` + quote(tap) + `}]}`

	d := startDaemon(t, daemonOptions{})
	lab := newVPCSLab(d, "cloud-grant")
	cloud, _ := d.createNode(lab.project, "cloud", body)
	for _, port := range []string{"0", "1"} {
		lport := d.udpPort(lab.project)
		before := d.lastSeq()
		r := d.do("POST", cloud+"/adapters/0/ports/"+port+"/nio", nioBody(lport, freeUDPPort(t), "")).expect(t, 403, "").object(t)
		if msg, _ := r["message"].(string); !strings.Contains(msg, "--cloud-interface") {
			t.Fatalf("port %s: message %q does not say how to grant the interface", port, msg)
		}
		if after := d.lastSeq(); after != before {
			t.Fatalf("a refused link recorded events %d..%d", before+1, after)
		}
	}
	n, err := d.Client.Node(lab.project, cloud[strings.LastIndex(cloud, "/")+1:])
	if err != nil || len(n.Links) != 0 {
		t.Fatalf("after refused links the cloud has links %v (%v)", n.Links, err)
	}

	g := startDaemon(t, daemonOptions{cloudInterfaces: []string{"lbr*"}})
	lab = newVPCSLab(g, "cloud-granted")
	cloud, _ = g.createNode(lab.project, "cloud", body)
	lab.addPCs("PC1")
	g.wire(lab.project, nodePath(lab.project, lab.nodes["PC1"]), "0/0", cloud, "0/0")
	lab.start(t, map[string]string{"PC1": "10.7.0.2"})
	lab.pingsFrom(t, "PC1", "10.7.0.1", true)
	// The TAP is still not granted: "lbr*" names the bridges only.
	g.do("POST", cloud+"/adapters/0/ports/1/nio", nioBody(g.udpPort(lab.project), freeUDPPort(t), "")).expect(t, 403, "")
}
