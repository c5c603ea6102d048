package qmp

import (
	"context"
	"testing"

	"github.com/digitalocean/go-qemu/qmp/raw"
)

// BenchmarkStatus measures one query-status round trip to a real QEMU
// through go-qemu's raw on a Monitor, as Machine.Status sends it.
func BenchmarkStatus(b *testing.B) {
	_, c := startAndDial(b)
	m := raw.NewMonitor(c.Monitor(context.Background()))
	for b.Loop() {
		if _, err := m.QueryStatus(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStatusParallel measures query-status throughput with many
// goroutines sharing the connection.
func BenchmarkStatusParallel(b *testing.B) {
	_, c := startAndDial(b)
	m := raw.NewMonitor(c.Monitor(context.Background()))
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := m.QueryStatus(); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
