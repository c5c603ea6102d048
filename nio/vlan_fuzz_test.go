package nio

import (
	"encoding/binary"
	"testing"
)

// fuzzPort makes a valid port configuration of any mode from fuzz input.
func fuzzPort(mode uint8, vlan uint16, tpid uint8) portConfig {
	modes := []PortMode{ModeAccess, ModeDot1Q, ModeQinQ}
	tpids := []uint16{0, tpid8021Q, tpid8021AD, tpidQinQ1, tpidQinQ2}
	pc, err := PortConfig{Mode: modes[int(mode)%len(modes)], VLAN: 1 + int(vlan)%maxVLAN, Ethertype: tpids[int(tpid)%len(tpids)]}.compile()
	if err != nil {
		panic(err)
	}
	return pc
}

// FuzzVLANTrunk feeds any frame to a port of any configuration, sends it
// out of a trunk as the switch would, and classifies what the trunk sent
// as the switch at the trunk's other end (a trunk of the same native
// VLAN) does: it must land in the VLAN it left. The one exception is 802.1Q's
// own: a frame of the native VLAN that already carries a tag inside goes
// out untagged and is read by the other end by its inner tag (the
// double-tagging "VLAN hopping" every switch is open to).
func FuzzVLANTrunk(f *testing.F) {
	f.Add(ether(broadcast, mac(1), 1), uint8(0), uint16(9), uint8(0), uint16(0))
	f.Add(ether(broadcast, mac(1), 1, tag{0x8100, 20}), uint8(1), uint16(0), uint8(0), uint16(5))
	f.Add(ether(broadcast, mac(1), 1, tag{0x88A8, 100}, tag{0x8100, 5}), uint8(2), uint16(99), uint8(2), uint16(0))
	f.Add(ether(broadcast, mac(1), 1, tag{0x8100, 3 << 13}), uint8(1), uint16(0), uint8(0), uint16(1))
	f.Add([]byte{1, 2, 3}, uint8(1), uint16(0), uint8(0), uint16(0))
	f.Fuzz(func(t *testing.T, frame []byte, mode uint8, vlan uint16, tpid uint8, native uint16) {
		if len(frame) > slotSize {
			return
		}
		in := fuzzPort(mode, vlan, tpid)
		c, ok := classify(frame, in)
		if !ok {
			return
		}
		if c.vlan < 1 || c.vlan > maxVLAN {
			t.Fatalf("classified into VLAN %d", c.vlan)
		}
		trunkPort := fuzzPort(1, native, 0)
		tag, rw := egress(trunkPort, c)
		out := frame
		if rw {
			buf := make([]byte, slotSize+tagLen)
			n := rewrite(buf, frame, int(c.strip), tag)
			if n < 0 {
				t.Fatal("no room in a slot and a tag")
			}
			out = buf[:n]
		}
		untagged := c.vlan == trunkPort.vlan
		if untagged && isTPID(binary.BigEndian.Uint16(out[tagOffset:])) {
			return // a tag inside the native VLAN: read by the other end as that tag's
		}
		c2, ok := classify(out, trunkPort)
		if !ok || c2.vlan != c.vlan {
			t.Fatalf("frame of VLAN %d (from %+v) crossed a trunk of native VLAN %d as % x and landed in VLAN %d (ok %v)",
				c.vlan, in, trunkPort.vlan, out[:min(len(out), 20)], c2.vlan, ok)
		}
		// Out of an access or qinq port of the VLAN, the frame loses only
		// what the ingress port had added.
		for _, mode := range []PortMode{ModeAccess, ModeQinQ} {
			pc := portConfig{mode: mode, vlan: c.vlan, tpid: tpid8021Q}
			if tag, rw := egress(pc, c); tag != 0 || rw != (c.strip != 0) {
				t.Fatalf("egress to %s: tag %#x rewrite %v for %+v", mode, tag, rw, c)
			}
		}
	})
}
