package nio

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// testKey is the key of MAC 02:00:<i as 4 bytes> in vlan.
func testKey(i int, vlan uint16) macKey {
	return macKey(uint64(0x02)<<56|uint64(uint32(i))<<16) | macKey(vlan)
}

func TestMACTable(t *testing.T) {
	var clock fakeClock
	m := newMACTable(10 * time.Second)
	m.now = clock.now
	a, b := &fabricPort{number: 1}, &fabricPort{number: 2}

	k := testKey(1, 10)
	if m.lookup(k, clock.now()) != nil {
		t.Fatal("unknown key found")
	}
	m.learn(k, a, clock.now())
	if got := m.lookup(k, clock.now()); got != a {
		t.Fatalf("lookup = %v, want port 1", got)
	}
	if m.lookup(testKey(1, 11), clock.now()) != nil {
		t.Fatal("found in another VLAN")
	}
	// A move.
	m.learn(k, b, clock.now())
	if got := m.lookup(k, clock.now()); got != b {
		t.Fatalf("after a move lookup = %v, want port 2", got)
	}
	// Aging, with refreshes at most every aging/refreshShare.
	clock.advance(10 * time.Second)
	if got := m.lookup(k, clock.now()); got != b {
		t.Fatal("aged out at exactly the aging time")
	}
	clock.advance(1)
	if m.lookup(k, clock.now()) != nil {
		t.Fatal("not aged out after the aging time")
	}
	m.learn(k, b, clock.now())
	clock.advance(m.refresh / 2)
	m.learn(k, b, clock.now()) // too soon to be written
	clock.advance(10*time.Second - m.refresh/2 + 1)
	if m.lookup(k, clock.now()) != nil {
		t.Fatal("a refresh within the refresh period was written")
	}

	// Entries, forget and clear.
	m.learn(testKey(2, 1), a, clock.now())
	m.learn(testKey(3, 1), b, clock.now())
	m.learn(testKey(4, 1), a, clock.now())
	if n := len(m.entries()); n != 3 { // k has aged out
		t.Fatalf("%d entries, want 3", n)
	}
	m.forget(a)
	es := m.entries()
	if len(es) != 1 || es[0].Port != 2 || es[0].MAC.String() != "02:00:00:00:00:03" || es[0].VLAN != 1 {
		t.Fatalf("after forget: %+v", es)
	}
	m.clear()
	if len(m.entries()) != 0 || m.size.Load() != 0 {
		t.Fatalf("after clear: %v, size %d", m.entries(), m.size.Load())
	}
}

func TestMACTableFull(t *testing.T) {
	var clock fakeClock
	m := newMACTable(10 * time.Second)
	m.now = clock.now
	m.max = 100
	p := &fabricPort{}
	for i := range 150 {
		m.learn(testKey(i, 1), p, clock.now())
	}
	if n := m.size.Load(); n != 100 {
		t.Fatalf("size %d, want the maximum, 100", n)
	}
	if m.lookup(testKey(120, 1), clock.now()) != nil {
		t.Fatal("learned past the maximum")
	}
	// Once they age out, new addresses find room again.
	clock.advance(11 * time.Second)
	m.learn(testKey(1000, 1), p, clock.now())
	if m.lookup(testKey(1000, 1), clock.now()) != p || m.size.Load() != 1 {
		t.Fatalf("after aging, size %d", m.size.Load())
	}
}

// TestMACTableConcurrent learns, moves, looks up, forgets and clears from
// several goroutines at once, for the race detector.
func TestMACTableConcurrent(t *testing.T) {
	m := newMACTable(DefaultAging)
	ports := []*fabricPort{{number: 0}, {number: 1}, {number: 2}}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 20000 {
				k := testKey(i%3000, uint16(g%2+1))
				m.learn(k, ports[(i+g)%len(ports)], m.now())
				m.lookup(testKey(i%5000, 1), m.now())
			}
		})
	}
	wg.Go(func() {
		for i := range 50 {
			m.forget(ports[i%len(ports)])
			m.entries()
			if i%10 == 0 {
				m.clear()
			}
		}
	})
	wg.Wait()
	var live int64
	for i := range m.shards {
		live += int64(len(*m.shards[i].m.Load()))
	}
	if live != m.size.Load() {
		t.Fatalf("size %d, but the shards hold %d", m.size.Load(), live)
	}
}

// BenchmarkMACTable measures learning (a known address: the steady
// state), learning new addresses, and lookups, with 10,000 addresses,
// on one goroutine and on every P.
func BenchmarkMACTable(b *testing.B) {
	const macs = 10000
	filled := func() *macTable {
		m := newMACTable(DefaultAging)
		p := &fabricPort{}
		for i := range macs {
			m.learn(testKey(i, 1), p, m.now())
		}
		return m
	}
	keys := make([]macKey, macs)
	for i := range keys {
		keys[i] = testKey((i*7919)%macs, 1) // not in insertion order
	}
	p := &fabricPort{}
	b.Run("learn-known", func(b *testing.B) {
		m := filled()
		now := m.now()
		i := 0
		for b.Loop() {
			m.learn(keys[i%macs], p, now)
			i++
		}
	})
	b.Run("lookup", func(b *testing.B) {
		m := filled()
		now := m.now()
		i := 0
		for b.Loop() {
			if m.lookup(keys[i%macs], now) == nil {
				b.Fatal("not found")
			}
			i++
		}
	})
	b.Run("learn-new", func(b *testing.B) {
		// One op learns one new address into a table filling up to
		// 10,000 addresses, then cleared: the cost of a lab's addresses
		// appearing.
		m := newMACTable(DefaultAging)
		now := m.now()
		i := 0
		for b.Loop() {
			m.learn(testKey(i%macs, 2), p, now)
			i++
			if i%macs == 0 {
				m.clear()
			}
		}
	})
	for _, op := range []string{"learn-known", "lookup"} {
		b.Run(fmt.Sprintf("%s-parallel", op), func(b *testing.B) {
			m := filled()
			now := m.now()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					if op == "lookup" {
						m.lookup(keys[i%macs], now)
					} else {
						m.learn(keys[i%macs], p, now)
					}
					i++
				}
			})
		})
	}
}
