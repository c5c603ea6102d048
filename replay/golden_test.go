package replay_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"labd/events"
	"labd/replay"
)

// TestGoldenSessionReplays folds each event log recorded from a real
// session (testdata/golden/<name>.jsonl, written by http/api's
// TestRecordGoldenSession and TestRecordGoldenNodeSession with
// -update-golden) and compares the result with the state recorded with it
// (<name>.state.json). It must pass after every change to the event schema
// or the fold: an old history has to keep meaning what it meant.
func TestGoldenSessionReplays(t *testing.T) {
	for _, name := range []string{
		"session", // projects only, both API versions
		"nodes",   // VPCS and QEMU nodes, across an adopting restart
	} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join("..", "testdata", "golden")
			st := foldGolden(t, filepath.Join(dir, name+".jsonl"))
			got, err := json.MarshalIndent(replay.Summarize(st), "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(filepath.Join(dir, name+".state.json"))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(append(got, '\n'), want) {
				t.Fatalf("the golden log folds to\n%s\nwant\n%s", got, want)
			}
		})
	}
}

// foldGolden reads a golden log and folds every event of it.
func foldGolden(t *testing.T, path string) *replay.State {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st := replay.New()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	n := 0
	for sc.Scan() {
		var line struct {
			Seq     uint64          `json:"seq"`
			Subject string          `json:"subject"`
			MsgID   string          `json:"msg_id"`
			Body    json.RawMessage `json:"body"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("line %d: %v", n+1, err)
		}
		ev, err := events.Unmarshal(line.Body)
		if err != nil {
			t.Fatalf("event %d can no longer be read: %v", line.Seq, err)
		}
		if err := st.Apply(events.Record{Event: ev, Seq: line.Seq, Subject: line.Subject, MsgID: line.MsgID}); err != nil {
			t.Fatalf("event %d can no longer be folded: %v", line.Seq, err)
		}
		n++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("the golden log is empty")
	}
	return st
}
