// Package access guards labd's HTTP listeners. Browser keeps web pages
// out of an API that listens on loopback without a password: a request
// whose Origin is another site's (a page's fetch, even a "simple" one
// that needs no preflight) or whose Host is a name labd does not answer to
// (DNS rebinding) is refused. Basic is HTTP Basic authentication, as GNS3
// does it, for the dialects that use it.
//
// Both are plain http.Handler wrappers; the refusal's body is the
// dialect's (a Refuser), so each API answers in its own shape. The package
// imports nothing of labd.
package access

import (
	"crypto/sha256"
	"crypto/subtle"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// Refuser writes a refusal (a 401 or a 403) in a dialect's error shape.
// Headers the guard needs (WWW-Authenticate) are set before it is called.
type Refuser func(w http.ResponseWriter, r *http.Request, status int, message string)

// Browser checks the Origin and Host of every request.
type Browser struct {
	// AllowOrigins are origins ("http://gui.example:8080") besides the
	// API's own whose pages may call it; they get CORS headers.
	AllowOrigins []string
	// AllowHosts are host names besides IP literals and localhost that
	// requests may name in their Host header.
	AllowHosts []string
	// Refuse writes the 403s.
	Refuse Refuser
}

// corsMethods and corsHeaders are what a preflight of an allowed origin is
// told it may send: the credentials of every dialect (GNS3's HTTP Basic,
// Nova's token, Danube Cloud's key and stream mode, e24cloud's signature
// date) among them.
const (
	corsMethods = "GET, POST, PUT, DELETE, OPTIONS"
	corsHeaders = "Authorization, Content-Type, X-Auth-Token, OpenStack-API-Version, X-OpenStack-Nova-API-Version, ES-API-KEY, ES-STREAM, X-Date"
)

// Wrap returns next behind the checks. A request without an Origin (curl,
// GNS3 controllers, scripts) passes the Origin check; every request passes
// the Host check or is refused, so a page of a rebound name cannot read
// replies either.
func (b Browser) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !b.hostAllowed(r.Host) {
			b.Refuse(w, r, http.StatusForbidden, "Host "+quote(r.Host)+" is not an address of this server: use an IP address or localhost, or start labd with --allow-host")
			return
		}
		origin := r.Header.Get("Origin")
		if origin == "" {
			next.ServeHTTP(w, r)
			return
		}
		own := sameOrigin(origin, r)
		listed := slices.ContainsFunc(b.AllowOrigins, func(o string) bool { return strings.EqualFold(strings.TrimSuffix(o, "/"), origin) })
		if !own && !listed {
			b.Refuse(w, r, http.StatusForbidden, "Origin "+quote(origin)+" may not use this API: start labd with --allow-origin to let its pages in")
			return
		}
		if listed {
			h := w.Header()
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Allow-Credentials", "true")
			h.Add("Vary", "Origin")
			if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
				h.Set("Access-Control-Allow-Methods", corsMethods)
				h.Set("Access-Control-Allow-Headers", corsHeaders)
				h.Set("Access-Control-Max-Age", "600")
				w.WriteHeader(http.StatusNoContent)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// hostAllowed reports whether a Host header names this server: an IP
// literal (a rebinding attack needs a name), localhost, or an allowed
// name. An HTTP/1.0 request may have none.
func (b Browser) hostAllowed(hostport string) bool {
	if hostport == "" {
		return true
	}
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	if net.ParseIP(host) != nil || strings.EqualFold(host, "localhost") {
		return true
	}
	return slices.ContainsFunc(b.AllowHosts, func(a string) bool { return strings.EqualFold(a, host) })
}

// sameOrigin reports whether origin is the API's own: the scheme and
// address the request was sent to. The Host has passed hostAllowed.
func sameOrigin(origin string, r *http.Request) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || u.Path != "" {
		return false
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return strings.EqualFold(u.Scheme, scheme) && strings.EqualFold(u.Host, r.Host)
}

func quote(s string) string { return "\"" + strings.ReplaceAll(s, "\"", "\\\"") + "\"" }

// Basic is HTTP Basic authentication against one user, as GNS3 does it:
// every request, WebSocket upgrades and notification streams included,
// must carry the user's credentials; others get 401 with
// WWW-Authenticate. The comparison takes the same time whatever the
// credentials.
type Basic struct {
	// Realm is the realm of WWW-Authenticate (GNS3's: "GNS3 server").
	Realm string
	// User and Password are the credentials.
	User, Password string
	// Refuse writes the 401s.
	Refuse Refuser
}

// Wrap returns next behind the authentication.
func (a Basic) Wrap(next http.Handler) http.Handler {
	wantUser, wantPass := sha256.Sum256([]byte(a.User)), sha256.Sum256([]byte(a.Password))
	challenge := `Basic realm="` + a.Realm + `"`
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		gotUser, gotPass := sha256.Sum256([]byte(user)), sha256.Sum256([]byte(pass))
		// Both compared, always: which part was wrong takes no less time.
		match := subtle.ConstantTimeCompare(gotUser[:], wantUser[:]) & subtle.ConstantTimeCompare(gotPass[:], wantPass[:])
		if !ok || match != 1 {
			w.Header().Set("WWW-Authenticate", challenge)
			msg := "Authentication required"
			if ok {
				msg = "Invalid user or password"
			}
			a.Refuse(w, r, http.StatusUnauthorized, msg)
			return
		}
		next.ServeHTTP(w, r)
	})
}
