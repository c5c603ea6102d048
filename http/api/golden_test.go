package api_test

import (
	"encoding/json"
	"flag"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"labd/events"
	"labd/replay"
)

var updateGolden = flag.Bool("update-golden", false, "re-record testdata/golden/session.jsonl from a live session")

// goldenLine is one stored event of the golden log.
type goldenLine struct {
	Seq     uint64          `json:"seq"`
	Subject string          `json:"subject"`
	MsgID   string          `json:"msg_id"`
	Body    json.RawMessage `json:"body"`
}

// TestRecordGoldenSession records the golden event log that package replay
// must keep folding to the same state (testdata/golden): a real session of
// both API versions, every event type included. It only writes with
// -update-golden; otherwise it checks that a session still produces the
// same kinds of events, so a new event type is noticed here.
func TestRecordGoldenSession(t *testing.T) {
	d := startDaemon(t, daemonOptions{computeID: "golden", udpPorts: freeUDPRange(t, 8)})
	p1 := d.do("POST", "/v1/projects", `{"name": "lab", "project_id": "0b4d8c30-52a9-4c55-9c8b-1e8d5e0f4a01"}`).expect(t, 201, "").object(t)["project_id"].(string)
	d.do("PUT", "/v1/projects/"+p1, `{"name": "lab renamed", "temporary": true}`).expect(t, 200, "")
	d.do("POST", "/v1/projects/"+p1+"/ports/udp", "{}").expect(t, 201, "")
	d.do("POST", "/v1/projects/"+p1+"/ports/udp", "{}").expect(t, 201, "")
	d.do("POST", "/v1/projects/"+p1+"/files/configs/r1.cfg", "hostname r1\n").expect(t, 200, "")
	p2 := d.do("POST", "/v2/compute/projects", `{"name": "second", "project_id": "7f0e1c2d-3b4a-4f5e-8d6c-9a0b1c2d3e02", "variables": [{"name": "x", "value": "1"}]}`).expect(t, 201, "").object(t)["project_id"].(string)
	d.do("PUT", "/v2/compute/projects/"+p2, `{"variables": [{"name": "y"}]}`).expect(t, 200, "")
	d.do("POST", "/v2/compute/projects/"+p2+"/ports/udp", "").expect(t, 201, "")
	d.do("POST", "/v1/projects/"+p1+"/close", "").expect(t, 204, "")
	d.do("POST", "/v1/projects", `{"name": "lab again", "project_id": "`+p1+`"}`).expect(t, 201, "")
	p3 := d.do("POST", "/v2/compute/projects", `{"name": "gone", "project_id": "c3d4e5f6-0718-4293-a4b5-c6d7e8f90a03"}`).expect(t, 201, "").object(t)["project_id"].(string)
	d.do("DELETE", "/v2/compute/projects/"+p3, "").expect(t, 204, "")

	var lines []goldenLine
	js, err := jetstream.New(d.Env.Conn)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(t.Context(), d.Env.Store.StreamName())
	if err != nil {
		t.Fatal(err)
	}
	types := map[events.Type]bool{}
	for seq := uint64(1); seq <= d.lastSeq(); seq++ {
		m, err := stream.GetMsg(t.Context(), seq)
		if err != nil {
			t.Fatal(err)
		}
		ev, err := events.Unmarshal(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		types[ev.Type] = true
		lines = append(lines, goldenLine{Seq: m.Sequence, Subject: m.Subject, MsgID: m.Header.Get(jetstream.MsgIDHeader), Body: m.Data})
	}
	st, err := replay.Rehydrate(t.Context(), d.Env.Store, "golden", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []events.Type{events.TypeProjectCreated, events.TypeProjectUpdated, events.TypeProjectClosed,
		events.TypeProjectDeleted, events.TypeUDPPortAllocated, events.TypeFileWritten} {
		if !types[want] {
			t.Fatalf("the golden session produced no %s event", want)
		}
	}
	if !*updateGolden {
		return
	}
	writeGolden(t, "session", lines, st)
	t.Logf("recorded %d events", len(lines))
}
