package e24

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"

	"labd/http/dialect"
)

// Key is an API key's secret and the labd project its requests act on.
type Key struct {
	Secret  string
	Project string
}

// ParseKeys reads a key table: one "KEY SECRET PROJECT_ID" per line,
// blank lines and # comments aside. A key may not hold ':' (it ends the
// key in Authorization).
func ParseKeys(r io.Reader) (map[string]Key, error) {
	out := map[string]Key{}
	return out, dialect.ParseTable(r, "e24 keys", func(f []string) error {
		if len(f) != 3 {
			return errors.New("want KEY SECRET PROJECT_ID")
		}
		if strings.Contains(f[0], ":") {
			return errors.New("a key may not hold ':'")
		}
		id, err := uuid.Parse(f[2])
		if err != nil {
			return fmt.Errorf("%q is not a project id", f[2])
		}
		if _, dup := out[f[0]]; dup {
			return errors.New("the key is given twice")
		}
		out[f[0]] = Key{Secret: f[1], Project: id.String()}
		return nil
	})
}

// ReadKeys reads a key table file.
func ReadKeys(path string) (map[string]Key, error) {
	return dialect.ReadFile(path, ParseKeys)
}

// verify checks a request's key, X-Date and signature, and returns the
// key's project.
func (s *Server) verify(r *http.Request, body []byte) (string, error) {
	unauthorized := func(why string) error {
		return errorf(http.StatusUnauthorized, "Authentication failed: %s", why)
	}
	auth := r.Header.Get("Authorization")
	i := strings.LastIndexByte(auth, ':')
	if i <= 0 {
		return "", unauthorized("the Authorization header is not KEY:SIGNATURE")
	}
	keyID, sig := auth[:i], auth[i+1:]
	key, known := s.cfg.Keys[keyID]
	if !known {
		return "", unauthorized("unknown API key")
	}
	xdate := r.Header.Get("X-Date")
	if xdate == "" {
		return "", unauthorized("the X-Date header is missing")
	}
	at, err := parseDate(xdate)
	if err != nil {
		return "", unauthorized("X-Date is not an RFC 1123 date in GMT")
	}
	if d := s.cfg.Now().Sub(at); d > MaxSkew || d < -MaxSkew {
		return "", unauthorized(fmt.Sprintf("X-Date is more than %v from the server's time", MaxSkew))
	}
	got, err := base64.StdEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, signature(key.Secret, r.Method, r.Host, xdate, requestPath(r), body)) {
		return "", unauthorized("the signature does not match")
	}
	return key.Project, nil
}

// signature is e24cloud's HMAC-SHA256 of a request.
func signature(secret, method, host, xdate, path string, body []byte) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(method + "\n" + host + "\n" + xdate + "\n" + path + "\n"))
	m.Write(body)
	return m.Sum(nil)
}

// requestPath is the path and query as the client sent them.
func requestPath(r *http.Request) string {
	if uri := r.RequestURI; strings.HasPrefix(uri, "/") {
		return uri
	}
	p := r.URL.EscapedPath()
	if r.URL.RawQuery != "" {
		p += "?" + r.URL.RawQuery
	}
	return p
}

// parseDate reads X-Date: RFC 1123 in GMT (HTTP's date), or with UTC or a
// numeric zone; a zone abbreviation whose offset labd cannot know is
// refused.
func parseDate(v string) (time.Time, error) {
	if t, err := http.ParseTime(v); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.RFC1123Z, v); err == nil {
		return t, nil
	}
	t, err := time.Parse(time.RFC1123, v)
	if err != nil {
		return time.Time{}, err
	}
	if zone, _ := t.Zone(); zone != "UTC" && zone != "GMT" {
		return time.Time{}, fmt.Errorf("the zone %s has no known offset", zone)
	}
	return t, nil
}
