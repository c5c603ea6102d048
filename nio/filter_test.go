package nio

import (
	"bytes"
	"encoding/json"
	"errors"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Frames are built with gopacket as a guest would send them.

func serializeFrame(tb testing.TB, ls ...gopacket.SerializableLayer) []byte {
	tb.Helper()
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ls...); err != nil {
		tb.Fatalf("serialize: %v", err)
	}
	return bytes.Clone(buf.Bytes())
}

func ethernetIPv4(proto layers.IPProtocol) (*layers.Ethernet, *layers.IPv4) {
	eth := &layers.Ethernet{
		SrcMAC:       net.HardwareAddr{0x0c, 0x12, 0x34, 0x56, 0x00, 0x01},
		DstMAC:       net.HardwareAddr{0x0c, 0x12, 0x34, 0x56, 0x00, 0x02},
		EthernetType: layers.EthernetTypeIPv4,
	}
	ip := &layers.IPv4{
		Version: 4, TTL: 64, Protocol: proto,
		SrcIP: net.IPv4(10, 0, 0, 1), DstIP: net.IPv4(10, 0, 0, 2),
	}
	return eth, ip
}

// icmpFrame is an echo request with a 56-byte payload, like ping's.
func icmpFrame(tb testing.TB) []byte {
	eth, ip := ethernetIPv4(layers.IPProtocolICMPv4)
	icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 7, Seq: 1}
	return serializeFrame(tb, eth, ip, icmp, gopacket.Payload(bytes.Repeat([]byte{0xab}, 56)))
}

func udpFrame(tb testing.TB, dstPort uint16) []byte {
	eth, ip := ethernetIPv4(layers.IPProtocolUDP)
	udp := &layers.UDP{SrcPort: 40000, DstPort: layers.UDPPort(dstPort)}
	if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
		tb.Fatal(err)
	}
	return serializeFrame(tb, eth, ip, udp, gopacket.Payload([]byte("hello, link")))
}

func mustParse(tb testing.TB, spec FilterSpec) *Filters {
	tb.Helper()
	f, err := ParseFilters(spec)
	if err != nil {
		tb.Fatalf("ParseFilters(%v): %v", spec, err)
	}
	return f
}

// countDrops applies n copies of frame and counts drops.
func countDrops(c *Chain, frame []byte, n int) int {
	drops := 0
	for range n {
		if c.Apply(frame).Drop {
			drops++
		}
	}
	return drops
}

func TestParseFiltersAccepts(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   FilterSpec
		want FilterSpec
	}{
		{"nil", nil, FilterSpec{}},
		{"empty", FilterSpec{}, FilterSpec{}},
		{"float64 from JSON", FilterSpec{"frequency_drop": {float64(-1)}}, FilterSpec{"frequency_drop": {-1}}},
		{"int", FilterSpec{"packet_loss": {30}}, FilterSpec{"packet_loss": {30}}},
		{"json.Number", FilterSpec{"corrupt": {json.Number("100")}}, FilterSpec{"corrupt": {100}}},
		{"integral json.Number", FilterSpec{"corrupt": {json.Number("5.0")}}, FilterSpec{"corrupt": {5}}},
		{"string with spaces", FilterSpec{"delay": {" 300 ", "\n20\n"}}, FilterSpec{"delay": {300, 20}}},
		{"delay without jitter", FilterSpec{"delay": {300}}, FilterSpec{"delay": {300}}},
		{"zero is a kept no-op", FilterSpec{"packet_loss": {0}}, FilterSpec{"packet_loss": {0}}},
		{"empty string is a no-op", FilterSpec{"frequency_drop": {""}}, FilterSpec{"frequency_drop": {0}}},
		{"bounds", FilterSpec{"frequency_drop": {32767}, "delay": {32767, 32767}}, FilterSpec{"frequency_drop": {32767}, "delay": {32767, 32767}}},
		{"empty bpf", FilterSpec{"bpf": {}}, FilterSpec{"bpf": {""}}},
		{"blank bpf", FilterSpec{"bpf": {" \n\n"}}, FilterSpec{"bpf": {""}}},
		{"bpf lines trimmed", FilterSpec{"bpf": {" icmp \r\n\nudp port 53\n"}}, FilterSpec{"bpf": {"icmp\nudp port 53"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := mustParse(t, tc.in)
			if got := f.Spec(); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Spec() = %#v, want %#v", got, tc.want)
			}
		})
	}
}

func TestParseFiltersRefuses(t *testing.T) {
	for _, tc := range []struct {
		in     FilterSpec
		filter string
		msg    string // the whole message, or a part of it for tcpdump's
	}{
		{FilterSpec{"packet_loss": {150}}, "packet_loss", `filter "packet_loss": 150 is out of range 0..100`},
		{FilterSpec{"packet_loss": {-1}}, "packet_loss", `filter "packet_loss": -1 is out of range 0..100`},
		{FilterSpec{"corrupt": {101.0}}, "corrupt", `filter "corrupt": 101 is out of range 0..100`},
		{FilterSpec{"frequency_drop": {-2}}, "frequency_drop", `filter "frequency_drop": -2 is out of range -1..32767`},
		{FilterSpec{"frequency_drop": {32768}}, "frequency_drop", `filter "frequency_drop": 32768 is out of range -1..32767`},
		{FilterSpec{"delay": {32768}}, "delay", `filter "delay": latency 32768 is out of range 0..32767`},
		{FilterSpec{"delay": {10, -5}}, "delay", `filter "delay": jitter -5 is out of range 0..32767`},
		{FilterSpec{"delay": {0, 40000}}, "delay", `filter "delay": jitter 40000 is out of range 0..32767`},
		{FilterSpec{"packet_loss": {2.5}}, "packet_loss", `filter "packet_loss": 2.5 is not an integer`},
		{FilterSpec{"packet_loss": {"ten"}}, "packet_loss", `filter "packet_loss": "ten" is not an integer`},
		{FilterSpec{"packet_loss": {"2.5"}}, "packet_loss", `filter "packet_loss": "2.5" is not an integer`},
		{FilterSpec{"packet_loss": {json.Number("1e999")}}, "packet_loss", `filter "packet_loss": 1e999 is not a number`},
		{FilterSpec{"corrupt": {1e300}}, "corrupt", `filter "corrupt": 1e+300 is out of range`},
		{FilterSpec{"corrupt": {true}}, "corrupt", `filter "corrupt": true has type bool, want an integer`},
		{FilterSpec{"corrupt": {nil}}, "corrupt", `filter "corrupt": <nil> has type <nil>, want an integer`},
		{FilterSpec{"packet_loss": {}}, "packet_loss", `filter "packet_loss": takes 1 value, got 0`},
		{FilterSpec{"frequency_drop": {1, 2}}, "frequency_drop", `filter "frequency_drop": takes 1 value, got 2`},
		{FilterSpec{"delay": {}}, "delay", `filter "delay": takes 1 or 2 values (latency ms, jitter ms), got 0`},
		{FilterSpec{"delay": {1, 2, 3}}, "delay", `filter "delay": takes 1 or 2 values (latency ms, jitter ms), got 3`},
		{FilterSpec{"bpf": {"icmp", "EN10MB"}}, "bpf", `filter "bpf": takes 1 value (the expressions, one per line), got 2`},
		{FilterSpec{"bpf": {42.0}}, "bpf", `filter "bpf": 42 has type float64, want a string`},
		{FilterSpec{"drop_all": {1}}, "drop_all", `filter "drop_all": unknown filter type (want one of frequency_drop, packet_loss, corrupt, delay, bpf)`},
		{FilterSpec{"bpf": {"icmp and"}}, "bpf", `filter "bpf": line 1 "icmp and": can't parse filter expression: syntax error`},
		{FilterSpec{"bpf": {"icmp\n\nnot a valid ( expression"}}, "bpf", `filter "bpf": line 3 "not a valid ( expression": `},
		// The cheap filters are checked before bpf runs tcpdump.
		{FilterSpec{"bpf": {"icmp and"}, "corrupt": {200}}, "corrupt", `filter "corrupt": 200 is out of range 0..100`},
	} {
		_, err := ParseFilters(tc.in)
		if err == nil {
			t.Errorf("ParseFilters(%v) accepted it", tc.in)
			continue
		}
		if !errors.Is(err, ErrBadFilter) {
			t.Errorf("ParseFilters(%v) = %v, not an ErrBadFilter", tc.in, err)
		}
		var fe *FilterError
		if !errors.As(err, &fe) || fe.Filter != tc.filter {
			t.Errorf("ParseFilters(%v) = %#v, want a *FilterError for %q", tc.in, err, tc.filter)
		}
		if msg := err.Error(); msg != tc.msg && !(tc.filter == "bpf" && strings.HasPrefix(msg, tc.msg)) {
			t.Errorf("ParseFilters(%v) = %q, want %q", tc.in, msg, tc.msg)
		}
	}
}

func TestFilterSpecJSONRoundTrip(t *testing.T) {
	in := FilterSpec{
		"frequency_drop": {"3"},
		"packet_loss":    {12.0},
		"delay":          {json.Number("250"), " 15 "},
		"corrupt":        {0},
		"bpf":            {"icmp\n\n udp port 53 \n"},
	}
	want := FilterSpec{
		"frequency_drop": {3},
		"packet_loss":    {12},
		"delay":          {250, 15},
		"corrupt":        {0},
		"bpf":            {"icmp\nudp port 53"},
	}
	first := mustParse(t, in).Spec()
	if !reflect.DeepEqual(first, want) {
		t.Fatalf("Spec() = %#v, want %#v", first, want)
	}
	if again := mustParse(t, first).Spec(); !reflect.DeepEqual(again, first) {
		t.Errorf("ParseFilters(Spec()).Spec() = %#v, want %#v", again, first)
	}
	data, err := json.Marshal(first)
	if err != nil {
		t.Fatal(err)
	}
	var decoded FilterSpec // numbers come back as float64
	if err := json.Unmarshal(data, &decoded); err != nil {
		t.Fatal(err)
	}
	if got := mustParse(t, decoded).Spec(); !reflect.DeepEqual(got, first) {
		t.Errorf("after JSON %s: Spec() = %#v, want %#v", data, got, first)
	}
}

func TestFilterSpecIsACopy(t *testing.T) {
	f := mustParse(t, FilterSpec{"packet_loss": {10}})
	s := f.Spec()
	s["packet_loss"][0] = 99
	s["corrupt"] = []any{5}
	if got := f.Spec(); !reflect.DeepEqual(got, FilterSpec{"packet_loss": {10}}) {
		t.Errorf("Spec() after mutating a copy = %v", got)
	}
}

func TestFilterNone(t *testing.T) {
	frame := icmpFrame(t)
	orig := bytes.Clone(frame)
	for name, c := range map[string]*Chain{
		"nil Filters": (*Filters)(nil).NewChain(),
		"empty spec":  mustParse(t, FilterSpec{}).NewChain(),
		"no-ops": mustParse(t, FilterSpec{
			"frequency_drop": {0}, "packet_loss": {0}, "delay": {0, 100}, "corrupt": {0}, "bpf": {""},
		}).NewChain(),
	} {
		for range 1000 {
			if v := c.Apply(frame); v != (Verdict{}) {
				t.Fatalf("%s: Apply = %+v, want a plain pass", name, v)
			}
		}
		if !bytes.Equal(frame, orig) {
			t.Fatalf("%s: the frame changed", name)
		}
	}
}

func TestFilterFrequencyDrop(t *testing.T) {
	frame := udpFrame(t, 9)
	for _, tc := range []struct {
		every, want int
	}{{-1, 300}, {0, 0}, {1, 300}, {3, 100}, {301, 0}} {
		c := mustParse(t, FilterSpec{"frequency_drop": {tc.every}}).NewChain()
		if got := countDrops(c, frame, 300); got != tc.want {
			t.Errorf("frequency_drop %d: %d of 300 dropped, want %d", tc.every, got, tc.want)
		}
	}
	// Exactly the 3rd, 6th, 9th... packets go.
	c := mustParse(t, FilterSpec{"frequency_drop": {3}}).NewChain()
	for i := 1; i <= 30; i++ {
		if got, want := c.Apply(frame).Drop, i%3 == 0; got != want {
			t.Fatalf("packet %d: Drop = %v, want %v", i, got, want)
		}
	}
}

func TestFilterChainsKeepSeparateState(t *testing.T) {
	f := mustParse(t, FilterSpec{"frequency_drop": {3}})
	a, b := f.NewChain(), f.NewChain()
	frame := udpFrame(t, 9)
	// Interleaved, a shared counter would drop every 3rd packet overall.
	for i := 1; i <= 30; i++ {
		want := i%3 == 0
		if got := a.Apply(frame).Drop; got != want {
			t.Fatalf("chain a, its packet %d: Drop = %v, want %v", i, got, want)
		}
		if got := b.Apply(frame).Drop; got != want {
			t.Fatalf("chain b, its packet %d: Drop = %v, want %v", i, got, want)
		}
	}
}

func TestFilterPacketLoss(t *testing.T) {
	frame := icmpFrame(t)
	const n = 10000
	for _, tc := range []struct {
		percent, lo, hi int
	}{
		{0, 0, 0},
		{100, n, n},
		{50, n * 45 / 100, n * 55 / 100},
		// ubridge's `<=` would lose 2%; we lose 1% (±10σ here is 1% ± 1%).
		{1, 1, 199},
	} {
		c := mustParse(t, FilterSpec{"packet_loss": {tc.percent}}).NewChain()
		if got := countDrops(c, frame, n); got < tc.lo || got > tc.hi {
			t.Errorf("packet_loss %d: %d of %d dropped, want %d..%d", tc.percent, got, n, tc.lo, tc.hi)
		}
	}
}

// corruptWant applies the documented corruption by hand, starting at
// pattern position pos, and returns the next position.
func corruptWant(frame []byte, pos int) int {
	pattern := []byte{0x64, 0x13, 0x88, 0x40, 0x1F, 0xA0, 0xAA, 0x55}
	start, n := len(frame)/2-len(frame)/8+1, len(frame)/4
	for i := start; i < start+n; i++ {
		frame[i] ^= pattern[pos%8]
		pos++
	}
	return pos
}

func TestFilterCorrupt(t *testing.T) {
	// 60 bytes (padded to the Ethernet minimum): bytes 24..38 change; 15 is
	// no multiple of the pattern length, so its continuation shows.
	orig := udpFrame(t, 9)
	c := mustParse(t, FilterSpec{"corrupt": {100}}).NewChain()
	want := bytes.Clone(orig)
	pos := 0
	for i := range 3 { // the pattern continues across packets
		frame := bytes.Clone(orig)
		if v := c.Apply(frame); v != (Verdict{}) {
			t.Fatalf("Apply = %+v, want a pass (corrupted frames are forwarded)", v)
		}
		copy(want, orig)
		pos = corruptWant(want, pos)
		if !bytes.Equal(frame, want) {
			t.Fatalf("packet %d:\n got %x\nwant %x", i, frame, want)
		}
	}
	if start, end := len(orig)/2-len(orig)/8+1, len(orig)/2-len(orig)/8+1+len(orig)/4; start != 24 || end != 39 {
		t.Fatalf("test frame layout changed: %d..%d", start, end)
	}

	// Frames too short to hold the window are left alone, not overrun.
	for n := range 8 {
		frame := make([]byte, n)
		c.Apply(frame)
	}

	c0 := mustParse(t, FilterSpec{"corrupt": {0}}).NewChain()
	frame := bytes.Clone(orig)
	for range 1000 {
		c0.Apply(frame)
	}
	if !bytes.Equal(frame, orig) {
		t.Error("corrupt 0 changed the frame")
	}
}

func TestFilterCorruptChance(t *testing.T) {
	orig := udpFrame(t, 9)
	c := mustParse(t, FilterSpec{"corrupt": {30}}).NewChain()
	changed := 0
	const n = 10000
	for range n {
		frame := bytes.Clone(orig)
		c.Apply(frame)
		if !bytes.Equal(frame, orig) {
			changed++
		}
	}
	if changed < n*25/100 || changed > n*35/100 {
		t.Errorf("corrupt 30: %d of %d changed, want 25..35%%", changed, n)
	}
}

func TestFilterDelay(t *testing.T) {
	frame := icmpFrame(t)
	ms := time.Millisecond
	for _, tc := range []struct {
		latency, jitter int
		lo, hi          time.Duration
		zeros           bool // jitter > latency: some packets clamp to 0
	}{
		{300, 0, 300 * ms, 300 * ms, false},
		{100, 30, 70 * ms, 130 * ms, false},
		{10, 50, 0, 60 * ms, true},
	} {
		c := mustParse(t, FilterSpec{"delay": {tc.latency, tc.jitter}}).NewChain()
		lo, hi, zeros := time.Duration(1<<62), time.Duration(-1), 0
		for range 10000 {
			v := c.Apply(frame)
			if v.Drop {
				t.Fatal("delay dropped a packet")
			}
			lo, hi = min(lo, v.Delay), max(hi, v.Delay)
			if v.Delay == 0 {
				zeros++
			}
		}
		if lo < tc.lo || hi > tc.hi {
			t.Errorf("delay %d±%d: delays in %v..%v, want within %v..%v", tc.latency, tc.jitter, lo, hi, tc.lo, tc.hi)
		}
		// The jitter really spreads the delays over its range.
		if spread := tc.hi - tc.lo; spread > 0 && !tc.zeros && hi-lo < spread*9/10 {
			t.Errorf("delay %d±%d: delays in %v..%v, want them spread over %v..%v", tc.latency, tc.jitter, lo, hi, tc.lo, tc.hi)
		}
		if tc.zeros != (zeros > 0) {
			t.Errorf("delay %d±%d: %d zero delays", tc.latency, tc.jitter, zeros)
		}
	}
}

func TestFilterBPF(t *testing.T) {
	icmp, udp53, udp9 := icmpFrame(t), udpFrame(t, 53), udpFrame(t, 9)
	for _, tc := range []struct {
		text string
		drop []bool // icmp, udp53, udp9
	}{
		{"icmp", []bool{true, false, false}},
		{"not icmp", []bool{false, true, true}},
		{"icmp\n\n  udp dst port 53  \n", []bool{true, true, false}},
		{"ether src 0c:12:34:56:00:01 and ip dst 10.0.0.2", []bool{true, true, true}},
		{"arp", []bool{false, false, false}},
	} {
		c := mustParse(t, FilterSpec{"bpf": {tc.text}}).NewChain()
		for i, frame := range [][]byte{icmp, udp53, udp9} {
			if got := c.Apply(frame).Drop; got != tc.drop[i] {
				t.Errorf("bpf %q, frame %d: Drop = %v, want %v", tc.text, i, got, tc.drop[i])
			}
		}
	}
}

func TestFilterBPFExpressionIsNotAFlag(t *testing.T) {
	out := filepath.Join(t.TempDir(), "written")
	_, err := ParseFilters(FilterSpec{"bpf": {"-w " + out}})
	if !errors.Is(err, ErrBadFilter) || !strings.Contains(err.Error(), "syntax error") {
		t.Errorf("ParseFilters(-w ...) = %v, want a syntax error", err)
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("tcpdump took the expression as a flag: %v", err)
	}
}

func TestFilterBPFWithoutTcpdump(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := ParseFilters(FilterSpec{"bpf": {"icmp"}})
	if !errors.Is(err, ErrBadFilter) || !errors.Is(err, exec.ErrNotFound) || !strings.Contains(err.Error(), "tcpdump") {
		t.Errorf("ParseFilters without tcpdump = %v", err)
	}
	// Filters that need no compiler still work.
	mustParse(t, FilterSpec{"bpf": {"\n"}, "packet_loss": {5}})
}

func TestFilterBPFTooManyLines(t *testing.T) {
	_, err := ParseFilters(FilterSpec{"bpf": {strings.Repeat("\n", 200) + strings.Repeat("icmp\n", 101)}})
	if !errors.Is(err, ErrBadFilter) || !strings.Contains(err.Error(), "101 expressions, at most 100 allowed") {
		t.Errorf("ParseFilters(101 lines) = %v", err)
	}
}

func TestFilterParseTcpdumpProgram(t *testing.T) {
	good := "2\n40 0 0 12\n6 0 0 4294967295\n"
	prog, err := parseTcpdumpProgram([]byte(good))
	if err != nil || len(prog) != 2 || prog[0].Op != 40 || prog[0].K != 12 || prog[1].K != 1<<32-1 {
		t.Errorf("parseTcpdumpProgram(%q) = %v, %v", good, prog, err)
	}
	for _, bad := range []string{
		"", "x\n6 0 0 0", "0\n", "2\n6 0 0 0", "1\n6 0 0", "1\n65536 0 0 0",
		"1\n6 256 0 0", "1\n6 0 -1 0", "1\n6 0 0 4294967296", "5000\n",
	} {
		if prog, err := parseTcpdumpProgram([]byte(bad)); err == nil {
			t.Errorf("parseTcpdumpProgram(%q) = %v, want an error", bad, prog)
		}
	}
}

func TestFilterOrder(t *testing.T) {
	orig := icmpFrame(t)
	// A dropped packet is neither corrupted nor delayed.
	for _, drop := range []struct {
		name string
		args []any
	}{
		{"frequency_drop", []any{-1}}, {"packet_loss", []any{100}}, {"bpf", []any{"icmp"}},
	} {
		spec := FilterSpec{"corrupt": {100}, "delay": {50}, drop.name: drop.args}
		c := mustParse(t, spec).NewChain()
		frame := bytes.Clone(orig)
		if v := c.Apply(frame); v != (Verdict{Drop: true}) {
			t.Errorf("%v: Apply = %+v, want a plain drop", spec, v)
		}
		if !bytes.Equal(frame, orig) {
			t.Errorf("%v: a dropped frame was corrupted", spec)
		}
	}
	// bpf sees the frame before corrupt changes it.
	c := mustParse(t, FilterSpec{"bpf": {"udp"}, "corrupt": {100}, "delay": {50}}).NewChain()
	frame := bytes.Clone(orig)
	if v := c.Apply(frame); v != (Verdict{Delay: 50 * time.Millisecond}) || bytes.Equal(frame, orig) {
		t.Errorf("Apply = %+v, frame changed %v; want corrupted and delayed 50ms", v, !bytes.Equal(frame, orig))
	}
}

func TestFilterApplyDoesNotAllocate(t *testing.T) {
	frame := icmpFrame(t)
	for name, spec := range allFilterSpecs() {
		c := mustParse(t, spec).NewChain()
		if n := testing.AllocsPerRun(1000, func() { c.Apply(frame) }); n != 0 {
			t.Errorf("%s: %v allocations per Apply", name, n)
		}
	}
}

// allFilterSpecs has one spec per filter type, plus none and all of them.
func allFilterSpecs() map[string]FilterSpec {
	return map[string]FilterSpec{
		"none":           {},
		"frequency_drop": {"frequency_drop": {3}},
		"packet_loss":    {"packet_loss": {50}},
		"corrupt":        {"corrupt": {50}},
		"delay":          {"delay": {100, 10}},
		"bpf":            {"bpf": {"udp port 53"}},
		"bpf 3 lines":    {"bpf": {"arp\nudp port 53\ntcp port 80"}},
		"all": {
			"frequency_drop": {1000}, "packet_loss": {1}, "corrupt": {1},
			"delay": {100, 10}, "bpf": {"udp port 53"},
		},
	}
}

func BenchmarkChainApply(b *testing.B) {
	frame := icmpFrame(b)
	specs := allFilterSpecs()
	for _, name := range slices.Sorted(maps.Keys(specs)) {
		b.Run(name, func(b *testing.B) {
			c := mustParse(b, specs[name]).NewChain()
			b.ReportAllocs()
			for b.Loop() {
				c.Apply(frame)
			}
		})
	}
}
