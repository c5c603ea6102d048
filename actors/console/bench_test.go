package console

import (
	"io"
	"strconv"
	"sync"
	"testing"
)

// BenchmarkFanOut measures output throughput from the target to n telnet
// clients over loopback TCP (b.SetBytes counts one copy).
func BenchmarkFanOut(b *testing.B) {
	for _, n := range []int{1, 3} {
		b.Run(strconv.Itoa(n)+"clients", func(b *testing.B) {
			target := newFakeTarget(b)
			p, err := Start(b.Context(), Config{Listen: "127.0.0.1:0", Target: target.addr()})
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			tc := target.accept()
			chunk := make([]byte, 16<<10)
			total := int64(b.N) * int64(len(chunk))
			var wg sync.WaitGroup
			for i := range n {
				c := dialClient(b, "c"+strconv.Itoa(i), p.Addr())
				wg.Go(func() {
					io.CopyN(io.Discard, c.conn, total)
				})
			}
			eventually(b, "clients", func() bool { return p.Clients() == n })
			b.SetBytes(int64(len(chunk)))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := tc.Write(chunk); err != nil {
					b.Fatal(err)
				}
			}
			wg.Wait()
		})
	}
}
