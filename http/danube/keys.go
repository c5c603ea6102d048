package danube

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/google/uuid"

	"labd/http/dialect"
)

// Key is a user of the API: what an ES-API-KEY stands for.
type Key struct {
	// ID is the user's number in task ids.
	ID int
	// User is the es_username header's name.
	User string
	// Project is the labd project whose nodes the key sees; "" for all
	// (the open dialect without keys).
	Project string
}

// openUser is who acts when there is no key table.
var openUser = Key{ID: 1, User: "admin"}

// ParseKeys reads a key table: one "KEY PROJECT_ID [USERNAME]" per line,
// blank lines and # comments aside. Users are numbered by line.
func ParseKeys(r io.Reader) (map[string]Key, error) {
	out := map[string]Key{}
	return out, dialect.ParseTable(r, "danube keys", func(f []string) error {
		if len(f) != 2 && len(f) != 3 {
			return errors.New("want KEY PROJECT_ID [USERNAME]")
		}
		id, err := uuid.Parse(f[1])
		if err != nil {
			return fmt.Errorf("%q is not a project id", f[1])
		}
		if _, dup := out[f[0]]; dup {
			return errors.New("the key is given twice")
		}
		k := Key{ID: len(out) + 2, Project: id.String()}
		k.User = "user" + strconv.Itoa(k.ID)
		if len(f) == 3 {
			k.User = f[2]
		}
		out[f[0]] = k
		return nil
	})
}

// ReadKeys reads a key table file.
func ReadKeys(path string) (map[string]Key, error) {
	return dialect.ReadFile(path, ParseKeys)
}

// authenticate finds the request's user by its ES-API-KEY.
func (s *Server) authenticate(r *http.Request) (Key, error) {
	key := r.Header.Get("ES-API-KEY")
	if len(s.cfg.Keys) == 0 {
		if s.cfg.Open {
			return openUser, nil
		}
		return Key{}, &apiError{status: http.StatusUnauthorized, detail: "Authentication credentials were not provided."}
	}
	if key == "" {
		return Key{}, &apiError{status: http.StatusUnauthorized, detail: "Authentication credentials were not provided."}
	}
	for k, u := range s.cfg.Keys {
		if subtle.ConstantTimeCompare([]byte(k), []byte(key)) == 1 {
			return u, nil
		}
	}
	return Key{}, &apiError{status: http.StatusUnauthorized, detail: "Invalid API key"}
}
