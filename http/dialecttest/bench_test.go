package dialecttest_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"labd/actors"
	"labd/actors/qemu"
	"labd/http/danube"
	"labd/http/dialecttest"
	"labd/http/e24"
	"labd/http/nova"
	"labd/nio"
)

// BenchmarkDialectGet is one read of one VM through each VM dialect, on
// one daemon, 16 clients at a time over keep-alive HTTP on loopback: what
// a dialect costs over the snapshot it renders (credentials checked:
// Nova's token table, Danube's key, e24cloud's HMAC signature and X-Date).
func BenchmarkDialectGet(b *testing.B) {
	d := dialecttest.Start(b, dialecttest.Options{ComputeID: "bench",
		UDP: nio.PortRange{First: 16000, Last: 16999}, Consoles: nio.PortRange{First: 6800, Last: 6899}})
	pid := uuid.NewString()
	if _, _, err := d.Client.CreateProject(b.Context(), actors.CreateProject{ProjectID: pid, Name: "bench"}); err != nil {
		b.Fatal(err)
	}
	img, linked, ram, cpus := dialecttest.Image, true, 64, 1
	n, err := d.Client.CreateNode(b.Context(), actors.CreateNode{
		NodeRef: actors.NodeRef{ProjectID: pid, NodeID: uuid.NewString()}, Kind: qemu.Kind, Name: "vm1",
		ConsoleType: actors.ConsoleVNC, Props: &qemu.Patch{HDADiskImage: &img, LinkedClone: &linked, RAM: &ram, CPUs: &cpus},
	})
	if err != nil {
		b.Fatal(err)
	}
	serve := func(h http.Handler) string {
		srv := httptest.NewServer(h)
		b.Cleanup(srv.Close)
		return srv.URL
	}
	novaURL := serve(nova.New(nova.Config{Client: d.Client, Images: d.Images, Tokens: map[string]string{"tok": pid}, ComputeID: "bench"}))
	danubeURL := serve(danube.New(danube.Config{Client: d.Client, Images: d.Images, Keys: map[string]danube.Key{"key": {ID: 2, User: "u", Project: pid}}}))
	e24URL := serve(e24.New(e24.Config{Client: d.Client, Images: d.Images, Keys: map[string]e24.Key{"key": {Secret: "s", Project: pid}}, ComputeID: "bench"}))
	cases := []struct {
		name string
		req  func() *http.Request
	}{
		{"nova", func() *http.Request {
			r, _ := http.NewRequest("GET", novaURL+"/v2/"+pid+"/servers/"+n.ID, nil)
			r.Header.Set("X-Auth-Token", "tok")
			return r
		}},
		{"danube", func() *http.Request {
			r, _ := http.NewRequest("GET", danubeURL+"/api/vm/"+n.ID+"/status/", nil)
			r.Header.Set("ES-API-KEY", "key")
			return r
		}},
		{"e24", func() *http.Request {
			r, _ := http.NewRequest("GET", e24URL+"/v2/virtual-machines/"+n.ID, nil)
			date := time.Now().UTC().Format(http.TimeFormat)
			m := hmac.New(sha256.New, []byte("s"))
			m.Write([]byte("GET\n" + r.Host + "\n" + date + "\n" + r.URL.Path + "\n"))
			r.Header.Set("X-Date", date)
			r.Header.Set("Authorization", "key:"+base64.StdEncoding.EncodeToString(m.Sum(nil)))
			return r
		}},
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			var mu sync.Mutex
			var lat []time.Duration
			b.SetParallelism(8) // 16 clients on 2 cores
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				var mine []time.Duration
				for pb.Next() {
					start := time.Now()
					resp, err := client.Do(c.req())
					if err != nil {
						b.Error(err)
						return
					}
					body, err := io.ReadAll(resp.Body) // read to the end: the connection is reused
					resp.Body.Close()
					if err != nil || resp.StatusCode != 200 || bytes.Contains(body, []byte(`"success":false`)) {
						b.Errorf("%s: %d %s %v", c.name, resp.StatusCode, body, err)
						return
					}
					mine = append(mine, time.Since(start))
				}
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			})
			b.StopTimer()
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			if len(lat) > 0 {
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
				b.ReportMetric(float64(lat[len(lat)-1].Microseconds()), "max-µs")
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		})
	}
}
