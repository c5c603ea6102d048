package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"labd/events"
)

// note is one notification as a client decodes it.
type note struct {
	Action    string         `json:"action"`
	Event     map[string]any `json:"event"`
	ProjectID string         `json:"project_id"`
	Sequence  uint64         `json:"sequence"`
}

// wsClient reads the notification WebSocket.
type wsClient struct {
	t *testing.T
	c *websocket.Conn
}

func dialWS(t *testing.T, d *daemon, query string, dialer *net.Dialer) *wsClient {
	t.Helper()
	opts := &websocket.DialOptions{}
	if dialer != nil {
		opts.HTTPClient = &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext}}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	url := "ws" + strings.TrimPrefix(d.URL, "http") + "/v2/compute/notifications/ws" + query
	c, resp, err := websocket.Dial(ctx, url, opts)
	if err != nil {
		t.Fatalf("dial %s: %v (%v)", url, err, resp)
	}
	c.SetReadLimit(4 << 20)
	t.Cleanup(func() { c.CloseNow() })
	return &wsClient{t: t, c: c}
}

// next returns the next message, failing the test after within.
func (w *wsClient) next(within time.Duration) note {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(w.t.Context(), within)
	defer cancel()
	_, b, err := w.c.Read(ctx)
	if err != nil {
		w.t.Fatalf("no notification within %v: %v", within, err)
	}
	var n note
	if err := json.Unmarshal(b, &n); err != nil {
		w.t.Fatalf("notification %q: %v", b, err)
	}
	return n
}

// event returns the next message that is not a ping.
func (w *wsClient) event(within time.Duration) note {
	w.t.Helper()
	deadline := time.Now().Add(within)
	for {
		n := w.next(time.Until(deadline))
		if n.Action != "ping" {
			return n
		}
	}
}

// streamClient reads a chunked JSON-lines notification stream.
type streamClient struct {
	t     *testing.T
	lines chan []byte
	done  chan error
}

func openStream(t *testing.T, url string) *streamClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		cancel()
		t.Fatalf("stream %s: %d %s", url, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	s := &streamClient{t: t, lines: make(chan []byte, 1024), done: make(chan error, 1)}
	go func() {
		defer resp.Body.Close()
		br := bufio.NewReader(resp.Body)
		for {
			line, err := br.ReadBytes('\n')
			if err != nil {
				s.done <- err
				close(s.lines)
				return
			}
			s.lines <- line
		}
	}()
	t.Cleanup(func() {
		cancel()
		for range s.lines {
		}
	})
	return s
}

func (s *streamClient) next(within time.Duration) (note, bool) {
	s.t.Helper()
	select {
	case line, ok := <-s.lines:
		if !ok {
			return note{}, false
		}
		var n note
		if err := json.Unmarshal(line, &n); err != nil {
			s.t.Fatalf("stream line %q: %v", line, err)
		}
		return n, true
	case <-time.After(within):
		s.t.Fatalf("no stream line within %v", within)
	}
	return note{}, false
}

func (s *streamClient) event(within time.Duration) note {
	s.t.Helper()
	deadline := time.Now().Add(within)
	for {
		n, ok := s.next(time.Until(deadline))
		if !ok {
			s.t.Fatal("stream ended while an event was expected")
		}
		if n.Action != "ping" {
			return n
		}
	}
}

func TestWSPingsWithinASecondAndAHalf(t *testing.T) {
	d := startDaemon(t, daemonOptions{})
	start := time.Now()
	ws := dialWS(t, d, "", nil)
	for i := range 2 {
		n := ws.next(1500 * time.Millisecond)
		if n.Action != "ping" {
			t.Fatalf("message %d: %+v, want a ping", i, n)
		}
		for _, k := range []string{"cpu_usage_percent", "memory_usage_percent"} {
			v, ok := n.Event[k].(float64)
			if !ok || v < 0 || v > 100 {
				t.Fatalf("ping %s = %v", k, n.Event[k])
			}
		}
		if n.ProjectID != "" || n.Sequence != 0 {
			t.Fatalf("a ping carries no project or sequence: %+v", n)
		}
	}
	// The first ping comes at once, the second after about a second idle.
	if el := time.Since(start); el < 900*time.Millisecond || el > 3*time.Second {
		t.Fatalf("two pings took %v", el)
	}
}

// A WebSocket client sees the events of projects other clients work on,
// in GNS3's shape plus their sequence.
func TestWSReceivesOtherClientsEvents(t *testing.T) {
	d := startDaemon(t, daemonOptions{})
	ws := dialWS(t, d, "", nil)
	id := d.createProject("theirs")
	created := ws.event(5 * time.Second)
	if created.Action != "labd.project.created" || created.ProjectID != id || created.Sequence == 0 {
		t.Fatalf("created: %+v", created)
	}
	if created.Event["project_id"] != id || created.Event["name"] != "theirs" {
		t.Fatalf("created event body: %v", created.Event)
	}
	d.do("POST", "/v2/compute/projects/"+id+"/ports/udp", "").expect(t, 201, "")
	port := ws.event(5 * time.Second)
	if port.Action != "labd.project.udp_port_allocated" || port.Sequence <= created.Sequence || port.Event["udp_port"] == nil {
		t.Fatalf("port: %+v", port)
	}
	d.do("DELETE", "/v2/compute/projects/"+id, "").expect(t, 204, "")
	if del := ws.event(5 * time.Second); del.Action != "labd.project.deleted" || del.ProjectID != id {
		t.Fatalf("deleted: %+v", del)
	}
}

// The v1 per-project stream: a ping first, the project's events in v1
// shapes, nothing of other projects, and the end of the stream after the
// project closes.
func TestV1StreamReceivesProjectEvents(t *testing.T) {
	d := startDaemon(t, daemonOptions{pingV1: 200 * time.Millisecond})
	id := d.createProject("watched")
	other := d.createProject("other")
	s := openStream(t, d.URL+"/v1/projects/"+id+"/notifications")
	if first, _ := s.next(2 * time.Second); first.Action != "ping" {
		t.Fatalf("first line %+v, want a ping", first)
	}
	d.do("PUT", "/v1/projects/"+other, `{"name": "not watched"}`).expect(t, 200, "")
	d.do("PUT", "/v1/projects/"+id, `{"name": "renamed"}`).expect(t, 200, "")
	up := s.event(5 * time.Second)
	if up.Action != "labd.project.updated" || up.ProjectID != id || up.Event["name"] != "renamed" {
		t.Fatalf("update %+v", up)
	}
	if up.Event["path"] == nil || up.Event["temporary"] != false {
		t.Fatalf("a v1 stream renders v1 projects: %v", up.Event)
	}
	// Idle: pings keep coming.
	if n, _ := s.next(2 * time.Second); n.Action != "ping" {
		t.Fatalf("idle line %+v", n)
	}
	d.do("POST", "/v1/projects/"+id+"/close", "").expect(t, 204, "")
	if cl := s.event(5 * time.Second); cl.Action != "labd.project.closed" {
		t.Fatalf("close %+v", cl)
	}
	select {
	case err := <-s.done:
		if !errors.Is(err, net.ErrClosed) && err.Error() != "EOF" {
			t.Logf("stream ended with %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the stream of a closed project did not end")
	}
	d.do("GET", "/v1/projects/"+id+"/notifications", "").expect(t, 404, "/v1/projects/{project_id}/notifications")
}

// GNS3 2.2 declares this route and answers 500; labd serves it.
func TestV2ProjectStream(t *testing.T) {
	d := startDaemon(t, daemonOptions{})
	id := d.createProject("p")
	s := openStream(t, d.URL+"/v2/compute/projects/"+id+"/notifications")
	d.do("PUT", "/v2/compute/projects/"+id, `{"variables": [{"name": "x", "value": "1"}]}`).expect(t, 200, "")
	n := s.event(5 * time.Second)
	if n.Action != "labd.project.updated" || n.Event["variables"] == nil || n.Event["path"] != nil {
		t.Fatalf("v2 stream event %+v", n)
	}
}

// wantMissed returns the sequences of the compute's events after since.
func (d *daemon) sequencesAfter(since uint64) []uint64 {
	d.t.Helper()
	var seqs []uint64
	if _, err := d.Env.Store.Load(d.t.Context(), events.ComputeFilter("test"), since+1, func(r events.Record) error {
		seqs = append(seqs, r.Seq)
		return nil
	}); err != nil {
		d.t.Fatal(err)
	}
	return seqs
}

// A client that reconnects with ?since= gets exactly what it missed, in
// order, then live events: from the hub's ring, and from a re-fold of the
// stream when it fell behind the ring.
func TestReconnectWithSinceReceivesExactlyWhatItMissed(t *testing.T) {
	for _, tc := range []struct {
		name string
		ring int
	}{{"ring", 1000}, {"refold", 2}} {
		t.Run(tc.name, func(t *testing.T) {
			d := startDaemon(t, daemonOptions{hubRing: tc.ring})
			ws := dialWS(t, d, "", nil)
			id := d.createProject("p")
			seen := ws.event(5 * time.Second).Sequence
			ws.c.Close(websocket.StatusNormalClosure, "")

			// Missed while away: events of this and of another project.
			d.do("PUT", "/v2/compute/projects/"+id, `{"variables": [{"name": "a"}]}`).expect(t, 200, "")
			d.do("POST", "/v2/compute/projects/"+id+"/ports/udp", "").expect(t, 201, "")
			d.do("POST", "/v2/compute/projects/"+id+"/files/f.txt", "x").expect(t, 201, "")
			other := d.createProject("q")
			d.do("POST", "/v2/compute/projects/"+other+"/ports/udp", "").expect(t, 201, "")
			d.do("POST", "/v2/compute/projects/"+id+"/close", "").expect(t, 204, "")
			want := d.sequencesAfter(seen)
			if len(want) != 6 {
				t.Fatalf("the test produced %d events, want 6", len(want))
			}
			eventually(t, 5*time.Second, func() error {
				if p := d.Hub.Position(); p < want[len(want)-1] {
					return fmt.Errorf("hub at %d", p)
				}
				return nil
			})

			back := dialWS(t, d, fmt.Sprintf("?since=%d", seen), nil)
			var got []uint64
			var actions []string
			for range want {
				n := back.event(5 * time.Second)
				got = append(got, n.Sequence)
				actions = append(actions, n.Action)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("after since=%d got %v, want %v (%v)", seen, got, want, actions)
			}
			wantActions := []string{"labd.project.updated", "labd.project.udp_port_allocated", "labd.project.file_written",
				"labd.project.created", "labd.project.udp_port_allocated", "labd.project.closed"}
			if !slices.Equal(actions, wantActions) {
				t.Fatalf("actions %v, want %v", actions, wantActions)
			}
			// Then live events, nothing twice.
			live := d.createProject("live")
			if n := back.event(5 * time.Second); n.ProjectID != live || n.Sequence <= want[len(want)-1] {
				t.Fatalf("live event after the backlog: %+v", n)
			}
		})
	}
}

// A client that does not keep up is cut off with a last message telling
// it where it stopped, instead of queueing without bound; reconnecting
// from there loses nothing.
func TestSlowClientIsDisconnectedAndCanResume(t *testing.T) {
	// The server's writes block while the test is still sending; a long
	// write timeout keeps a slow machine from cutting the connection
	// before the hub does.
	d := startDaemon(t, daemonOptions{hubBuffer: 4, maxBodyBytes: 1 << 20, streamWriteTimeout: 2 * time.Minute})
	id := d.createProject("big")
	// A tiny receive buffer and no reading: the server's writes block
	// after a few of these large notifications.
	small := &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return serr
	}}
	first := d.lastSeq()
	ws := dialWS(t, d, "", small)

	big := strings.Repeat("v", 200<<10)
	const updates = 30
	sent := time.Now()
	for i := range updates {
		body := fmt.Sprintf(`{"variables": [{"name": "n%d", "value": %q}]}`, i, big)
		d.do("PUT", "/v2/compute/projects/"+id, body).expect(t, 200, "")
	}
	t.Logf("%d updates sent in %v", updates, time.Since(sent))
	want := d.sequencesAfter(first)
	if len(want) != updates {
		t.Fatalf("%d events, want %d", len(want), updates)
	}

	// Now read: some events, then the disconnect notice, then the close.
	var got []uint64
	var last uint64
	for {
		n := ws.next(20 * time.Second)
		if n.Action == "ping" {
			continue
		}
		if n.Action == "labd.disconnected" {
			last = uint64(n.Event["last_sequence"].(float64))
			break
		}
		got = append(got, n.Sequence)
	}
	if len(got) == 0 || len(got) >= updates {
		t.Fatalf("a slow client received %d of %d events before being cut off", len(got), updates)
	}
	t.Logf("cut off after %d of %d events", len(got), updates)
	if last != got[len(got)-1] {
		t.Fatalf("disconnect says last_sequence %d, the last event received was %d", last, got[len(got)-1])
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, _, err := ws.c.Read(ctx); websocket.CloseStatus(err) != websocket.StatusTryAgainLater {
		t.Fatalf("after the notice: %v, want a 1013 close", err)
	}

	back := dialWS(t, d, fmt.Sprintf("?since=%d", last), nil)
	for len(got) < updates {
		got = append(got, back.event(10*time.Second).Sequence)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("events before and after the reconnect: %v, want %v", got, want)
	}
}

func TestStreamsRefuseBadSince(t *testing.T) {
	d := startDaemon(t, daemonOptions{})
	id := d.createProject("p")
	for _, path := range []string{
		"/v2/compute/notifications/ws?since=abc",
		"/v2/compute/notifications/ws?since=999999",
		"/v1/projects/" + id + "/notifications?since=-1",
		"/v2/compute/projects/" + id + "/notifications?since=1&since=2",
	} {
		r := d.do("GET", path, "")
		if r.Status != 400 {
			t.Fatalf("%s: %d %s", path, r.Status, r.Body)
		}
		keys(t, r.object(t), "message", "status")
	}
}
