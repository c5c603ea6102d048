// Package dialect holds what labd's VM dialects (Nova, Danube Cloud,
// e24cloud) share: which nodes are machines, what status an error of the
// core has, and the reading of their credential tables. Each dialect
// words its answers its own way; this is the part that is the same.
package dialect

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"

	"github.com/google/uuid"

	"labd/actors"
	"labd/replay"
)

// Machines returns a project's machines: its nodes of kinds that run a
// process (VPCS, QEMU). Switches, hubs and clouds always run inside labd
// and are no VM. An unknown project has none.
func Machines(c *actors.Client, project string) []*replay.Node {
	nodes, err := c.Nodes(project)
	if err != nil {
		return nil
	}
	alwaysOn := map[string]bool{}
	for _, k := range c.Kinds() {
		alwaysOn[k.Kind] = k.AlwaysOn
	}
	return slices.DeleteFunc(nodes, func(n *replay.Node) bool { return alwaysOn[n.Kind] })
}

// Machine returns the machine id of a project, nil when there is none.
func Machine(c *actors.Client, project, id string) *replay.Node {
	for _, n := range Machines(c, project) {
		if n.ID == id {
			return n
		}
	}
	return nil
}

// FirstStart reports whether a node is being started for the first time
// (Nova's BUILD, e24cloud's installing): a start in flight, and none
// before it that ended well or ran.
func FirstStart(n *replay.Node) bool {
	if n.Task != replay.TaskStarting {
		return false
	}
	for _, op := range n.Operations {
		if op.Op == string(actors.OpStart) && op.State == "SUCCESS" {
			return false
		}
	}
	return n.LastStop == nil
}

// ImageID is the id of a store image: stable, from its name, the same in
// every dialect.
func ImageID(name string) string {
	return uuid.NewSHA1(uuid.NameSpaceURL, []byte("labd-image:"+name)).String()
}

// Status is the HTTP status of an error of labd's core, by its class, and
// its message. public is false when the message must not reach a client
// (an error of labd's own, status 500): the caller logs the error and
// answers words of its own.
func Status(err error) (status int, msg string, public bool) {
	msg, public = actors.PublicMessage(err)
	status = http.StatusInternalServerError
	switch {
	case errors.Is(err, actors.ErrUnsupported):
		status = http.StatusNotImplemented
	case errors.Is(err, actors.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, actors.ErrInvalid):
		status = http.StatusBadRequest
	case errors.Is(err, actors.ErrConflict), errors.Is(err, actors.ErrAlreadyExists):
		status = http.StatusConflict
	case errors.Is(err, actors.ErrForbidden):
		status = http.StatusForbidden
	case errors.Is(err, actors.ErrUnavailable):
		status = http.StatusServiceUnavailable
	}
	return status, msg, public && status != http.StatusInternalServerError
}

// ErrTrailing is Decode's error for a body with more after its value.
var ErrTrailing = errors.New("more than one JSON value")

// Decode reads b as exactly one JSON value into v, refusing members v
// does not have: the strict decoding every dialect's bodies get. More
// after the value is ErrTrailing.
func Decode(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return ErrTrailing
	}
	return nil
}

// ParseTable reads a credential table: one entry of whitespace-separated
// fields per line, blank lines and # comments aside. entry takes each
// line's fields, and says what is wrong with them; what names the table
// in errors. An empty table is an error.
func ParseTable(r io.Reader, what string, entry func(f []string) error) error {
	sc := bufio.NewScanner(r)
	n := 0
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		if err := entry(strings.Fields(text)); err != nil {
			return fmt.Errorf("%s: line %d: %w", what, line, err)
		}
		n++
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if n == 0 {
		return fmt.Errorf("%s: the table is empty", what)
	}
	return nil
}

// ReadFile parses the file at path with parse: a table file.
func ReadFile[T any](path string, parse func(io.Reader) (T, error)) (T, error) {
	f, err := os.Open(path)
	if err != nil {
		var zero T
		return zero, err
	}
	defer f.Close()
	return parse(f)
}
