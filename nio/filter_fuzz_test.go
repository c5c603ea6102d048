package nio

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

// FuzzParseFilters feeds arbitrary filter objects (as a PUT nio body holds
// them) to ParseFilters: it never panics, refuses with ErrBadFilter, and
// what it accepts normalises to a spec that parses to itself.
func FuzzParseFilters(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"delay":[100,0]}`, `{"packet_loss":["50"]}`, `{"frequency_drop":[-1]}`,
		`{"corrupt":[101]}`, `{"bpf":["icmp"]}`, `{"delay":[1.5]}`, `{"x":[1]}`, `{"delay":[]}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		var spec FilterSpec
		if json.Unmarshal([]byte(body), &spec) != nil {
			return
		}
		if _, ok := spec["bpf"]; ok {
			return // each bpf value runs tcpdump: covered by the unit tests
		}
		got, err := ParseFilters(spec)
		if err != nil {
			if !errors.Is(err, ErrBadFilter) {
				t.Fatalf("ParseFilters(%s): %v is not ErrBadFilter", body, err)
			}
			return
		}
		b, _ := json.Marshal(got.Spec())
		var again FilterSpec
		if err := json.Unmarshal(b, &again); err != nil {
			t.Fatal(err)
		}
		f2, err := ParseFilters(again)
		if err != nil || !reflect.DeepEqual(f2.Spec(), got.Spec()) {
			t.Fatalf("%s normalised to %s, which parses to %v, %v", body, b, f2, err)
		}
		frame := make([]byte, 64)
		got.NewChain().Apply(frame)
	})
}
