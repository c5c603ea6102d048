package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// envelope is the JSON body of a stored event.
type envelope struct {
	Type      Type            `json:"type"`
	Schema    int             `json:"schema"`
	At        time.Time       `json:"at"`
	ProjectID string          `json:"project_id,omitempty"`
	NodeID    string          `json:"node_id,omitempty"`
	Data      json.RawMessage `json:"data"`
}

// payload describes how one event type is decoded.
type payload struct {
	// schema is the current version of the payload's JSON.
	schema int
	decode func(json.RawMessage) (Data, error)
	// upcast[v] rewrites a version v payload into version v+1.
	upcast map[int]func(json.RawMessage) (json.RawMessage, error)
}

// payloads is the table of every event type this build understands. It is a
// constant table, not a registry: adding a type means adding a line here.
var payloads = map[Type]payload{
	TypeProjectCreated:    payloadOf[ProjectCreated](1),
	TypeProjectUpdated:    payloadOf[ProjectUpdated](1),
	TypeProjectClosed:     payloadOf[ProjectClosed](1),
	TypeProjectDeleted:    payloadOf[ProjectDeleted](1),
	TypeUDPPortAllocated:  payloadOf[UDPPortAllocated](1),
	TypeFileWritten:       payloadOf[FileWritten](1),
	TypeEffectFailed:      payloadOf[EffectFailed](1),
	TypeNodeCreated:       payloadOf[NodeCreated](1),
	TypeNodeUpdated:       payloadOf[NodeUpdated](1),
	TypeNodeStarted:       payloadOf[NodeStarted](1),
	TypeNodeStopped:       payloadOf[NodeStopped](1),
	TypeNodeStartFailed:   payloadOf[NodeStartFailed](1),
	TypeNodeDeleted:       payloadOf[NodeDeleted](1),
	TypeNodeClosed:        payloadOf[NodeClosed](1),
	TypeNIOAdded:          payloadOf[NIOAdded](1),
	TypeNIOUpdated:        payloadOf[NIOUpdated](1),
	TypeNIORemoved:        payloadOf[NIORemoved](1),
	TypeCaptureStarted:    payloadOf[CaptureStarted](1),
	TypeCaptureStopped:    payloadOf[CaptureStopped](1),
	TypeNodeSuspended:     payloadOf[NodeSuspended](1),
	TypeNodeResumed:       payloadOf[NodeResumed](1),
	TypeNodeReset:         payloadOf[NodeReset](1),
	TypeNodeAdopted:       payloadOf[NodeAdopted](1),
	TypeOperationStarted:  payloadOf[OperationStarted](1),
	TypeOperationEnded:    payloadOf[OperationEnded](1),
	TypeNodeSaved:         payloadOf[NodeSaved](1),
	TypeNodeResized:       payloadOf[NodeResized](1),
	TypeResizeConfirmed:   payloadOf[ResizeConfirmed](1),
	TypeResizeReverted:    payloadOf[ResizeReverted](1),
	TypeNodeDefined:       payloadOf[NodeDefined](1),
	TypeDefinitionApplied: payloadOf[DefinitionApplied](1),
	TypeNodeFrozen:        payloadOf[NodeFrozen](1),
	TypeNodeUnfrozen:      payloadOf[NodeUnfrozen](1),
}

func payloadOf[T Data](schema int) payload {
	return payload{schema: schema, decode: func(raw json.RawMessage) (Data, error) {
		var v T
		if err := decodeStrict(raw, &v); err != nil {
			return nil, err
		}
		return v, nil
	}}
}

// schemaOf returns the current schema of t, 0 for an unknown type (which
// Marshal then refuses).
func schemaOf(t Type) int { return payloads[t].schema }

// Types returns every event type this build can decode.
func Types() []Type {
	ts := make([]Type, 0, len(payloads))
	for t := range payloads {
		ts = append(ts, t)
	}
	return ts
}

// Marshal encodes e as its JSON envelope.
func Marshal(e Event) ([]byte, error) {
	if e.Data == nil {
		return nil, fmt.Errorf("events: marshal %s: no payload", e.Type)
	}
	if e.Data.EventType() != e.Type {
		return nil, fmt.Errorf("events: marshal: type %q carries a %q payload", e.Type, e.Data.EventType())
	}
	p, ok := payloads[e.Type]
	if !ok {
		return nil, fmt.Errorf("events: marshal %q: %w", e.Type, ErrUnknownType)
	}
	if e.Schema != p.schema {
		return nil, fmt.Errorf("events: marshal %q: schema %d, this build writes %d: %w", e.Type, e.Schema, p.schema, ErrSchema)
	}
	data, err := json.Marshal(e.Data)
	if err != nil {
		return nil, fmt.Errorf("events: marshal %q: %w", e.Type, err)
	}
	return json.Marshal(envelope{
		Type:      e.Type,
		Schema:    e.Schema,
		At:        e.At.UTC(),
		ProjectID: e.ProjectID,
		NodeID:    e.NodeID,
		Data:      data,
	})
}

// Unmarshal decodes one JSON envelope. An unknown type fails with
// ErrUnknownType, a schema newer than this build with ErrSchema, anything
// else that does not decode exactly with ErrMalformed. An older schema is
// upcast before it is decoded, and the returned event carries the current
// schema.
func Unmarshal(b []byte) (Event, error) {
	var env envelope
	if err := decodeStrict(b, &env); err != nil {
		return Event{}, fmt.Errorf("events: %w: %v", ErrMalformed, err)
	}
	p, ok := payloads[env.Type]
	if !ok {
		return Event{}, fmt.Errorf("events: type %q: %w", env.Type, ErrUnknownType)
	}
	// Events are stamped in UTC; a time that is no year of the calendar
	// once in UTC cannot have been written by labd, nor written again.
	at := env.At.UTC()
	if y := at.Year(); y < 1 || y > 9999 {
		return Event{}, fmt.Errorf("events: %q: time %s out of range: %w", env.Type, env.At, ErrMalformed)
	}
	if env.Schema < 1 || env.Schema > p.schema {
		return Event{}, fmt.Errorf("events: %q schema %d, this build knows 1..%d: %w", env.Type, env.Schema, p.schema, ErrSchema)
	}
	raw := env.Data
	for v := env.Schema; v < p.schema; v++ {
		up, ok := p.upcast[v]
		if !ok {
			return Event{}, fmt.Errorf("events: %q schema %d: no upcaster: %w", env.Type, v, ErrSchema)
		}
		var err error
		if raw, err = up(raw); err != nil {
			return Event{}, fmt.Errorf("events: upcast %q schema %d: %w", env.Type, v, err)
		}
	}
	if len(raw) == 0 || raw[0] != '{' {
		return Event{}, fmt.Errorf("events: %q: data is not an object: %w", env.Type, ErrMalformed)
	}
	d, err := p.decode(raw)
	if err != nil {
		return Event{}, fmt.Errorf("events: %q data: %w: %v", env.Type, ErrMalformed, err)
	}
	return Event{
		Type:      env.Type,
		Schema:    p.schema,
		At:        at,
		ProjectID: env.ProjectID,
		NodeID:    env.NodeID,
		Data:      d,
	}, nil
}

// decodeStrict decodes exactly one JSON value with no unknown fields and
// nothing after it.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	// Cheaper than asking the decoder for another token.
	if len(bytes.TrimSpace(b[dec.InputOffset():])) != 0 {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}
