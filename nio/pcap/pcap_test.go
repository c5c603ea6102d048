package pcap

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// frame is a fake Ethernet frame carrying seq after the header.
func frame(seq uint32, size int) []byte {
	f := make([]byte, size)
	for i := range f {
		f[i] = byte(i)
	}
	binary.BigEndian.PutUint32(f[14:], seq)
	return f
}

func create(t *testing.T) *Capture {
	t.Helper()
	c, err := Create(filepath.Join(t.TempDir(), "c.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readAll decodes a pcap stream and returns its frames.
func readAll(t *testing.T, r io.Reader) [][]byte {
	t.Helper()
	pr, err := pcapgo.NewReader(r)
	if err != nil {
		t.Fatal(err)
	}
	if pr.LinkType() != layers.LinkTypeEthernet || pr.Snaplen() != snapLen {
		t.Fatalf("link type %v, snaplen %d", pr.LinkType(), pr.Snaplen())
	}
	var out [][]byte
	var last time.Time
	for {
		data, ci, err := pr.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if ci.Timestamp.Before(last) {
			t.Fatalf("packet %d: timestamp goes back", len(out))
		}
		last = ci.Timestamp
		out = append(out, data)
	}
}

func TestCaptureWritesFile(t *testing.T) {
	c := create(t)
	// The header is on disk at once.
	if st, err := os.Stat(c.Path()); err != nil || st.Size() != 24 {
		t.Fatalf("after Create: %v, %v; want a 24-byte header", st, err)
	}
	now := time.Now()
	want := [][]byte{frame(0, 60), frame(1, 1514), frame(2, 65535), frame(3, 18)}
	for i, f := range want {
		// Timestamps that go back are clamped: the file stays ordered.
		c.WritePacket(now.Add(-time.Duration(i)*time.Second), f)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c.WritePacket(now, frame(9, 60)) // after Close: ignored
	select {
	case <-c.Done():
	default:
		t.Fatal("Done not closed after Close")
	}
	f, err := os.Open(c.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := readAll(t, f)
	if len(got) != len(want) {
		t.Fatalf("%d packets, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("packet %d differs", i)
		}
	}
}

func TestCaptureFlushesSoonAfterLastWrite(t *testing.T) {
	c := create(t)
	c.WritePacket(time.Now(), frame(0, 100))
	deadline := time.Now().Add(2 * time.Second)
	for {
		st, err := os.Stat(c.Path())
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() == 24+16+100 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("file is %d bytes 2s after a write: the flusher did not flush", st.Size())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCaptureConcurrentWriters(t *testing.T) {
	c := create(t)
	const writers, each = 4, 500
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				c.WritePacket(time.Now(), frame(uint32(w*each+i), 64+w))
			}
		})
	}
	wg.Wait()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(c.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got := readAll(t, f); len(got) != writers*each {
		t.Fatalf("%d packets, want %d", len(got), writers*each)
	}
}

func TestCaptureWritePacketDoesNotAllocate(t *testing.T) {
	c := create(t)
	f := frame(1, 512)
	now := time.Now()
	if a := testing.AllocsPerRun(1000, func() { c.WritePacket(now, f) }); a != 0 {
		t.Fatalf("%.1f allocations per WritePacket, want 0", a)
	}
}

// stream collects what Follow writes and lets the test wait for it.
type stream struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	flushes int
}

func (s *stream) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *stream) flush() {
	s.mu.Lock()
	s.flushes++
	s.mu.Unlock()
}

func (s *stream) size() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Len()
}

func (s *stream) bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.buf.Bytes())
}

func waitSize(t *testing.T, s *stream, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for s.size() < n {
		if time.Now().After(deadline) {
			t.Fatalf("follower has %d bytes after 5s, want %d", s.size(), n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestFollowStreamsLiveAndEndsWithCapture(t *testing.T) {
	c := create(t)
	c.WritePacket(time.Now(), frame(0, 100))
	s := &stream{}
	errc := make(chan error, 1)
	go func() { errc <- Follow(context.Background(), c.Path(), c, s, s.flush) }()

	waitSize(t, s, 24+16+100)
	// Written after Follow started: must arrive without closing the capture.
	c.WritePacket(time.Now(), frame(1, 200))
	waitSize(t, s, 24+16+100+16+200)
	select {
	case err := <-errc:
		t.Fatalf("Follow returned while the capture is open: %v", err)
	default:
	}

	c.WritePacket(time.Now(), frame(2, 300))
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("Follow: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Follow did not return after the capture closed")
	}
	got := readAll(t, bytes.NewReader(s.bytes()))
	if len(got) != 3 || !bytes.Equal(got[2], frame(2, 300)) {
		t.Fatalf("follower got %d packets, want 3 ending with the last one", len(got))
	}
	if s.flushes == 0 {
		t.Fatal("Follow never called flush")
	}
}

func TestFollowStopsWithContext(t *testing.T) {
	c := create(t)
	ctx, cancel := context.WithCancel(context.Background())
	s := &stream{}
	errc := make(chan error, 1)
	go func() { errc <- Follow(ctx, c.Path(), c, s, nil) }()
	waitSize(t, s, 24)
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Follow: %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Follow ignored its context")
	}
}

func TestFollowClosedFileCopiesOnce(t *testing.T) {
	c := create(t)
	c.WritePacket(time.Now(), frame(0, 100))
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for _, capture := range []*Capture{nil, c} {
		var out bytes.Buffer
		if err := Follow(context.Background(), c.Path(), capture, &out, nil); err != nil {
			t.Fatal(err)
		}
		if out.Len() != 24+16+100 {
			t.Fatalf("copied %d bytes, want %d", out.Len(), 24+16+100)
		}
	}
	if err := Follow(context.Background(), filepath.Join(t.TempDir(), "none"), nil, io.Discard, nil); err == nil {
		t.Fatal("Follow of a missing file succeeded")
	}
}

func TestCloseStopsFlusher(t *testing.T) {
	before := runtime.NumGoroutine()
	for range 20 {
		c, err := Create(filepath.Join(t.TempDir(), "c.pcap"))
		if err != nil {
			t.Fatal(err)
		}
		c.WritePacket(time.Now(), frame(0, 60))
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		if err := c.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	}
	// Goroutines of earlier tests may still be on their way out: wait a
	// little for the count to settle, but 20 leaked flushers never would.
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if after := runtime.NumGoroutine(); after > before {
		t.Fatalf("%d goroutines after closing 20 captures, %d before", after, before)
	}
}

// TestResumeContinuesAfterACrash: a capture a crash interrupted, its last
// record cut short, is resumed: the torn record is dropped, the whole ones
// stay, and new frames follow them in one readable file.
func TestResumeContinuesAfterACrash(t *testing.T) {
	c := create(t)
	now := time.Now()
	c.WritePacket(now, frame(0, 60))
	c.WritePacket(now, frame(1, 100))
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	// The crash: half of a third record reached the file.
	f, err := os.OpenFile(c.Path(), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	torn := []byte{1, 2, 3, 4, 0, 0, 0, 0, 200, 0, 0, 0, 200, 0, 0, 0, 9, 9, 9}
	if _, err := f.Write(torn); err != nil {
		t.Fatal(err)
	}
	f.Close()

	r, err := Resume(c.Path())
	if err != nil {
		t.Fatal(err)
	}
	r.WritePacket(now.Add(time.Second), frame(2, 70))
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(c.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	got := readAll(t, in)
	want := [][]byte{frame(0, 60), frame(1, 100), frame(2, 70)}
	if len(got) != len(want) {
		t.Fatalf("%d packets after resuming, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("packet %d differs", i)
		}
	}

	// A file that never got its header starts afresh.
	empty := filepath.Join(t.TempDir(), "empty.pcap")
	if err := os.WriteFile(empty, []byte{0xd4, 0xc3}, 0o644); err != nil {
		t.Fatal(err)
	}
	e, err := Resume(empty)
	if err != nil {
		t.Fatal(err)
	}
	e.WritePacket(now, frame(3, 60))
	e.Close()
	b, _ := os.ReadFile(empty)
	if got := readAll(t, bytes.NewReader(b)); len(got) != 1 {
		t.Fatalf("a headerless file resumed to %d packets, want 1", len(got))
	}
}
