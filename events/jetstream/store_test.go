package jetstream_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"labd/events"
	"labd/events/eventstest"
	"labd/events/jetstream/jstest"
)

func TestStoreConformance(t *testing.T) {
	eventstest.Run(t, func(t *testing.T) events.Store {
		return jstest.Start(t, jstest.Options{}).Store
	})
}

// An event type this build does not know must stop a replay, not be
// skipped: folding a history we cannot read would serve a wrong lab.
func TestLoadFailsOnUnknownType(t *testing.T) {
	env := jstest.Start(t, jstest.Options{})
	subj := events.ProjectSubject("c1", "p1")
	m := nats.NewMsg(subj)
	m.Data = []byte(`{"type":"project.teleported","schema":1,"at":"2026-11-22T10:00:00Z","project_id":"p1","data":{}}`)
	if err := env.Conn.PublishMsg(m); err != nil {
		t.Fatal(err)
	}
	if err := env.Conn.Flush(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := env.Store.Load(t.Context(), events.ComputeFilter("c1"), 1, func(events.Record) error { return nil })
		if errors.Is(err, events.ErrUnknownType) {
			if !strings.Contains(err.Error(), "project.teleported") {
				t.Fatalf("error does not name the type: %v", err)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Load: got %v, want ErrUnknownType", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Events survive a restart of the server on the same directory.
func TestStoreSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	env := jstest.Start(t, jstest.Options{Dir: dir, SyncAlways: true})
	subj := events.ProjectSubject("c1", "p1")
	seq, err := env.Store.Append(t.Context(), subj, 0, "cmd1", events.New(time.Now(), "p1", "", events.ProjectCreated{Name: "a"}))
	if err != nil {
		t.Fatal(err)
	}
	env.Stop()

	env2 := jstest.Start(t, jstest.Options{Dir: dir})
	var got []events.Record
	if _, err := env2.Store.Load(t.Context(), subj, 1, func(r events.Record) error {
		got = append(got, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Seq != seq || got[0].Data.(events.ProjectCreated).Name != "a" {
		t.Fatalf("after restart: %+v", got)
	}
	// The expectation carries across the restart too.
	if _, err := env2.Store.Append(t.Context(), subj, 0, "cmd2", events.New(time.Now(), "p1", "", events.ProjectClosed{})); !errors.Is(err, events.ErrConflict) {
		t.Fatalf("append expecting an empty subject after restart: %v", err)
	}
}

// Load reads a large stream unfiltered when the filter matches most of it
// (and matches subjects itself), and lets the server filter otherwise;
// both must deliver exactly the matching records, in order.
func TestLoadLargeStreamEitherWay(t *testing.T) {
	env := jstest.Start(t, jstest.Options{})
	mine := seedReplay(t, env, 130, 100) // 13,000 events of "bench", 13 of "other"
	for _, tc := range []struct {
		compute string
		want    int
	}{{"bench", mine}, {"other", 13}} {
		n := 0
		var last uint64
		prefix := events.ComputeFilter(tc.compute)
		prefix = prefix[:len(prefix)-1]
		_, err := env.Store.Load(t.Context(), events.ComputeFilter(tc.compute), 1, func(r events.Record) error {
			if !strings.HasPrefix(r.Subject, prefix) {
				return fmt.Errorf("record %d on %s delivered for compute %s", r.Seq, r.Subject, tc.compute)
			}
			if r.Seq <= last {
				return fmt.Errorf("record %d after %d", r.Seq, last)
			}
			last = r.Seq
			n++
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if n != tc.want {
			t.Fatalf("compute %s: loaded %d records, want %d", tc.compute, n, tc.want)
		}
	}
}
