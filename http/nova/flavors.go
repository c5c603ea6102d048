package nova

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/google/uuid"

	"labd/http/dialect"
)

// Flavor is a size a server can have.
type Flavor struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	VCPUs int    `json:"vcpus"`
	// RAM is in MB, Disk in GB (shown; labd's disks are the image's).
	RAM  int `json:"ram"`
	Disk int `json:"disk"`
}

// DefaultFlavors is devstack's table, whose small sizes suit labs.
func DefaultFlavors() []Flavor {
	return []Flavor{
		{ID: "42", Name: "m1.nano", VCPUs: 1, RAM: 64},
		{ID: "84", Name: "m1.micro", VCPUs: 1, RAM: 128},
		{ID: "1", Name: "m1.tiny", VCPUs: 1, RAM: 512, Disk: 1},
		{ID: "2", Name: "m1.small", VCPUs: 1, RAM: 2048, Disk: 20},
		{ID: "3", Name: "m1.medium", VCPUs: 2, RAM: 4096, Disk: 40},
		{ID: "4", Name: "m1.large", VCPUs: 4, RAM: 8192, Disk: 80},
		{ID: "5", Name: "m1.xlarge", VCPUs: 8, RAM: 16384, Disk: 160},
	}
}

// ParseFlavors reads a flavor table: a JSON array of flavors. Unknown
// members, duplicate ids and sizes QEMU nodes cannot have are errors.
func ParseFlavors(r io.Reader) ([]Flavor, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var fs []Flavor
	if err := dec.Decode(&fs); err != nil {
		return nil, fmt.Errorf("flavors: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("flavors: more than one JSON value")
	}
	if len(fs) == 0 {
		return nil, fmt.Errorf("flavors: the table is empty")
	}
	seen := map[string]bool{}
	for i, f := range fs {
		switch {
		case f.ID == "" || strings.ContainsAny(f.ID, "/ ?#"):
			return nil, fmt.Errorf("flavors: flavor %d: id %q is not a path segment", i, f.ID)
		case seen[f.ID]:
			return nil, fmt.Errorf("flavors: id %q is given twice", f.ID)
		case f.Name == "":
			return nil, fmt.Errorf("flavors: flavor %s has no name", f.ID)
		case f.VCPUs < 1 || f.VCPUs > 255:
			return nil, fmt.Errorf("flavors: flavor %s: vcpus %d is not in 1..255", f.ID, f.VCPUs)
		case f.RAM < 32 || f.RAM > 1<<22:
			return nil, fmt.Errorf("flavors: flavor %s: ram %d MB is not in 32..4194304", f.ID, f.RAM)
		case f.Disk < 0:
			return nil, fmt.Errorf("flavors: flavor %s: disk %d is negative", f.ID, f.Disk)
		}
		seen[f.ID] = true
	}
	return fs, nil
}

// ReadFlavors reads a flavor table file.
func ReadFlavors(path string) ([]Flavor, error) {
	return dialect.ReadFile(path, ParseFlavors)
}

// ParseTokens reads a token table: one "TOKEN PROJECT_ID" per line,
// blank lines and # comments aside.
func ParseTokens(r io.Reader) (map[string]string, error) {
	out := map[string]string{}
	return out, dialect.ParseTable(r, "tokens", func(f []string) error {
		if len(f) != 2 {
			return errors.New("want TOKEN PROJECT_ID")
		}
		id, err := uuid.Parse(f[1])
		if err != nil {
			return fmt.Errorf("%q is not a project id", f[1])
		}
		if _, dup := out[f[0]]; dup {
			return errors.New("the token is given twice")
		}
		out[f[0]] = id.String()
		return nil
	})
}

// ReadTokens reads a token table file.
func ReadTokens(path string) (map[string]string, error) {
	return dialect.ReadFile(path, ParseTokens)
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }
