package api_test

import (
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/google/uuid"

	"labd/events"
)

// projectEvents returns the events of one project aggregate.
func (d *daemon) projectEvents(id string) []events.Record {
	d.t.Helper()
	var recs []events.Record
	if _, err := d.Env.Store.Load(d.t.Context(), events.ProjectSubject("test", id), 1, func(r events.Record) error {
		recs = append(recs, r)
		return nil
	}); err != nil {
		d.t.Fatal(err)
	}
	return recs
}

// parallel runs f(i) for i in [0, n) at once and returns the statuses.
func parallel(n int, f func(i int) int) []int {
	statuses := make([]int, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			statuses[i] = f(i)
		})
	}
	close(start)
	wg.Wait()
	return statuses
}

func count(statuses []int, code int) int {
	n := 0
	for _, s := range statuses {
		if s == code {
			n++
		}
	}
	return n
}

// Fifty concurrent creates of one project id: v1 lets exactly one win and
// answers 409 to the others; v2 answers 201 to all with one project.
func TestConcurrentCreatesOfOneProject(t *testing.T) {
	d := startDaemon(t, daemonOptions{})
	for _, tc := range []struct {
		path      string
		ok, other int
		wantOK    int
	}{
		{"/v1/projects", 201, 409, 1},
		{"/v2/compute/projects", 201, 0, 50},
	} {
		t.Run(tc.path, func(t *testing.T) {
			id := uuid.NewString()
			statuses := parallel(50, func(i int) int {
				return doRequest(t, "POST", d.URL+tc.path, fmt.Sprintf(`{"name": "racer %d", "project_id": %q}`, i, id)).Status
			})
			if got := count(statuses, tc.ok); got != tc.wantOK {
				t.Fatalf("%d answers %d, want %d (all: %v)", got, tc.ok, tc.wantOK, statuses)
			}
			if tc.other != 0 && count(statuses, tc.other) != 50-tc.wantOK {
				t.Fatalf("statuses %v", statuses)
			}
			recs := d.projectEvents(id)
			if len(recs) != 1 || recs[0].Type != events.TypeProjectCreated {
				t.Fatalf("the stream holds %d events for the project, want one creation", len(recs))
			}
			n := 0
			for _, p := range d.do("GET", "/v2/compute/projects", "").array(t) {
				if p["project_id"] == id {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("%d projects with the id", n)
			}
		})
	}
}

// Concurrent updates and port allocations on one project, with reads in
// between: every acknowledged request is one event in the stream, none is
// lost, no port is handed out twice, and reads never fail.
func TestConcurrentUpdatesLoseNothing(t *testing.T) {
	d := startDaemon(t, daemonOptions{})
	id := d.createProject("busy")
	const writers, each = 20, 5
	var mu sync.Mutex
	names := map[string]bool{}
	ports := map[float64]bool{}
	var wg sync.WaitGroup
	errs := make(chan string, 3*writers*each)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				name := fmt.Sprintf("name-%d-%d", w, i)
				if r := doRequest(t, "PUT", d.URL+"/v1/projects/"+id, `{"name": "`+name+`"}`); r.Status != http.StatusOK {
					errs <- fmt.Sprintf("PUT: %d %s", r.Status, r.Body)
				} else {
					mu.Lock()
					names[name] = true
					mu.Unlock()
				}
			}
		})
		wg.Go(func() {
			for range each {
				r := doRequest(t, "POST", d.URL+"/v2/compute/projects/"+id+"/ports/udp", "")
				if r.Status != http.StatusCreated {
					errs <- fmt.Sprintf("ports: %d %s", r.Status, r.Body)
					continue
				}
				p := r.object(t)["udp_port"].(float64)
				mu.Lock()
				if ports[p] {
					errs <- fmt.Sprintf("port %v handed out twice", p)
				}
				ports[p] = true
				mu.Unlock()
			}
		})
		wg.Go(func() {
			for range each {
				if r := doRequest(t, "GET", d.URL+"/v2/compute/projects/"+id, ""); r.Status != http.StatusOK {
					errs <- fmt.Sprintf("GET: %d", r.Status)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if t.Failed() {
		return
	}

	recs := d.projectEvents(id)
	updated, allocated := map[string]int{}, map[int]int{}
	for _, r := range recs[1:] {
		switch e := r.Data.(type) {
		case events.ProjectUpdated:
			updated[e.Name]++
		case events.UDPPortAllocated:
			allocated[e.Port]++
		default:
			t.Fatalf("unexpected event %s", r.Type)
		}
	}
	if len(updated) != writers*each || len(allocated) != writers*each || len(recs) != 1+2*writers*each {
		t.Fatalf("stream: %d renames, %d ports, %d events; want %d, %d, %d",
			len(updated), len(allocated), len(recs), writers*each, writers*each, 1+2*writers*each)
	}
	for name := range names {
		if updated[name] != 1 {
			t.Fatalf("acknowledged rename %q is in the stream %d times", name, updated[name])
		}
	}
	for p := range ports {
		if allocated[int(p)] != 1 {
			t.Fatalf("acknowledged port %v is in the stream %d times", p, allocated[int(p)])
		}
	}
	// The state is the fold of that history: the last rename wins.
	var last string
	for _, r := range recs {
		if e, ok := r.Data.(events.ProjectUpdated); ok {
			last = e.Name
		}
	}
	if got := d.do("GET", "/v1/projects/"+id, "").object(t)["name"]; got != last {
		t.Fatalf("name %v, the stream's last rename is %q", got, last)
	}
	if used := d.Client.UDPPortsInUse(); len(used) != writers*each {
		t.Fatalf("%d ports in use, want %d", len(used), writers*each)
	}
}
