package nio

import (
	"encoding/binary"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// MAC table geometry.
const (
	macShardBits = 8
	macShards    = 1 << macShardBits
	// maxMACs bounds a switch's table, as a real switch's CAM is bounded:
	// once it is full, frames to MACs it could not learn are flooded. It
	// keeps a lab's MAC flood from growing labd without limit.
	maxMACs = 1 << 16
	// refreshShare sets how often a known MAC's last-seen time is written:
	// every aging/refreshShare at most, so that the goroutines looking it
	// up on other cores do not pull its cache line back once per frame.
	// An entry then ages out up to that much early (1.2 s of 300 s).
	refreshShare = 256
)

// macTable is a switch's MAC address table: the port each (MAC, VLAN)
// was last seen on, and when.
//
// Every frame learns its source and looks up its destination, on the
// goroutines of every port at once, so neither takes a lock: the table
// is split into shards, each an immutable map published through an atomic
// pointer and replaced (copy on write, under the shard's mutex) only when
// a MAC is new to it, which is rare once a lab has talked. A known MAC's
// port and last-seen time are atomics in its entry, so a refresh or a
// move writes no map. An entry older than the aging time is unknown to
// lookups, and copies leave such entries out, so aging needs no goroutine.
type macTable struct {
	now     func() time.Duration // the table's clock, monotonic; tests replace it
	aging   time.Duration
	refresh time.Duration
	max     int64

	size      atomic.Int64 // entries in all shards, dead ones included
	lastSweep atomic.Int64 // clock of the last sweep of a full table
	shards    [macShards]macShard
}

// macKey is a MAC address (the high 48 bits) and a VLAN (the low 16).
type macKey uint64

// macKeyAt reads the MAC address at frame[off:off+6] into a key with vlan.
// frame must hold 8 bytes from off, which every Ethernet header does for
// both of its addresses.
func macKeyAt(frame []byte, off int, vlan uint16) macKey {
	return macKey(binary.BigEndian.Uint64(frame[off:])&^0xFFFF | uint64(vlan))
}

func (k macKey) mac() net.HardwareAddr {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(k))
	return net.HardwareAddr(b[:macLen:macLen])
}

func (k macKey) vlan() uint16 { return uint16(k) }

// macEntry is one learned address. Its key never changes; its port and
// time do, atomically, under readers.
type macEntry struct {
	key  macKey
	port atomic.Pointer[fabricPort]
	seen atomic.Int64 // the table's clock at the last frame from it
}

type macMap map[macKey]*macEntry

type macShard struct {
	m  atomic.Pointer[macMap] // never nil; immutable once published
	mu sync.Mutex             // serialises the replacements of m
}

// emptyMACs is every shard's first map. Nobody writes a published map, so
// they can share it.
var emptyMACs = macMap{}

func newMACTable(aging time.Duration) *macTable {
	epoch := time.Now()
	t := &macTable{
		now:     func() time.Duration { return time.Since(epoch) },
		aging:   aging,
		refresh: max(aging/refreshShare, 1),
		max:     maxMACs,
	}
	for i := range t.shards {
		t.shards[i].m.Store(&emptyMACs)
	}
	return t
}

func (t *macTable) shard(k macKey) *macShard {
	return &t.shards[(uint64(k)*0x9E3779B97F4A7C15)>>(64-macShardBits)]
}

// live reports whether e is still learned at time now.
func (t *macTable) live(e *macEntry, now time.Duration) bool {
	return e.port.Load() != nil && now-time.Duration(e.seen.Load()) <= t.aging
}

// learn records that a frame from k came in on p at time now: a new
// address, a refresh, or a move to another port.
func (t *macTable) learn(k macKey, p *fabricPort, now time.Duration) {
	sh := t.shard(k)
	if e := (*sh.m.Load())[k]; e != nil {
		if e.port.Load() != p {
			e.port.Store(p)
		}
		if now-time.Duration(e.seen.Load()) >= t.refresh {
			e.seen.Store(int64(now))
		}
		return
	}
	t.insert(sh, k, p, now)
}

// insert adds k, unless the table is full of live entries.
func (t *macTable) insert(sh *macShard, k macKey, p *fabricPort, now time.Duration) {
	if t.size.Load() >= t.max && !t.sweep(now) {
		return
	}
	e := &macEntry{key: k}
	e.port.Store(p)
	e.seen.Store(int64(now))
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if old := (*sh.m.Load())[k]; old != nil {
		// Learned meanwhile by another port's goroutine.
		old.port.Store(p)
		old.seen.Store(int64(now))
		return
	}
	t.replaceLocked(sh, now, nil, e)
}

// sweep drops the dead entries of every shard, at most once per refresh
// period, and reports whether the table has room for one more.
func (t *macTable) sweep(now time.Duration) bool {
	last := t.lastSweep.Load()
	if now-time.Duration(last) >= t.refresh && t.lastSweep.CompareAndSwap(last, int64(now)) {
		for i := range t.shards {
			sh := &t.shards[i]
			sh.mu.Lock()
			t.replaceLocked(sh, now, nil, nil)
			sh.mu.Unlock()
		}
	}
	return t.size.Load() < t.max
}

// replaceLocked publishes a copy of sh's map with the live entries that
// drop (when not nil) does not refuse, plus add (when not nil).
func (t *macTable) replaceLocked(sh *macShard, now time.Duration, drop *fabricPort, add *macEntry) {
	old := *sh.m.Load()
	m := make(macMap, len(old)+1)
	for k, e := range old {
		if t.live(e, now) && (drop == nil || e.port.Load() != drop) {
			m[k] = e
		}
	}
	if add != nil {
		m[add.key] = add
	}
	sh.m.Store(&m)
	t.size.Add(int64(len(m) - len(old)))
}

// lookup returns the port k was last seen on, or nil if it is unknown or
// aged out.
func (t *macTable) lookup(k macKey, now time.Duration) *fabricPort {
	e := (*t.shard(k).m.Load())[k]
	if e == nil || now-time.Duration(e.seen.Load()) > t.aging {
		return nil
	}
	return e.port.Load()
}

// forget drops every entry on port p (it closed, its link changed, its
// VLANs changed). A frame being forwarded meanwhile may still go to p.
func (t *macTable) forget(p *fabricPort) {
	now := t.now()
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		for _, e := range *sh.m.Load() {
			if e.port.Load() == p {
				t.replaceLocked(sh, now, p, nil)
				break
			}
		}
		sh.mu.Unlock()
	}
}

// clear forgets every address.
func (t *macTable) clear() {
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		t.size.Add(-int64(len(*sh.m.Load())))
		sh.m.Store(&emptyMACs)
		sh.mu.Unlock()
	}
}

// MACEntry is one learned address of a Switch's MAC table.
type MACEntry struct {
	MAC  net.HardwareAddr // the station's address
	VLAN int              // the VLAN it was learned in
	Port int              // the switch port number it was last seen on
	Age  time.Duration    // since the last frame from it
}

// entries lists the live entries, in no order.
func (t *macTable) entries() []MACEntry {
	now := t.now()
	var out []MACEntry
	for i := range t.shards {
		for k, e := range *t.shards[i].m.Load() {
			p := e.port.Load()
			if p == nil || !t.live(e, now) {
				continue
			}
			out = append(out, MACEntry{MAC: k.mac(), VLAN: int(k.vlan()), Port: p.number, Age: now - time.Duration(e.seen.Load())})
		}
	}
	return out
}
