package ethswitch

import (
	"bufio"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"labd/actors/kind"
	"labd/nio"
)

func TestSettleDefaultsAndRefusals(t *testing.T) {
	d := Driver{}
	raw, err := d.Settle(kind.Node{Name: "SW"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var props Properties
	if err := json.Unmarshal(raw, &props); err != nil {
		t.Fatal(err)
	}
	if len(props.Ports) != 8 || props.Ports[7] != (PortMapping{Name: "Ethernet7", PortNumber: 7, Type: Access, VLAN: 1}) {
		t.Fatalf("default ports %+v, want GNS3's 8 access ports in VLAN 1", props.Ports)
	}
	if got := d.Ports(raw); len(got) != 8 || got[3] != (kind.Port{Port: 3}) {
		t.Fatalf("ports %v", got)
	}
	for name, ports := range map[string][]PortMapping{
		"duplicate number": {{Name: "a", PortNumber: 1, Type: Access, VLAN: 1}, {Name: "b", PortNumber: 1, Type: Access, VLAN: 1}},
		"duplicate name":   {{Name: "a", PortNumber: 1, Type: Access, VLAN: 1}, {Name: "a", PortNumber: 2, Type: Access, VLAN: 1}},
		"VLAN 0":           {{Name: "a", PortNumber: 0, Type: Access, VLAN: 0}},
		"VLAN 4095":        {{Name: "a", PortNumber: 0, Type: Dot1Q, VLAN: 4095}},
		"unknown type":     {{Name: "a", PortNumber: 0, Type: "trunk", VLAN: 1}},
		"bad ethertype":    {{Name: "a", PortNumber: 0, Type: QinQ, VLAN: 1, EtherType: "0x8101"}},
		"ethertype access": {{Name: "a", PortNumber: 0, Type: Access, VLAN: 1, EtherType: "0x88A8"}},
		"no name":          {{PortNumber: 0, Type: Access, VLAN: 1}},
		"negative number":  {{Name: "a", PortNumber: -1, Type: Access, VLAN: 1}},
	} {
		if _, err := d.Settle(kind.Node{Name: "SW"}, &Patch{Ports: &ports}); !errors.Is(err, kind.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	// A port with a link cannot go.
	linked := kind.Node{Name: "SW", Properties: raw, Links: []kind.Link{{Port: kind.Port{Port: 7}, Up: true}}}
	fewer := props.Ports[:7]
	if _, err := d.Settle(linked, &Patch{Ports: &fewer}); !errors.Is(err, kind.ErrConflict) {
		t.Fatalf("removing a linked port: %v, want ErrConflict", err)
	}
	// Changing its VLAN can.
	changed := append([]PortMapping{}, props.Ports...)
	changed[7] = PortMapping{Name: "trunk", PortNumber: 7, Type: QinQ, VLAN: 100, EtherType: "0x88A8"}
	if _, err := d.Settle(linked, &Patch{Ports: &changed}); err != nil {
		t.Fatalf("changing a linked port's mode: %v", err)
	}
}

// TestConsoleCommands drives a running switch's console over TCP.
func TestConsoleCommands(t *testing.T) {
	pool, err := nio.NewPool("udp", "127.0.0.1", nio.PortRange{First: 41000, Last: 41100})
	if err != nil {
		t.Fatal(err)
	}
	h := kind.Host{Addr: "127.0.0.1", UDP: pool, Logger: slog.New(slog.DiscardHandler), Wire: func(kind.Port, kind.End) error { return nil }}
	ports := []PortMapping{{Name: "Gi0", PortNumber: 0, Type: Access, VLAN: 10}, {Name: "Gi1", PortNumber: 1, Type: Dot1Q, VLAN: 1},
		{Name: "Gi2", PortNumber: 2, Type: QinQ, VLAN: 300, EtherType: "0x9100"}}
	raw, err := Driver{}.Settle(kind.Node{Name: "core"}, &Patch{Ports: &ports})
	if err != nil {
		t.Fatal(err)
	}
	run, err := Driver{}.Launch(h, kind.Node{ID: "n1", Name: "core", Properties: raw})
	if err != nil {
		t.Fatal(err)
	}
	defer run.Stop(kind.StopRequest)
	if run.End(kind.Port{Port: 1}) == nil || run.End(kind.Port{Port: 5}) != nil || run.End(kind.Port{Adapter: 1, Port: 1}) != nil {
		t.Fatal("the run's ends are not the mapped ports")
	}
	conn, err := net.Dial("tcp", run.Console())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	readPrompt := func() string {
		t.Helper()
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		var b strings.Builder
		for !strings.HasSuffix(b.String(), "core# ") {
			c, err := r.ReadByte()
			if err != nil {
				t.Fatalf("console: %v after %q", err, b.String())
			}
			b.WriteByte(c)
		}
		return b.String()
	}
	readPrompt()
	for cmd, want := range map[string][]string{
		"show vlan":               {"10    VLAN0010", "Gi0", "300   VLAN0300", "802.1Q trunks (every VLAN): Gi1"},
		"sh int":                  {"Gi2 (port 2) is down (no link)", "QinQ, outer VLAN 300, ethertype 0x9100", "802.1Q trunk, native VLAN 1"},
		"show mac address-table":  {"Total Mac Addresses for this criterion: 0"},
		"clear mac address-table": {"MAC address table cleared"},
		"help":                    {"show mac address-table", "exit"},
		"reload now":              {"% Unknown command"},
	} {
		conn.Write([]byte(cmd + "\r\n"))
		out := readPrompt()
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("%q: no %q in\n%s", cmd, w, out)
			}
		}
	}
	// Typing is echoed, and a backspace erases.
	conn.Write([]byte("shx\x7fow vlan\r"))
	if out := readPrompt(); !strings.Contains(out, "shx\b \bow vlan") || !strings.Contains(out, "Gi0") {
		t.Errorf("line editing: %q", out)
	}
	// A rename shows in the prompt.
	renamed := kind.Node{ID: "n1", Name: "edge", Properties: raw}
	if err := run.Update(renamed); err != nil {
		t.Fatal(err)
	}
	conn.Write([]byte("exit\r\n"))
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.ReadString(0); err == nil {
		t.Fatal("exit did not close the session")
	}
}
