package access

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// refuse is a dialect's refusal: GNS3's JSON shape.
func refuse(w http.ResponseWriter, _ *http.Request, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"status": status, "message": msg})
}

// serve runs h behind the guards over real HTTP on loopback and returns
// its URL; calls counts the requests that reached h.
func serve(t *testing.T, wrap func(http.Handler) http.Handler) (string, *atomic.Int32) {
	t.Helper()
	calls := new(atomic.Int32)
	srv := httptest.NewServer(wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusOK)
	})))
	t.Cleanup(srv.Close)
	return srv.URL, calls
}

func send(t *testing.T, method, url string, header map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func TestBrowser(t *testing.T) {
	b := Browser{AllowOrigins: []string{"http://gui.example:8080/"}, AllowHosts: []string{"lab.example"}, Refuse: refuse}
	url, calls := serve(t, b.Wrap)
	own := "http://" + url[len("http://"):]
	for _, tc := range []struct {
		name   string
		header map[string]string
		want   int
	}{
		{"no origin", nil, 200},
		{"own origin", map[string]string{"Origin": own}, 200},
		{"other site", map[string]string{"Origin": "http://evil.example"}, 403},
		{"other port of loopback", map[string]string{"Origin": "http://127.0.0.1:1"}, 403},
		{"opaque origin", map[string]string{"Origin": "null"}, 403},
		{"allowed origin", map[string]string{"Origin": "http://gui.example:8080"}, 200},
		{"rebound name", map[string]string{"Host": "evil.example:3080"}, 403},
		{"rebound name, its own origin", map[string]string{"Host": "evil.example:3080", "Origin": "http://evil.example:3080"}, 403},
		{"localhost", map[string]string{"Host": "localhost:3080"}, 200},
		{"ipv6", map[string]string{"Host": "[::1]:3080"}, 200},
		{"allowed host", map[string]string{"Host": "LAB.example"}, 200},
	} {
		before := calls.Load()
		resp := send(t, "POST", url, tc.header)
		if resp.StatusCode != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, resp.StatusCode, tc.want)
		}
		if reached := calls.Load() > before; reached != (tc.want == 200) {
			t.Errorf("%s: the handler ran: %v", tc.name, reached)
		}
		if got := resp.Header.Get("Access-Control-Allow-Origin"); (got != "") != (tc.name == "allowed origin") {
			t.Errorf("%s: Access-Control-Allow-Origin %q", tc.name, got)
		}
	}
	pre := send(t, "OPTIONS", url, map[string]string{"Origin": "http://gui.example:8080", "Access-Control-Request-Method": "PUT"})
	if pre.StatusCode != 204 || pre.Header.Get("Access-Control-Allow-Methods") == "" || pre.Header.Get("Access-Control-Allow-Headers") != corsHeaders {
		t.Errorf("preflight: %d %v", pre.StatusCode, pre.Header)
	}
}

func TestBasic(t *testing.T) {
	a := Basic{Realm: "GNS3 server", User: "admin", Password: "s3cret", Refuse: refuse}
	url, calls := serve(t, a.Wrap)
	check := func(name string, set func(*http.Request), want int) {
		t.Helper()
		req, _ := http.NewRequest("GET", url, nil)
		set(req)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]any
		json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s: %d, want %d", name, resp.StatusCode, want)
		}
		if want == 401 {
			if got := resp.Header.Get("WWW-Authenticate"); got != `Basic realm="GNS3 server"` {
				t.Errorf("%s: WWW-Authenticate %q", name, got)
			}
			if body["status"] != 401.0 || body["message"] == "" {
				t.Errorf("%s: body %v", name, body)
			}
		}
	}
	check("none", func(*http.Request) {}, 401)
	check("wrong password", func(r *http.Request) { r.SetBasicAuth("admin", "s3cre") }, 401)
	check("wrong user", func(r *http.Request) { r.SetBasicAuth("root", "s3cret") }, 401)
	check("not basic", func(r *http.Request) { r.Header.Set("Authorization", "Bearer s3cret") }, 401)
	if n := calls.Load(); n != 0 {
		t.Fatalf("%d refused requests reached the handler", n)
	}
	check("right", func(r *http.Request) { r.SetBasicAuth("admin", "s3cret") }, 200)
	if n := calls.Load(); n != 1 {
		t.Fatalf("the accepted request reached the handler %d times", n)
	}
}

// BenchmarkGuards measures what the guards add to a request: the Host and
// Origin checks, and HTTP Basic's two hashes and comparisons.
func BenchmarkGuards(b *testing.B) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	for _, bc := range []struct {
		name string
		h    http.Handler
	}{
		{"browser", Browser{Refuse: refuse}.Wrap(ok)},
		{"browser+basic", Browser{Refuse: refuse}.Wrap(Basic{Realm: "GNS3 server", User: "admin", Password: "s3cret", Refuse: refuse}.Wrap(ok))},
	} {
		b.Run(bc.name, func(b *testing.B) {
			req := httptest.NewRequest("POST", "http://127.0.0.1:3080/v2/compute/projects", nil)
			req.Header.Set("Origin", "http://127.0.0.1:3080")
			req.SetBasicAuth("admin", "s3cret")
			w := httptest.NewRecorder()
			b.ReportAllocs()
			for b.Loop() {
				bc.h.ServeHTTP(w, req)
			}
		})
	}
}
