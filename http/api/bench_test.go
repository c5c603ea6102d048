package api_test

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
)

// The HTTP benchmarks drive the whole daemon of harness_test.go (real
// embedded JetStream, notification hub, actor tree, API) over loopback
// HTTP, with benchClients requests in flight at all times.
//
// Durability: creates are measured with labd's default, an fsync after
// every event (sync=always), and with nats-server's relaxed default
// (sync=interval); reads do not touch JetStream.
//
// One op is one HTTP request: the loop hands one request at a time to the
// client goroutines through an unbuffered channel, so ns/op is the wall
// time per request at that concurrency (1/throughput), and B/op and
// allocs/op are per request, client and server together.

const benchClients = 16

// benchHTTPClient returns a client that keeps a connection per client
// goroutine alive between requests.
func benchHTTPClient(b *testing.B) *http.Client {
	tr := &http.Transport{
		Proxy:               nil,
		MaxIdleConns:        4 * benchClients,
		MaxIdleConnsPerHost: 4 * benchClients,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
	b.Cleanup(tr.CloseIdleConnections) // runs before the daemon's cleanups
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// benchHTTP runs the benchmark loop: request n is built by newReq and must
// answer status with a body containing the returned marker. It reports
// req/s and the p50 and p99 request latency.
func benchHTTP(b *testing.B, c *http.Client, status int, newReq func(n int) (*http.Request, string)) {
	work := make(chan int)
	lats := make([][]time.Duration, benchClients)
	var (
		wg      sync.WaitGroup
		failure atomic.Pointer[error]
	)
	fail := func(err error) { failure.CompareAndSwap(nil, &err) }
	for w := range benchClients {
		lats[w] = make([]time.Duration, 0, 4096)
		wg.Go(func() {
			for n := range work {
				req, marker := newReq(n)
				t0 := time.Now()
				resp, err := c.Do(req)
				if err != nil {
					fail(err)
					continue
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				lats[w] = append(lats[w], time.Since(t0))
				switch {
				case err != nil:
					fail(fmt.Errorf("%s %s: reading the body: %w", req.Method, req.URL.Path, err))
				case resp.StatusCode != status:
					fail(fmt.Errorf("%s %s: status %d, want %d; body %s", req.Method, req.URL.Path, resp.StatusCode, status, body))
				case !bytes.Contains(body, []byte(marker)):
					fail(fmt.Errorf("%s %s: body %s does not contain %q", req.Method, req.URL.Path, body, marker))
				}
			}
		})
	}
	start := time.Now()
	n := 0
	for b.Loop() {
		work <- n
		n++
		if failure.Load() != nil {
			break
		}
	}
	close(work)
	wg.Wait()
	elapsed := time.Since(start) // includes the last requests in flight
	if err := failure.Load(); err != nil {
		b.Fatal(*err)
	}
	all := slices.Concat(lats...)
	if len(all) != n {
		b.Fatalf("%d latencies for %d requests", len(all), n)
	}
	slices.Sort(all)
	b.ReportMetric(float64(n)/elapsed.Seconds(), "req/s")
	b.ReportMetric(float64(benchPercentile(all, 0.50))/1e3, "p50-µs")
	b.ReportMetric(float64(benchPercentile(all, 0.99))/1e3, "p99-µs")
}

// benchPercentile returns the nearest-rank q-quantile of sorted.
func benchPercentile(sorted []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// BenchmarkHTTPProjectCreate measures POST /v2/compute/projects of new
// projects (fresh name, random project_id): decode, the project actor's
// validate/decide/append (one event, acknowledged by JetStream), apply, the
// project directory effect, and the 201 reply.
func BenchmarkHTTPProjectCreate(b *testing.B) {
	for _, sync := range []bool{true, false} {
		name := "sync=always"
		if !sync {
			name = "sync=interval"
		}
		b.Run(name, func(b *testing.B) {
			d := startDaemon(b, daemonOptions{syncAlways: sync})
			c := benchHTTPClient(b)
			url := d.URL + "/v2/compute/projects"
			benchHTTP(b, c, http.StatusCreated, func(n int) (*http.Request, string) {
				id := uuid.NewString()
				body := fmt.Sprintf(`{"name":"bench-%d","project_id":%q}`, n, id)
				req, err := http.NewRequest("POST", url, strings.NewReader(body))
				if err != nil {
					panic(err)
				}
				return req, id
			})
		})
	}
}

// BenchmarkHTTPProjectGet measures GET /v2/compute/projects/{project_id}
// round-robin over 100 open projects: a read of the actors' published
// snapshot, no JetStream on the path.
func BenchmarkHTTPProjectGet(b *testing.B) {
	d := startDaemon(b, daemonOptions{})
	ids := make([]string, 100)
	for i := range ids {
		ids[i] = d.createProject(fmt.Sprintf("bench-%d", i))
	}
	c := benchHTTPClient(b)
	benchHTTP(b, c, http.StatusOK, func(n int) (*http.Request, string) {
		id := ids[n%len(ids)]
		req, err := http.NewRequest("GET", d.URL+"/v2/compute/projects/"+id, nil)
		if err != nil {
			panic(err)
		}
		return req, id
	})
}
