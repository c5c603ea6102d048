package nio

import (
	"errors"
	"net"
	"reflect"
	"strconv"
	"sync"
	"testing"
)

func TestParsePortRange(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want PortRange
		ok   bool
	}{
		{"20000-30000", PortRange{20000, 30000}, true},
		{"5000 - 5000", PortRange{5000, 5000}, true},
		{"30000-20000", PortRange{}, false},
		{"0-10", PortRange{}, false},
		{"1-65536", PortRange{}, false},
		{"20000", PortRange{}, false},
		{"a-b", PortRange{}, false},
	} {
		got, err := ParsePortRange(tc.in)
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("ParsePortRange(%q) = %v, %v", tc.in, got, err)
		}
	}
}

// freeUDPRange finds n consecutive UDP ports nobody holds right now.
func freeUDPRange(t *testing.T, n int) PortRange {
	t.Helper()
	for start := 40000; start < 60000; start += 97 {
		ok := true
		for p := start; p < start+n && ok; p++ {
			c, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(p))
			if err != nil {
				ok = false
				continue
			}
			c.Close()
		}
		if ok {
			return PortRange{start, start + n - 1}
		}
	}
	t.Fatal("no free UDP range")
	return PortRange{}
}

func TestPoolAllocatesLowestFreeAndExhausts(t *testing.T) {
	r := freeUDPRange(t, 3)
	p, err := NewPool("udp", "127.0.0.1", r)
	if err != nil {
		t.Fatal(err)
	}
	// A port bound by someone else is skipped.
	c, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(r.First+1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	a, err := p.Allocate()
	if err != nil || a != r.First {
		t.Fatalf("first allocation: %d, %v", a, err)
	}
	b, err := p.Allocate()
	if err != nil || b != r.First+2 {
		t.Fatalf("second allocation: %d, %v (must skip the bound %d)", b, err, r.First+1)
	}
	_, err = p.Allocate()
	if !errors.Is(err, ErrExhausted) {
		t.Fatalf("third allocation: %v, want ErrExhausted", err)
	}
	if want := "Could not find a free port between"; err == nil || err.Error()[:len(want)] != want {
		t.Fatalf("exhaustion message %q", err)
	}
	p.Release(a)
	if again, err := p.Allocate(); err != nil || again != a {
		t.Fatalf("after release: %d, %v", again, err)
	}
	if got := p.Used(); !reflect.DeepEqual(got, []int{r.First, r.First + 2}) {
		t.Fatalf("Used() = %v", got)
	}
}

func TestPoolReserve(t *testing.T) {
	r := freeUDPRange(t, 4)
	p, _ := NewPool("udp", "127.0.0.1", r)
	if err := p.Reserve(r.First); err != nil {
		t.Fatal(err)
	}
	if err := p.Reserve(r.First); err == nil {
		t.Fatal("reserving a port twice succeeded")
	}
	if got, _ := p.Allocate(); got != r.First+1 {
		t.Fatalf("allocation after a reservation: %d", got)
	}
}

// AllocateIn takes from the part of a sub-range inside the pool, sharing
// the pool's allocations (VNC consoles come from the console pool).
func TestPoolAllocateIn(t *testing.T) {
	r := freeUDPRange(t, 4)
	p, _ := NewPool("udp", "127.0.0.1", r)
	upper := PortRange{First: r.First + 2, Last: r.Last + 100}
	if got, err := p.AllocateIn(upper); err != nil || got != r.First+2 {
		t.Fatalf("AllocateIn(%v) = %d, %v; want %d", upper, got, err, r.First+2)
	}
	if got, err := p.AllocateIn(upper); err != nil || got != r.First+3 {
		t.Fatalf("second AllocateIn = %d, %v; want %d", got, err, r.First+3)
	}
	if _, err := p.AllocateIn(upper); !errors.Is(err, ErrExhausted) {
		t.Fatalf("AllocateIn beyond the pool's range: %v, want ErrExhausted", err)
	}
	if got, err := p.Allocate(); err != nil || got != r.First {
		t.Fatalf("Allocate after AllocateIn = %d, %v; want %d", got, err, r.First)
	}
}

func TestPoolConcurrentAllocationsAreDistinct(t *testing.T) {
	r := freeUDPRange(t, 64)
	p, _ := NewPool("udp", "127.0.0.1", r)
	var mu sync.Mutex
	seen := map[int]bool{}
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			port, err := p.Allocate()
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if seen[port] {
				t.Errorf("port %d handed out twice", port)
			}
			seen[port] = true
		})
	}
	wg.Wait()
}
