package nio

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The VLAN rules of a Switch are Dynamips's ethsw (common/eth_switch.c),
// the switch GNS3 2.2 runs for its ethernet_switch nodes, minus its
// defects:
//
//   - access port: every frame that comes in belongs to the port's VLAN,
//     as it is (tags included); a frame goes out as it is.
//   - dot1q port: a frame tagged with TPID 0x8100, 0x88A8, 0x9100 or
//     0x9200 belongs to the tag's VLAN, an untagged one to the native
//     VLAN. Out of the port, the native VLAN is untagged and every other
//     VLAN tagged: a frame that came in tagged keeps its tag as it was
//     (TPID and priority); one that came in untagged gets a tag with
//     TPID 0x8100, or with the ethertype of the qinq port it came in on.
//   - qinq port (a dot1q tunnel port, facing the customer): every frame
//     that comes in, customer tags and all, belongs to the port's VLAN;
//     out of a dot1q port it gets the outer tag (the port's VLAN, with the
//     port's ethertype as TPID) pushed in front of the customer's, and a
//     frame that came in on a trunk with that outer tag leaves the qinq
//     port with the outer tag popped.
//
// Dynamips's defects not kept: a qinq port dropped untagged frames from
// the customer; qinq -> qinq popped the customer's tag; access <-> qinq
// was refused; a priority-tagged frame (VLAN id 0) on a trunk was
// dropped, where 802.1Q puts it in the native VLAN. VLAN id 4095 is
// reserved and dropped.

// PortMode is how a switch port carries VLANs, spelled as GNS3's
// ports_mapping "type".
type PortMode string

// The switch port modes.
const (
	// ModeAccess carries one VLAN, untagged.
	ModeAccess PortMode = "access"
	// ModeDot1Q is an 802.1Q trunk: every VLAN, the native one untagged.
	ModeDot1Q PortMode = "dot1q"
	// ModeQinQ is a dot1q tunnel port: everything it receives belongs to
	// its VLAN, which trunks carry as an outer tag.
	ModeQinQ PortMode = "qinq"
)

// TPIDs a dot1q port recognises as a VLAN tag, and a qinq port may use as
// the ethertype of its outer tag.
const (
	tpid8021Q  uint16 = 0x8100 // IEEE 802.1Q
	tpid8021AD uint16 = 0x88A8 // IEEE 802.1ad (provider bridging)
	tpidQinQ1  uint16 = 0x9100 // pre-standard QinQ
	tpidQinQ2  uint16 = 0x9200 // pre-standard QinQ
)

// ErrBadPortConfig is matched (errors.Is) by the errors of
// PortConfig.Validate.
var ErrBadPortConfig = errors.New("nio: bad switch port configuration")

// PortConfig is the VLAN configuration of one switch port (one entry of
// GNS3's ports_mapping, without its name and number).
type PortConfig struct {
	Mode PortMode // access, dot1q or qinq
	// VLAN is the access VLAN, the native VLAN of a dot1q port, or the
	// outer VLAN of a qinq port: 1..4094.
	VLAN int
	// Ethertype is the TPID of a qinq port's outer tag: 0x8100 (also when
	// 0), 0x88A8, 0x9100 or 0x9200, as GNS3's "ethertype" spells them in
	// hex. Other modes ignore it.
	Ethertype uint16
}

// Validate checks the mode, the VLAN and, for qinq, the ethertype. Its
// errors match ErrBadPortConfig.
func (c PortConfig) Validate() error {
	_, err := c.compile()
	return err
}

// portConfig is a validated PortConfig as the forwarding path reads it.
type portConfig struct {
	mode PortMode
	vlan uint16
	tpid uint16 // qinq: the outer tag's TPID
}

func (c PortConfig) compile() (portConfig, error) {
	if c.VLAN < 1 || c.VLAN > maxVLAN {
		return portConfig{}, fmt.Errorf("%w: VLAN %d is out of range 1..%d", ErrBadPortConfig, c.VLAN, maxVLAN)
	}
	pc := portConfig{mode: c.Mode, vlan: uint16(c.VLAN)}
	switch c.Mode {
	case ModeAccess, ModeDot1Q:
	case ModeQinQ:
		pc.tpid = c.Ethertype
		if pc.tpid == 0 {
			pc.tpid = tpid8021Q
		}
		if !isTPID(pc.tpid) {
			return portConfig{}, fmt.Errorf("%w: ethertype 0x%04X: want 0x8100, 0x88A8, 0x9100 or 0x9200", ErrBadPortConfig, c.Ethertype)
		}
	default:
		return portConfig{}, fmt.Errorf("%w: mode %q: want access, dot1q or qinq", ErrBadPortConfig, c.Mode)
	}
	return pc, nil
}

// config returns the PortConfig pc was compiled from (with the default
// ethertype filled in).
func (pc portConfig) config() PortConfig {
	return PortConfig{Mode: pc.mode, VLAN: int(pc.vlan), Ethertype: pc.tpid}
}

// carries reports whether frames of vlan may leave through the port.
func (pc portConfig) carries(vlan uint16) bool {
	return pc.mode == ModeDot1Q || pc.vlan == vlan
}

// Ethernet framing.
const (
	macLen       = 6
	ethHeaderLen = 14 // destination, source, ethertype
	tagOffset    = 12 // where an 802.1Q tag goes: after the two addresses
	tagLen       = 4  // TPID and TCI
	maxVLAN      = 4094
	vidMask      = 0x0FFF
	reservedVID  = 0x0FFF
)

func isTPID(t uint16) bool {
	return t == tpid8021Q || t == tpid8021AD || t == tpidQinQ1 || t == tpidQinQ2
}

// isMulticast reports whether a MAC address is a group address (broadcast
// included).
func isMulticast(mac []byte) bool { return mac[0]&1 != 0 }

// frameClass is what a switch port's ingress made of a frame.
type frameClass struct {
	vlan uint16 // the VLAN the frame belongs to
	// strip is the length of the tag at tagOffset that is the port's and
	// not the VLAN's payload: 4 for a tagged frame on a trunk, else 0.
	strip uint8
	// reuse says the stripped tag carries vlan, so a trunk may send the
	// frame as it is.
	reuse bool
	// tpid and pcp make the tag a trunk pushes when the frame has none to
	// reuse: the TPID, and the priority and DEI bits of the TCI.
	tpid, pcp uint16
}

// classify decides which VLAN a frame that came in on a port configured
// as in belongs to. ok is false for a frame the switch drops: shorter
// than an Ethernet header, a truncated tag, or the reserved VLAN 4095.
func classify(frame []byte, in portConfig) (c frameClass, ok bool) {
	if len(frame) < ethHeaderLen {
		return frameClass{}, false
	}
	switch in.mode {
	case ModeAccess:
		return frameClass{vlan: in.vlan, tpid: tpid8021Q}, true
	case ModeQinQ:
		return frameClass{vlan: in.vlan, tpid: in.tpid}, true
	}
	tpid := binary.BigEndian.Uint16(frame[tagOffset:])
	if !isTPID(tpid) {
		return frameClass{vlan: in.vlan, tpid: tpid8021Q}, true
	}
	if len(frame) < ethHeaderLen+tagLen {
		return frameClass{}, false
	}
	tci := binary.BigEndian.Uint16(frame[tagOffset+2:])
	switch vid := tci & vidMask; vid {
	case 0:
		// Priority-tagged: the native VLAN's; the tag goes, its priority
		// stays for a trunk that tags the frame again.
		return frameClass{vlan: in.vlan, strip: tagLen, tpid: tpid8021Q, pcp: tci &^ vidMask}, true
	case reservedVID:
		return frameClass{}, false
	default:
		return frameClass{vlan: vid, strip: tagLen, reuse: true, tpid: tpid, pcp: tci &^ vidMask}, true
	}
}

// egress says how a frame of class c leaves through a port configured as
// out (which carries c.vlan): as it is (rewrite false), or rewritten with
// its stripped tag removed and, when tag is not 0, tag (TPID << 16 | TCI)
// put in its place.
func egress(out portConfig, c frameClass) (tag uint32, rewrite bool) {
	tagged := out.mode == ModeDot1Q && c.vlan != out.vlan
	switch {
	case tagged && c.reuse:
		return 0, false
	case tagged:
		return uint32(c.tpid)<<16 | uint32(c.pcp|c.vlan), true
	default:
		return 0, c.strip != 0
	}
}

// rewrite writes frame into dst with its first strip bytes after the
// addresses removed and, when tag is not 0, that tag inserted there. It
// returns the new length, or -1 if dst is too short.
func rewrite(dst, frame []byte, strip int, tag uint32) int {
	n := len(frame) - strip
	if tag != 0 {
		n += tagLen
	}
	if n > len(dst) {
		return -1
	}
	copy(dst, frame[:tagOffset])
	off := tagOffset
	if tag != 0 {
		binary.BigEndian.PutUint32(dst[off:], tag)
		off += tagLen
	}
	copy(dst[off:], frame[tagOffset+strip:])
	return n
}
