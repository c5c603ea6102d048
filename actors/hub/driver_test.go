package hub

import (
	"encoding/json"
	"errors"
	"testing"

	"labd/actors/kind"
)

func TestSettle(t *testing.T) {
	d := Driver{}
	raw, err := d.Settle(kind.Node{Name: "HUB"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var props Properties
	if err := json.Unmarshal(raw, &props); err != nil {
		t.Fatal(err)
	}
	if len(props.Ports) != 8 || props.Ports[0] != (PortMapping{Name: "Ethernet0", PortNumber: 0}) {
		t.Fatalf("default ports %+v, want GNS3's 8", props.Ports)
	}
	for name, ports := range map[string][]PortMapping{
		"duplicate number": {{Name: "a", PortNumber: 1}, {Name: "b", PortNumber: 1}},
		"duplicate name":   {{Name: "a", PortNumber: 1}, {Name: "a", PortNumber: 2}},
		"no name":          {{PortNumber: 0}},
		"too high":         {{Name: "a", PortNumber: 70000}},
	} {
		if _, err := d.Settle(kind.Node{Name: "HUB"}, &Patch{Ports: &ports}); !errors.Is(err, kind.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	linked := kind.Node{Name: "HUB", Properties: raw, Links: []kind.Link{{Port: kind.Port{Port: 7}}}}
	fewer := props.Ports[:2]
	if _, err := d.Settle(linked, &Patch{Ports: &fewer}); !errors.Is(err, kind.ErrConflict) {
		t.Fatalf("removing a linked port: %v, want ErrConflict", err)
	}
}
