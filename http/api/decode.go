package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/google/uuid"
)

// decodeBody decodes the JSON object in r's body into v, strictly: at most
// maxBytes (413 beyond), one object and nothing after it, no unknown field,
// every value of its field's type (400 otherwise). An empty body decodes
// as {} when emptyOK.
func decodeBody(r *http.Request, v any, maxBytes int64, emptyOK bool) error {
	b, err := readBody(r, maxBytes, emptyOK)
	if err != nil || b == nil {
		return err
	}
	return decodeObject(b, v)
}

// readBody reads r's body, which must be one JSON object of at most
// maxBytes (413 beyond) in valid UTF-8: decodeBody in two steps, for the
// routes that must look into a body before they know its type (GNS3
// 1.5's device_type). It returns nil for an empty body when emptyOK.
func readBody(r *http.Request, maxBytes int64, emptyOK bool) ([]byte, error) {
	if r.ContentLength > maxBytes {
		return nil, tooLarge("Request body too large: the limit is %d bytes", maxBytes)
	}
	b, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxBytes))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, tooLarge("Request body too large: the limit is %d bytes", maxBytes)
		}
		return nil, newHTTPError(http.StatusBadRequest, "Could not read the request body: %v", err)
	}
	if err := checkText(b); err != nil {
		return nil, newHTTPError(http.StatusBadRequest, "Invalid JSON: %v", err)
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		if emptyOK {
			return nil, nil
		}
		return nil, newHTTPError(http.StatusBadRequest, "Invalid JSON: the request needs a JSON object body")
	}
	if b[0] != '{' {
		return nil, newHTTPError(http.StatusBadRequest, "Invalid JSON: the body must be a JSON object")
	}
	return b, nil
}

// decodeObject decodes a body readBody returned into v, strictly.
func decodeObject(b []byte, v any) error {
	if err := decodeStrict(b, v); err != nil {
		return newHTTPError(http.StatusBadRequest, "Invalid JSON: %s", describeJSONError(err))
	}
	return nil
}

// decodeItems decodes the items of the array member name one by one into
// Ts, each as strictly as a body, so that an error names the item and its
// member ("ports_mapping[2].vlan"): encoding/json reports neither the
// index nor, through field's UnmarshalJSON, the inner member.
func decodeItems[T any](name string, raw []json.RawMessage) ([]T, error) {
	out := make([]T, len(raw))
	for i, b := range raw {
		where := fmt.Sprintf("%s[%d]", name, i)
		if len(b) == 0 || b[0] != '{' {
			return nil, badRequest("field %q must be an object, not %s", where, jsonType(b))
		}
		if err := decodeStrict(b, &out[i]); err != nil {
			if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
				if f := memberPath(te.Field); f != "" {
					where += "." + f
				}
				return nil, badRequest("field %q must be %s, not %s", where, kindOf(te.Type), te.Value)
			}
			return nil, badRequest("%s: %s", where, describeJSONError(err))
		}
	}
	return out, nil
}

// jsonType names the type of a JSON value as encoding/json does in its
// type errors.
func jsonType(b []byte) string {
	switch {
	case len(b) == 0:
		return "nothing"
	case b[0] == 'n':
		return "null"
	case b[0] == 't' || b[0] == 'f':
		return "bool"
	case b[0] == '"':
		return "string"
	case b[0] == '[':
		return "array"
	case b[0] == '{':
		return "object"
	}
	return "number"
}

// tooLarge is the 413 of a body over its limit. The body's rest is
// drained before the answer (drainBody), so that a client that writes its
// whole body before reading reads the answer.
func tooLarge(format string, args ...any) error {
	e := newHTTPError(http.StatusRequestEntityTooLarge, format, args...)
	e.drain = true
	return e
}

// How much of a refused body drainBody reads, and for how long, before it
// gives up and lets the connection close under the client.
const (
	drainLimit   = 64 << 20
	drainTimeout = 30 * time.Second
)

// drainBody reads and discards what is left of a refused body. Answering
// and closing with the client's bytes unread would make the kernel reset
// the connection, and a client that writes everything before it reads
// (Python's http.client, most scripts) would see a broken pipe instead of
// the 413. A client that waits for 100 Continue has sent nothing: it is
// answered at once.
func drainBody(w http.ResponseWriter, r *http.Request) {
	if strings.EqualFold(r.Header.Get("Expect"), "100-continue") {
		return
	}
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(drainTimeout))
	_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, drainLimit))
	_ = rc.SetReadDeadline(time.Time{})
}

// checkText refuses a body that is not valid UTF-8, raw or escaped (a
// \u escape of half a surrogate pair): encoding/json would take either
// and store U+FFFD in its place, so the client's text would not be what
// labd records.
func checkText(b []byte) error {
	if !utf8.Valid(b) {
		i := 0
		for i < len(b) {
			r, n := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && n <= 1 {
				break
			}
			i += n
		}
		return fmt.Errorf("the body is not valid UTF-8 (byte %d)", i)
	}
	inString := false
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			inString = !inString
		case c == '\\' && inString && i+1 < len(b):
			if b[i+1] != 'u' {
				i++
				continue
			}
			r, ok := hex4(b, i+2)
			if !ok {
				i++
				continue // a syntax error: the decoder words it
			}
			switch {
			case utf16.IsSurrogate(r) && r < 0xDC00:
				if low, ok := hex4(b, i+8); ok && i+7 < len(b) && b[i+6] == '\\' && b[i+7] == 'u' && low >= 0xDC00 && low <= 0xDFFF {
					i += 11
					continue
				}
				return fmt.Errorf("\\u%04X at byte %d is half a surrogate pair, not a character", r, i)
			case utf16.IsSurrogate(r):
				return fmt.Errorf("\\u%04X at byte %d is half a surrogate pair, not a character", r, i)
			}
			i += 5
		}
	}
	return nil
}

// hex4 reads the four hex digits of a \u escape at b[i:].
func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(b[i:i+4]), 16, 16)
	return rune(v), err == nil
}

func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("unexpected data after the JSON object")
	}
	return nil
}

// describeJSONError words a decoding error for the client.
func describeJSONError(err error) string {
	if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
		where := "the body"
		if f := memberPath(te.Field); f != "" {
			where = fmt.Sprintf("field %q", f)
		}
		return fmt.Sprintf("%s must be %s, not %s", where, kindOf(te.Type), te.Value)
	}
	if se, ok := errors.AsType[*json.SyntaxError](err); ok {
		return fmt.Sprintf("syntax error at byte %d: %v", se.Offset, se)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return "the JSON object is not complete"
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

// memberPath turns the path encoding/json reports into the client's
// member names: encoding/json names an embedded struct by its Go type, and
// GNS3's members are snake_case, so a segment with an upper-case letter is
// such a type and is dropped.
func memberPath(field string) string {
	var out []string
	for seg := range strings.SplitSeq(field, ".") {
		if strings.ToLower(seg) == seg {
			out = append(out, seg)
		}
	}
	return strings.Join(out, ".")
}

func kindOf(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer in range"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return t.String()
}

// field is a JSON member that may be absent but, when present, must hold a
// T: null is a type error.
type field[T any] struct {
	Set   bool
	Value T
}

// UnmarshalJSON starts from scratch each time: a member given twice takes
// its last value, as in GNS3 (Python's json), with nothing left over from
// the first.
func (f *field[T]) UnmarshalJSON(b []byte) error {
	*f = field[T]{}
	if string(b) == "null" {
		return &json.UnmarshalTypeError{Value: "null", Type: reflect.TypeFor[T]()}
	}
	f.Set = true
	return decodeMember(b, &f.Value)
}

// nullable is a JSON member that may be absent, null, or a T.
type nullable[T any] struct {
	Set   bool
	Null  bool
	Value T
}

// UnmarshalJSON starts from scratch each time, like field's.
func (n *nullable[T]) UnmarshalJSON(b []byte) error {
	*n = nullable[T]{Set: true}
	if string(b) == "null" {
		n.Null = true
		return nil
	}
	return decodeMember(b, &n.Value)
}

// decodeMember decodes one member's value with the same strictness as the
// whole body (json.Unmarshal would accept unknown fields in nested
// objects). A type error is returned bare so the outer decoder names the
// member.
func decodeMember(b []byte, v any) error {
	if err := decodeStrict(b, v); err != nil {
		if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
			return &json.UnmarshalTypeError{Value: te.Value, Type: te.Type, Offset: te.Offset}
		}
		return err
	}
	return nil
}

// parseID checks a UUID from a path or a body. GNS3 accepts any UUID
// version in the 8-4-4-4-12 hex form; labd also lower-cases it, so one
// project cannot be reached under two spellings.
func parseID(what, s string) (string, error) {
	u, err := uuid.Parse(s)
	if err != nil || len(s) != 36 {
		return "", newHTTPError(http.StatusBadRequest, "%s ID %s is not a valid UUID", what, s)
	}
	return u.String(), nil
}

// writeJSON writes v as the JSON reply.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Every reply type is ours and marshals; this is a bug.
		panic(fmt.Sprintf("api: marshal %T: %v", v, err))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
