package nio

import (
	"bytes"
	"slices"
	"testing"
	"time"
)

func mustCompile(t *testing.T, c PortConfig) portConfig {
	t.Helper()
	pc, err := c.compile()
	if err != nil {
		t.Fatal(err)
	}
	return pc
}

func TestClassify(t *testing.T) {
	qinq := PortConfig{Mode: ModeQinQ, VLAN: 100, Ethertype: 0x88A8}
	tests := []struct {
		name  string
		in    PortConfig
		frame []byte
		want  frameClass
		ok    bool
	}{
		{"access untagged", access(10), ether(broadcast, mac(1), 0), frameClass{vlan: 10, tpid: 0x8100}, true},
		{"access keeps a tag as payload", access(10), ether(broadcast, mac(1), 0, tag{0x8100, 20}), frameClass{vlan: 10, tpid: 0x8100}, true},
		{"trunk untagged is native", trunk(7), ether(broadcast, mac(1), 0), frameClass{vlan: 7, tpid: 0x8100}, true},
		{"trunk tagged", trunk(7), ether(broadcast, mac(1), 0, tag{0x8100, 20}), frameClass{vlan: 20, strip: 4, reuse: true, tpid: 0x8100}, true},
		{"trunk tagged with priority", trunk(7), ether(broadcast, mac(1), 0, tag{0x8100, 6<<13 | 1<<12 | 20}), frameClass{vlan: 20, strip: 4, reuse: true, tpid: 0x8100, pcp: 6<<13 | 1<<12}, true},
		{"trunk native tagged", trunk(7), ether(broadcast, mac(1), 0, tag{0x8100, 7}), frameClass{vlan: 7, strip: 4, reuse: true, tpid: 0x8100}, true},
		{"trunk 802.1ad tag", trunk(7), ether(broadcast, mac(1), 0, tag{0x88A8, 30}), frameClass{vlan: 30, strip: 4, reuse: true, tpid: 0x88A8}, true},
		{"trunk 0x9100 tag", trunk(7), ether(broadcast, mac(1), 0, tag{0x9100, 30}), frameClass{vlan: 30, strip: 4, reuse: true, tpid: 0x9100}, true},
		{"trunk 0x9200 tag", trunk(7), ether(broadcast, mac(1), 0, tag{0x9200, 30}), frameClass{vlan: 30, strip: 4, reuse: true, tpid: 0x9200}, true},
		{"trunk priority-tagged", trunk(7), ether(broadcast, mac(1), 0, tag{0x8100, 5 << 13}), frameClass{vlan: 7, strip: 4, tpid: 0x8100, pcp: 5 << 13}, true},
		{"trunk VLAN 4095", trunk(7), ether(broadcast, mac(1), 0, tag{0x8100, 4095}), frameClass{}, false},
		{"trunk truncated tag", trunk(7), ether(broadcast, mac(1), 0, tag{0x8100, 20})[:17], frameClass{}, false},
		{"qinq untagged", qinq, ether(broadcast, mac(1), 0), frameClass{vlan: 100, tpid: 0x88A8}, true},
		{"qinq customer-tagged", qinq, ether(broadcast, mac(1), 0, tag{0x8100, 5}), frameClass{vlan: 100, tpid: 0x88A8}, true},
		{"qinq default ethertype", PortConfig{Mode: ModeQinQ, VLAN: 100}, ether(broadcast, mac(1), 0), frameClass{vlan: 100, tpid: 0x8100}, true},
		{"runt", access(1), make([]byte, 13), frameClass{}, false},
		{"empty", trunk(1), nil, frameClass{}, false},
		{"header only", trunk(1), ether(broadcast, mac(1), 0)[:14], frameClass{vlan: 1, tpid: 0x8100}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := classify(tt.frame, mustCompile(t, tt.in))
			if got != tt.want || ok != tt.ok {
				t.Fatalf("classify = %+v, %v; want %+v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestEgress(t *testing.T) {
	untagged := frameClass{vlan: 10, tpid: 0x8100}
	tagged := frameClass{vlan: 10, strip: 4, reuse: true, tpid: 0x88A8, pcp: 3 << 13}
	priority := frameClass{vlan: 10, strip: 4, tpid: 0x8100, pcp: 3 << 13}
	fromQinQ := frameClass{vlan: 10, tpid: 0x9100}
	tests := []struct {
		name    string
		out     PortConfig
		c       frameClass
		tag     uint32
		rewrite bool
	}{
		{"untagged to access", access(10), untagged, 0, false},
		{"tagged to access: pop", access(10), tagged, 0, true},
		{"untagged to trunk native", trunk(10), untagged, 0, false},
		{"tagged to trunk native: pop", trunk(10), tagged, 0, true},
		{"untagged to trunk: push 802.1Q", trunk(1), untagged, 0x8100<<16 | 10, true},
		{"tagged to trunk: as it is", trunk(1), tagged, 0, false},
		{"priority-tagged to trunk: retag with priority", trunk(1), priority, 0x8100<<16 | 3<<13 | 10, true},
		{"priority-tagged to access: pop", access(10), priority, 0, true},
		{"qinq to trunk: push its ethertype", trunk(1), fromQinQ, 0x9100<<16 | 10, true},
		{"qinq to trunk native: as it is", trunk(10), fromQinQ, 0, false},
		{"tagged to qinq: pop the outer tag", PortConfig{Mode: ModeQinQ, VLAN: 10}, tagged, 0, true},
		{"untagged to qinq", PortConfig{Mode: ModeQinQ, VLAN: 10}, untagged, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := mustCompile(t, tt.out)
			if !out.carries(tt.c.vlan) {
				t.Fatal("port does not carry the VLAN")
			}
			tag, rw := egress(out, tt.c)
			if tag != tt.tag || rw != tt.rewrite {
				t.Fatalf("egress = %#x, %v; want %#x, %v", tag, rw, tt.tag, tt.rewrite)
			}
		})
	}
}

func TestCarries(t *testing.T) {
	for _, tt := range []struct {
		cfg  PortConfig
		vlan uint16
		want bool
	}{
		{access(10), 10, true}, {access(10), 11, false},
		{trunk(1), 10, true}, {trunk(1), 4094, true},
		{PortConfig{Mode: ModeQinQ, VLAN: 10}, 10, true}, {PortConfig{Mode: ModeQinQ, VLAN: 10}, 1, false},
	} {
		if got := mustCompile(t, tt.cfg).carries(tt.vlan); got != tt.want {
			t.Errorf("%+v carries %d = %v", tt.cfg, tt.vlan, got)
		}
	}
}

func TestRewrite(t *testing.T) {
	plain := ether(broadcast, mac(1), 42)
	tagged := ether(broadcast, mac(1), 42, tag{0x8100, 20})
	qinq := ether(broadcast, mac(1), 42, tag{0x88A8, 100}, tag{0x8100, 5})
	tests := []struct {
		name  string
		frame []byte
		strip int
		tag   uint32
		want  []tag // the tags of the result, which keeps the addresses, seq and padding
	}{
		{"push", plain, 0, 0x8100<<16 | 20, []tag{{0x8100, 20}}},
		{"pop", tagged, 4, 0, nil},
		{"retag", tagged, 4, 0x88A8<<16 | 100, []tag{{0x88A8, 100}}},
		{"pop the outer tag", qinq, 4, 0, []tag{{0x8100, 5}}},
		{"push onto a customer tag", tagged, 0, 0x88A8<<16 | 100, []tag{{0x88A8, 100}, {0x8100, 20}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := make([]byte, slotSize)
			n := rewrite(dst, tt.frame, tt.strip, tt.tag)
			if want := len(tt.frame) + tagLen*(len(tt.want)-len(parseEther(t, tt.frame).tags)); n != want {
				t.Fatalf("length %d, want %d", n, want)
			}
			got, orig := parseEther(t, dst[:n]), parseEther(t, tt.frame)
			if !bytes.Equal(got.dst, orig.dst) || !bytes.Equal(got.src, orig.src) || got.seq != orig.seq || !slices.Equal(got.tags, tt.want) {
				t.Fatalf("got %+v, want tags %v of %+v", got, tt.want, orig)
			}
			if !bytes.HasSuffix(dst[:n], tt.frame[len(tt.frame)-40:]) {
				t.Fatal("the payload changed")
			}
		})
	}
	// Only the addresses and the ethertype: the tag goes between them.
	dst := make([]byte, 18)
	if n := rewrite(dst, plain[:14], 0, 0x8100<<16|1); n != 18 || !bytes.Equal(dst, append(append(slices.Clone(plain[:12]), 0x81, 0, 0, 1), plain[12:14]...)) {
		t.Fatalf("header only: %d % x", n, dst)
	}
	if n := rewrite(make([]byte, 64), make([]byte, 62), 0, 0x8100<<16|1); n != -1 {
		t.Fatalf("rewrite into a short buffer = %d, want -1", n)
	}
}

// TestDecide covers the switch's decision for one frame against a MAC
// table, and what it learns.
func TestDecide(t *testing.T) {
	in, other, closed := &fabricPort{number: 0}, &fabricPort{number: 1}, &fabricPort{number: 2}
	closed.gone.Store(true)
	const now = time.Hour
	setup := func() *macTable {
		m := newMACTable(DefaultAging)
		m.now = func() time.Duration { return now }
		m.learn(macKeyAt(ether(broadcast, mac(2), 0), macLen, 10), other, now)                 // B on the other port, VLAN 10
		m.learn(macKeyAt(ether(broadcast, mac(3), 0), macLen, 10), in, now)                    // C behind the ingress port
		m.learn(macKeyAt(ether(broadcast, mac(4), 0), macLen, 10), other, now-DefaultAging-1)  // D, aged out
		m.learn(macKeyAt(ether(broadcast, mac(5), 0), macLen, 20), other, now-time.Second*100) // E, in VLAN 20
		m.learn(macKeyAt(ether(broadcast, mac(6), 0), macLen, 10), closed, now)                // F, on a port being closed
		return m
	}
	tests := []struct {
		name  string
		cfg   PortConfig
		frame []byte
		to    *fabricPort
		flood bool
		ok    bool
	}{
		{"known unicast", access(10), ether(mac(2), mac(1), 0), other, false, true},
		{"unknown unicast floods", access(10), ether(mac(9), mac(1), 0), nil, true, true},
		{"broadcast floods", access(10), ether(broadcast, mac(1), 0), nil, true, true},
		{"multicast floods", access(10), ether([]byte{0x01, 0, 0x5e, 0, 0, 1}, mac(1), 0), nil, true, true},
		{"known broadcast source still floods", access(10), ether(broadcast, mac(2), 0), nil, true, true},
		{"destination behind the ingress port", access(10), ether(mac(3), mac(1), 0), nil, false, true},
		{"aged-out destination floods", access(10), ether(mac(4), mac(1), 0), nil, true, true},
		{"destination on a closed port floods", access(10), ether(mac(6), mac(1), 0), nil, true, true},
		{"known in another VLAN only: floods", access(10), ether(mac(5), mac(1), 0), nil, true, true},
		{"known in its VLAN", access(20), ether(mac(5), mac(1), 0), other, false, true},
		{"tagged on a trunk: the tag's VLAN", trunk(1), ether(mac(5), mac(1), 0, tag{0x8100, 20}), other, false, true},
		{"refused", trunk(1), ether(mac(5), mac(1), 0, tag{0x8100, 4095}), nil, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := setup()
			v, ok := decide(tt.frame, in, mustCompile(t, tt.cfg), m, now)
			if ok != tt.ok || v.to != tt.to || v.flood != tt.flood {
				t.Fatalf("decide = to %v flood %v ok %v; want to %v flood %v ok %v", v.to, v.flood, ok, tt.to, tt.flood, tt.ok)
			}
			if !ok {
				return
			}
			// The source is learned on the ingress port in the frame's VLAN.
			if got := m.lookup(macKeyAt(tt.frame, macLen, v.cls.vlan), now); got != in {
				t.Fatalf("source learned on %v, want the ingress port", got)
			}
		})
	}
	// A port being closed teaches nothing.
	m := setup()
	if _, ok := decide(ether(broadcast, mac(7), 0), closed, mustCompile(t, access(10)), m, now); !ok {
		t.Fatal("refused")
	}
	if got := m.lookup(macKeyAt(ether(broadcast, mac(7), 0), macLen, 10), now); got != nil {
		t.Fatalf("learned on a closed port: %v", got)
	}
}
