package actors_test

import (
	"testing"
	"time"

	"github.com/google/uuid"

	"labd/actors"
	"labd/actors/vpcs"
	"labd/events/jetstream/jstest"
)

// BenchmarkStartStopVPCS measures a start and a stop of one VPCS node, its
// real process included, through GNS3's lenient commands and through the
// strict Operate; both leave operation records. Each event is fsynced, as
// labd runs by default. Reported: ms per start and stop.
func BenchmarkStartStopVPCS(b *testing.B) {
	f := start(b, jstest.Start(b, jstest.Options{SyncAlways: true}))
	pid := f.create(b, "bench")
	ref := actors.NodeRef{ProjectID: pid, NodeID: uuid.NewString()}
	if _, err := f.client.CreateNode(b.Context(), actors.CreateNode{NodeRef: ref, Kind: vpcs.Kind, Name: "PC1"}); err != nil {
		b.Fatal(err)
	}
	run := func(b *testing.B, startStop func() error) {
		begin := time.Now()
		for b.Loop() {
			if err := startStop(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(time.Since(begin).Microseconds())/1000/float64(b.N), "ms/start+stop")
	}
	b.Run("api=gns3", func(b *testing.B) {
		run(b, func() error {
			if _, err := f.client.NodeDo(b.Context(), actors.StartNode{NodeRef: ref}); err != nil {
				return err
			}
			_, err := f.client.NodeDo(b.Context(), actors.StopNode{NodeRef: ref})
			return err
		})
	})
	b.Run("api=strict", func(b *testing.B) {
		run(b, func() error {
			if _, err := f.client.Operate(b.Context(), actors.Operate{NodeRef: ref, Op: actors.OpStart, Wait: true}); err != nil {
				return err
			}
			_, err := f.client.Operate(b.Context(), actors.Operate{NodeRef: ref, Op: actors.OpStop, Force: true, Wait: true})
			return err
		})
	})
}
