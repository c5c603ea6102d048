package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"
)

// typeRelabelled is an event type of this test only, whose payload went
// through one breaking change: schema 1 named its member "name", schema 2
// renamed it "label" (and later added the optional "note", which kept the
// schema).
const typeRelabelled Type = "test.relabelled"

// relabelled is the current (schema 2) payload of typeRelabelled.
type relabelled struct {
	Label string `json:"label"`
	Note  string `json:"note,omitempty"`
}

func (relabelled) EventType() Type { return typeRelabelled }

// upcastRelabelledV1 rewrites a schema 1 payload into schema 2.
func upcastRelabelledV1(raw json.RawMessage) (json.RawMessage, error) {
	var v1 struct {
		Name string `json:"name"`
	}
	if err := decodeStrict(raw, &v1); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return json.Marshal(relabelled{Label: v1.Name})
}

// registerRelabelled adds typeRelabelled to the payload table until the
// test ends, with the given upcasters. The table is shared: tests that
// call it must not run in parallel (parallel tests of the package start
// only after it has been restored).
func registerRelabelled(t *testing.T, upcast map[int]func(json.RawMessage) (json.RawMessage, error)) {
	t.Helper()
	if _, taken := payloads[typeRelabelled]; taken {
		t.Fatalf("%s is a real event type", typeRelabelled)
	}
	p := payloadOf[relabelled](2)
	p.upcast = upcast
	payloads[typeRelabelled] = p
	t.Cleanup(func() { delete(payloads, typeRelabelled) })
}

// stored is the envelope of a typeRelabelled event as a store holds it.
func stored(schema int, data string) []byte {
	return fmt.Appendf(nil, `{"type":%q,"schema":%d,"at":"2026-11-22T10:00:00Z","project_id":"p","data":%s}`,
		typeRelabelled, schema, data)
}

// TestUpcastOldSchema: a stored schema 1 payload is upcast and decoded
// into the current payload, and comes out carrying the current schema.
func TestUpcastOldSchema(t *testing.T) {
	registerRelabelled(t, map[int]func(json.RawMessage) (json.RawMessage, error){1: upcastRelabelledV1})
	ev, err := Unmarshal(stored(1, `{"name":"r1"}`))
	if err != nil {
		t.Fatalf("a schema 1 payload: %v", err)
	}
	want := Event{Type: typeRelabelled, Schema: 2, At: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC), ProjectID: "p",
		Data: relabelled{Label: "r1"}}
	if !reflect.DeepEqual(ev, want) {
		t.Fatalf("a schema 1 payload decodes to %+v, want %+v", ev, want)
	}
	// The upcaster's own refusal is the reader's.
	if _, err := Unmarshal(stored(1, `{"name":"r1","extra":1}`)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("a schema 1 payload the upcaster refuses: %v, want ErrMalformed", err)
	}
}

// TestUpcastCurrentSchema: a current payload decodes as it is, with or
// without an additive optional member (which is why adding one keeps the
// schema); an old member under the current schema is refused: renaming
// needs a schema bump and an upcaster.
func TestUpcastCurrentSchema(t *testing.T) {
	registerRelabelled(t, map[int]func(json.RawMessage) (json.RawMessage, error){1: upcastRelabelledV1})
	for data, want := range map[string]relabelled{
		`{"label":"r2"}`:              {Label: "r2"},
		`{"label":"r2","note":"new"}`: {Label: "r2", Note: "new"},
	} {
		ev, err := Unmarshal(stored(2, data))
		if err != nil || ev.Data != want || ev.Schema != 2 {
			t.Fatalf("schema 2 %s decodes to %+v, %v; want %+v", data, ev, err, want)
		}
	}
	if _, err := Unmarshal(stored(2, `{"name":"r2"}`)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("schema 2 with the schema 1 member: %v, want ErrMalformed", err)
	}
}

// TestUpcastRefusesWhatItCannotRead: a schema newer than the build's, or
// an old one with no upcaster, fails with ErrSchema rather than folding a
// history it cannot understand.
func TestUpcastRefusesWhatItCannotRead(t *testing.T) {
	t.Run("future schema", func(t *testing.T) {
		registerRelabelled(t, map[int]func(json.RawMessage) (json.RawMessage, error){1: upcastRelabelledV1})
		if _, err := Unmarshal(stored(3, `{"label":"r3"}`)); !errors.Is(err, ErrSchema) {
			t.Fatalf("a schema 3 payload: %v, want ErrSchema", err)
		}
		if _, err := Unmarshal(stored(0, `{"label":"r0"}`)); !errors.Is(err, ErrSchema) {
			t.Fatalf("a schema 0 payload: %v, want ErrSchema", err)
		}
	})
	t.Run("no upcaster", func(t *testing.T) {
		registerRelabelled(t, nil)
		if _, err := Unmarshal(stored(1, `{"name":"r1"}`)); !errors.Is(err, ErrSchema) {
			t.Fatalf("a schema 1 payload with no upcaster: %v, want ErrSchema", err)
		}
	})
}

// TestUpcastMarshalWritesCurrentSchema: New stamps the current schema,
// Marshal writes it, and refuses to write an older one.
func TestUpcastMarshalWritesCurrentSchema(t *testing.T) {
	registerRelabelled(t, map[int]func(json.RawMessage) (json.RawMessage, error){1: upcastRelabelledV1})
	ev := New(time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC), "p", "", relabelled{Label: "r"})
	b, err := Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	var env envelope
	if err := json.Unmarshal(b, &env); err != nil {
		t.Fatal(err)
	}
	if env.Schema != 2 || string(env.Data) != `{"label":"r"}` {
		t.Fatalf("Marshal wrote schema %d data %s, want schema 2 and the current payload", env.Schema, env.Data)
	}
	back, err := Unmarshal(b)
	if err != nil || !reflect.DeepEqual(back, ev) {
		t.Fatalf("what Marshal wrote reads back as %+v, %v; want %+v", back, err, ev)
	}
	ev.Schema = 1
	if _, err := Marshal(ev); !errors.Is(err, ErrSchema) {
		t.Fatalf("Marshal of a schema 1 event: %v, want ErrSchema", err)
	}
}
