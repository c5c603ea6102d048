package e24

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/google/uuid"
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
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		f := strings.Fields(text)
		if len(f) != 3 {
			return nil, fmt.Errorf("e24 keys: line %d: want KEY SECRET PROJECT_ID", line)
		}
		if strings.Contains(f[0], ":") {
			return nil, fmt.Errorf("e24 keys: line %d: a key may not hold ':'", line)
		}
		id, err := uuid.Parse(f[2])
		if err != nil {
			return nil, fmt.Errorf("e24 keys: line %d: %q is not a project id", line, f[2])
		}
		if _, dup := out[f[0]]; dup {
			return nil, fmt.Errorf("e24 keys: line %d: the key is given twice", line)
		}
		out[f[0]] = Key{Secret: f[1], Project: id.String()}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("e24 keys: %w", err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("e24 keys: the table is empty")
	}
	return out, nil
}

// ReadKeys reads a key table file.
func ReadKeys(path string) (map[string]Key, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseKeys(f)
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
