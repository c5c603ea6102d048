package cloud

import (
	"encoding/json"
	"errors"
	"testing"

	"labd/actors/kind"
	"labd/host"
)

func TestSettle(t *testing.T) {
	d := Driver{}
	raw, err := d.Settle(kind.Node{Name: "Cloud"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var props Properties
	if err := json.Unmarshal(raw, &props); err != nil {
		t.Fatal(err)
	}
	// GNS3's defaults: a port per host interface that is not special.
	ifs, err := host.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	want := 0
	for _, i := range ifs {
		if !i.Special {
			want++
		}
	}
	if len(props.Ports) != want || props.RemoteConsoleType != "none" || props.RemoteConsolePort != 23 || props.RemoteConsoleHTTPPath != "/" {
		t.Fatalf("defaults %+v, want %d ports and GNS3's remote console", props, want)
	}
	for _, p := range props.Ports {
		if p.Type != Ethernet && p.Type != TAP || p.Interface != p.Name {
			t.Fatalf("default port %+v", p)
		}
	}
	for name, ports := range map[string][]PortMapping{
		"duplicate number": {{Name: "a", PortNumber: 1, Type: TAP, Interface: "tap1"}, {Name: "b", PortNumber: 1, Type: TAP, Interface: "tap2"}},
		"bad tap name":     {{Name: "a", PortNumber: 0, Type: TAP, Interface: "bad/name"}},
		"long tap name":    {{Name: "a", PortNumber: 0, Type: TAP, Interface: "abcdefghijklmnop"}},
		"no interface":     {{Name: "a", PortNumber: 0, Type: Ethernet}},
		"unknown type":     {{Name: "a", PortNumber: 0, Type: "nat", Interface: "eth0"}},
		"udp no rhost":     {{Name: "a", PortNumber: 0, Type: UDP, LPort: 1, RPort: 2}},
		"udp lport 0":      {{Name: "a", PortNumber: 0, Type: UDP, RHost: "127.0.0.1", RPort: 2}},
		"udp rport high":   {{Name: "a", PortNumber: 0, Type: UDP, LPort: 1, RHost: "127.0.0.1", RPort: 65536}},
		"udp interface":    {{Name: "a", PortNumber: 0, Type: UDP, LPort: 1, RHost: "127.0.0.1", RPort: 2, Interface: "eth0"}},
		"tap with lport":   {{Name: "a", PortNumber: 0, Type: TAP, Interface: "tap0", LPort: 5}},
	} {
		if _, err := d.Settle(kind.Node{Name: "Cloud"}, &Patch{Ports: &ports}); !errors.Is(err, kind.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	bad := "ssh"
	if _, err := d.Settle(kind.Node{Name: "Cloud"}, &Patch{RemoteConsoleType: &bad}); !errors.Is(err, kind.ErrInvalid) {
		t.Errorf("remote console type ssh: %v", err)
	}
	// A port with a link stays as it is.
	ports := []PortMapping{{Name: "t", PortNumber: 0, Type: TAP, Interface: "tap0"}}
	raw, err = d.Settle(kind.Node{Name: "Cloud"}, &Patch{Ports: &ports})
	if err != nil {
		t.Fatal(err)
	}
	linked := kind.Node{Name: "Cloud", Properties: raw, Links: []kind.Link{{Port: kind.Port{Port: 0}}}}
	changed := []PortMapping{{Name: "t", PortNumber: 0, Type: TAP, Interface: "tap9"}}
	if _, err := d.Settle(linked, &Patch{Ports: &changed}); !errors.Is(err, kind.ErrConflict) {
		t.Fatalf("changing a linked port: %v, want ErrConflict", err)
	}
}
