package nio

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/bpf"
)

// Link filters keep GNS3's meaning (controller catalogue, ubridge
// packet_filter.c) but not ubridge's defects: packet_loss and corrupt hit
// exactly P% (ubridge: P+1%), a blank bpf line is ignored (ubridge: it
// compiles to "match all" and drops everything), every direction has its own
// state, and delay is scheduled by the bridge instead of sleeping the reader.

// ErrBadFilter is matched (errors.Is) by every error ParseFilters returns.
var ErrBadFilter = errors.New("nio: bad link filter")

// FilterError reports a filter ParseFilters refused. Its message names the
// filter and the problem, e.g. `filter "packet_loss": 150 is out of range
// 0..100`, and is meant for the API client. It matches ErrBadFilter.
type FilterError struct {
	// Filter is the filter type as given in the spec.
	Filter string
	// Err is the problem.
	Err error
}

func (e *FilterError) Error() string { return fmt.Sprintf("filter %q: %v", e.Filter, e.Err) }

// Unwrap returns the problem.
func (e *FilterError) Unwrap() error { return e.Err }

// Is reports whether target is ErrBadFilter.
func (e *FilterError) Is(target error) bool { return target == ErrBadFilter }

// Filter types, as GNS3 spells them.
const (
	filterFrequencyDrop = "frequency_drop"
	filterPacketLoss    = "packet_loss"
	filterDelay         = "delay"
	filterCorrupt       = "corrupt"
	filterBPF           = "bpf"
)

// Argument ranges of the GNS3 controller's filter catalogue.
const (
	maxFrequency = 32767
	maxDelayMS   = 32767
	maxPercent   = 100
	// maxBPFLines bounds the tcpdump runs one spec can cause.
	maxBPFLines = 100
)

// parseOrder validates the cheap filters before bpf spawns processes.
var parseOrder = []string{filterFrequencyDrop, filterPacketLoss, filterCorrupt, filterDelay, filterBPF}

// FilterSpec is GNS3's link filter object as it arrives in PUT .../nio:
// {"<type>": [arg, ...], ...}. Values are JSON-decoded (float64, string,
// json.Number or int).
//
//	frequency_drop [N]                  -1 drop all, 0 off, N drop every Nth packet (N ≤ 32767)
//	packet_loss    [P]                  drop with P% chance (0..100)
//	delay          [latency, jitter?]   hold each packet latency ± uniform jitter ms (0..32767 each)
//	corrupt        [P]                  corrupt with P% chance (0..100), still forwarded
//	bpf            ["expr\nexpr..."]    drop packets matching any line (tcpdump syntax)
//
// A filter whose first value is 0 or "" (or a bpf with no expression) does
// nothing. Numbers may be strings holding an integer, as the GNS3 controller
// sends them.
type FilterSpec map[string][]any

// Filters is a validated, compiled set of link filters. It is immutable and
// may be shared by any number of bridges and directions; the per-packet
// state lives in a Chain.
type Filters struct {
	spec FilterSpec // normalised; Spec hands out copies

	// Compiled filters; the zero value of each is "off".
	dropEvery      int       // frequency_drop: -1 all, N every Nth
	lossPercent    int       // packet_loss
	matchers       []*bpf.VM // bpf; VM.Run keeps no state, so sharing is safe
	corruptPercent int       // corrupt
	latency        time.Duration
	jitter         time.Duration
}

// ParseFilters validates and compiles spec. Every error wraps ErrBadFilter
// (as a *FilterError); bpf expressions are compiled with tcpdump, so an
// error may also wrap exec.ErrNotFound when tcpdump is not installed.
// An empty or nil spec gives Filters that pass everything.
func ParseFilters(spec FilterSpec) (*Filters, error) {
	for _, name := range slices.Sorted(maps.Keys(spec)) {
		if !slices.Contains(parseOrder, name) {
			return nil, &FilterError{Filter: name, Err: fmt.Errorf(
				"unknown filter type (want one of %s)", strings.Join(parseOrder, ", "))}
		}
	}
	f := &Filters{spec: make(FilterSpec, len(spec))}
	for _, name := range parseOrder {
		args, ok := spec[name]
		if !ok {
			continue
		}
		norm, err := f.parse(name, args)
		if err != nil {
			return nil, &FilterError{Filter: name, Err: err}
		}
		f.spec[name] = norm
	}
	return f, nil
}

// parse compiles one filter into f and returns its normalised arguments.
func (f *Filters) parse(name string, args []any) ([]any, error) {
	switch name {
	case filterFrequencyDrop:
		n, err := singleIntArg(args, -1, maxFrequency)
		f.dropEvery = n
		return []any{n}, err
	case filterPacketLoss:
		p, err := singleIntArg(args, 0, maxPercent)
		f.lossPercent = p
		return []any{p}, err
	case filterCorrupt:
		p, err := singleIntArg(args, 0, maxPercent)
		f.corruptPercent = p
		return []any{p}, err
	case filterDelay:
		return f.parseDelay(args)
	default:
		return f.parseBPF(args)
	}
}

// singleIntArg checks a one-value filter and returns its value.
func singleIntArg(args []any, lo, hi int) (int, error) {
	if len(args) != 1 {
		return 0, fmt.Errorf("takes 1 value, got %d", len(args))
	}
	return intArg(args[0], "", lo, hi)
}

func (f *Filters) parseDelay(args []any) ([]any, error) {
	if len(args) != 1 && len(args) != 2 {
		return nil, fmt.Errorf("takes 1 or 2 values (latency ms, jitter ms), got %d", len(args))
	}
	latency, err := intArg(args[0], "latency ", 0, maxDelayMS)
	if err != nil {
		return nil, err
	}
	norm := []any{latency}
	jitter := 0
	if len(args) == 2 {
		if jitter, err = intArg(args[1], "jitter ", 0, maxDelayMS); err != nil {
			return nil, err
		}
		norm = append(norm, jitter)
	}
	if latency > 0 { // GNS3: a first value of 0 turns the filter off
		f.latency = time.Duration(latency) * time.Millisecond
		f.jitter = time.Duration(jitter) * time.Millisecond
	}
	return norm, nil
}

// parseBPF compiles one matcher per non-blank line and returns the text
// normalised to its trimmed non-blank lines.
func (f *Filters) parseBPF(args []any) ([]any, error) {
	if len(args) == 0 {
		return []any{""}, nil
	}
	if len(args) != 1 {
		return nil, fmt.Errorf("takes 1 value (the expressions, one per line), got %d", len(args))
	}
	text, ok := args[0].(string)
	if !ok {
		return nil, fmt.Errorf("%v has type %T, want a string", args[0], args[0])
	}
	lines := strings.Split(text, "\n")
	var exprs []string
	for _, line := range lines {
		if expr := strings.TrimSpace(line); expr != "" {
			exprs = append(exprs, expr)
		}
	}
	if len(exprs) > maxBPFLines {
		return nil, fmt.Errorf("%d expressions, at most %d allowed", len(exprs), maxBPFLines)
	}
	for i, line := range lines {
		expr := strings.TrimSpace(line)
		if expr == "" {
			continue
		}
		vm, err := compileBPF(expr)
		if err != nil {
			return nil, fmt.Errorf("line %d %q: %w", i+1, expr, err)
		}
		f.matchers = append(f.matchers, vm)
	}
	return []any{strings.Join(exprs, "\n")}, nil
}

// intArg converts one JSON-decoded value to an int in lo..hi. label names
// the value in messages ("latency "), or is empty for single-value filters.
// An empty string counts as 0, as the GNS3 UI sends it for an empty field.
func intArg(v any, label string, lo, hi int) (int, error) {
	n, err := toInt64(v)
	if err != nil {
		return 0, fmt.Errorf("%s%w", label, err)
	}
	if n < int64(lo) || n > int64(hi) {
		return 0, fmt.Errorf("%s%d is out of range %d..%d", label, n, lo, hi)
	}
	return int(n), nil
}

// toInt64 accepts every integral number encoding/json and the GNS3
// controller produce.
func toInt64(v any) (int64, error) {
	switch x := v.(type) {
	case int:
		return int64(x), nil
	case int32:
		return int64(x), nil
	case int64:
		return x, nil
	case float64:
		return floatToInt64(x)
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return n, nil
		}
		fl, err := x.Float64()
		if err != nil {
			return 0, fmt.Errorf("%s is not a number", x)
		}
		return floatToInt64(fl)
	case string:
		s := strings.TrimSpace(x)
		if s == "" {
			return 0, nil
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%q is not an integer", x)
		}
		return n, nil
	default:
		return 0, fmt.Errorf("%v has type %T, want an integer", v, v)
	}
}

func floatToInt64(x float64) (int64, error) {
	if x != math.Trunc(x) { // also NaN and ±Inf
		return 0, fmt.Errorf("%v is not an integer", x)
	}
	if x < math.MinInt64 || x >= math.MaxInt64 {
		return 0, fmt.Errorf("%v is out of range", x)
	}
	return int64(x), nil
}

// Spec returns the normalised filter object (numbers as int, bpf text as
// string), suitable for storing in an event and parsing again. It has the
// keys of the parsed spec, no-op filters included. The result is a copy.
func (f *Filters) Spec() FilterSpec {
	if f == nil {
		return FilterSpec{}
	}
	out := make(FilterSpec, len(f.spec))
	for name, args := range f.spec {
		out[name] = slices.Clone(args)
	}
	return out
}

// Verdict is what a filter chain decided for one packet.
type Verdict struct {
	// Drop discards the packet.
	Drop bool
	// Delay, when positive, holds the packet back this long before it is
	// forwarded.
	Delay time.Duration
}

// corruptPattern is XORed over corrupted bytes, cycling, as ubridge does.
var corruptPattern = [8]byte{0x64, 0x13, 0x88, 0x40, 0x1F, 0xA0, 0xAA, 0x55}

// Chain is the per-direction state of a Filters: one direction of one
// bridge owns one Chain and calls Apply from a single goroutine.
//
// Apply evaluates, in this order: frequency_drop, packet_loss, bpf,
// corrupt, delay. The first drop ends the walk, so a dropped packet consumes
// no corrupt or delay randomness and is never corrupted.
type Chain struct {
	f *Filters

	rng       *rand.Rand // this chain's own PCG: no lock, no allocation
	sinceDrop int        // frequency_drop: packets since the last drop
	pattern   int        // corrupt: next position in corruptPattern
}

// NewChain returns fresh per-direction state for f. A nil f gives a chain
// that passes everything.
func (f *Filters) NewChain() *Chain {
	return &Chain{
		f:   f,
		rng: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
	}
}

// Apply runs the chain on one frame. It may modify frame in place (corrupt).
// It never allocates.
func (c *Chain) Apply(frame []byte) Verdict {
	if c == nil || c.f == nil {
		return Verdict{}
	}
	if c.frequencyDrop() || c.lose() || c.f.matchBPF(frame) {
		return Verdict{Drop: true}
	}
	c.corrupt(frame)
	return Verdict{Delay: c.delay()}
}

// mutates reports whether Apply may modify frames (corrupt is on), so
// that a frame other ports also send must be copied first.
func (c *Chain) mutates() bool {
	return c != nil && c.f != nil && c.f.corruptPercent > 0
}

// frequencyDrop drops every packet (-1) or every Nth packet.
func (c *Chain) frequencyDrop() bool {
	every := c.f.dropEvery
	switch {
	case every == 0:
		return false
	case every < 0:
		return true
	}
	c.sinceDrop++
	if c.sinceDrop < every {
		return false
	}
	c.sinceDrop = 0
	return true
}

func (c *Chain) lose() bool {
	return c.f.lossPercent > 0 && c.chance(c.f.lossPercent)
}

// chance is true with exactly percent% probability.
func (c *Chain) chance(percent int) bool {
	return percent >= maxPercent || c.rng.IntN(maxPercent) < percent
}

// matchBPF reports whether any bpf expression matches frame.
func (f *Filters) matchBPF(frame []byte) bool {
	for _, vm := range f.matchers {
		// Run fails only on instructions NewVM would have refused.
		if n, err := vm.Run(frame); err == nil && n > 0 {
			return true
		}
	}
	return false
}

// corrupt XORs len/4 bytes from offset len/2 - len/8 + 1 with the cycling
// pattern, which continues where the previous corrupted packet left off
// (ubridge's layout; its IP and FCS checksums then fail).
func (c *Chain) corrupt(frame []byte) {
	if c.f.corruptPercent == 0 || !c.chance(c.f.corruptPercent) {
		return
	}
	n := len(frame) / 4
	start := len(frame)/2 - len(frame)/8 + 1
	end := min(start+n, len(frame))
	for i := start; i < end; i++ {
		frame[i] ^= corruptPattern[c.pattern]
		c.pattern = (c.pattern + 1) % len(corruptPattern)
	}
}

// delay is latency plus a uniform offset in [-jitter, +jitter], at least 0.
func (c *Chain) delay() time.Duration {
	f := c.f
	if f.jitter == 0 {
		return f.latency
	}
	d := f.latency - f.jitter + time.Duration(c.rng.Int64N(int64(2*f.jitter+1)))
	return max(d, 0)
}
