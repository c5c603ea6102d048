package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"

	"github.com/google/uuid"
)

// decodeBody decodes the JSON object in r's body into v, strictly: at most
// maxBytes (413 beyond), one object and nothing after it, no unknown field,
// every value of its field's type (400 otherwise). An empty body decodes
// as {} when emptyOK.
func decodeBody(r *http.Request, v any, maxBytes int64, emptyOK bool) error {
	b, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxBytes))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return newHTTPError(http.StatusRequestEntityTooLarge, "Request body too large: the limit is %d bytes", maxBytes)
		}
		return newHTTPError(http.StatusBadRequest, "Could not read the request body: %v", err)
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		if emptyOK {
			return nil
		}
		return newHTTPError(http.StatusBadRequest, "Invalid JSON: the request needs a JSON object body")
	}
	if b[0] != '{' {
		return newHTTPError(http.StatusBadRequest, "Invalid JSON: the body must be a JSON object")
	}
	if err := decodeStrict(b, v); err != nil {
		return newHTTPError(http.StatusBadRequest, "Invalid JSON: %s", describeJSONError(err))
	}
	return nil
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
