package qmp

import (
	"context"
	"testing"
)

// BenchmarkStatus measures one query-status round trip to a real QEMU.
func BenchmarkStatus(b *testing.B) {
	_, c := startAndDial(b)
	ctx := context.Background()
	for b.Loop() {
		if _, _, err := c.Status(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStatusParallel measures query-status throughput with many
// goroutines sharing the connection.
func BenchmarkStatusParallel(b *testing.B) {
	_, c := startAndDial(b)
	ctx := context.Background()
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, err := c.Status(ctx); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
