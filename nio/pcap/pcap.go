// Package pcap writes link captures as libpcap files (EN10MB) and streams
// them while they grow. It is pure Go (gopacket's pcapgo) and imports no
// other labd package.
//
// A Capture is fed by both directions of a bridge at once, so its writer is
// guarded by a mutex; it buffers and never flushes per packet: a
// background flusher writes the buffer out shortly after the last packet,
// and Follow wakes on those flushes.
package pcap

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

const (
	// snapLen is the largest frame a capture records whole: one UDP
	// datagram of the data plane.
	snapLen = 65535
	// bufferSize is the write buffer; a full buffer goes to the file at once.
	bufferSize = 64 << 10
	// flushDelay is how long after the first unflushed packet the flusher
	// writes the buffer out.
	flushDelay = 50 * time.Millisecond
	// followPoll is Follow's fallback poll, in case a wake-up is missed.
	followPoll = 500 * time.Millisecond
)

// Capture is a pcap file being written. Its methods are safe for
// concurrent use.
type Capture struct {
	path string
	kick chan struct{} // the buffer became dirty
	quit chan struct{} // stops the flusher
	done chan struct{} // closed when Close has finished
	wg   sync.WaitGroup

	mu      sync.Mutex // guards the following
	f       *os.File
	bw      *bufio.Writer
	pw      *pcapgo.Writer
	last    int64         // wall time of the last packet (Unix ns); timestamps never go back
	dirty   bool          // bw holds packets not yet flushed by the flusher
	closed  bool          // Close has started; writes are ignored
	err     error         // first write error; later packets are ignored
	flushed chan struct{} // closed (and replaced) after each flush
}

// Create creates or truncates the file at path and writes the pcap file
// header (EN10MB, 65535 bytes snap length) to it at once.
func Create(path string) (*Capture, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("pcap: %w", err)
	}
	return start(f, path, true)
}

// Resume continues the capture file at path, as a capture that a labd
// crash interrupted: a record cut short by the crash is dropped, and new
// frames follow the last whole one. A file without a whole header starts
// afresh.
func Resume(path string) (*Capture, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("pcap: %w", err)
	}
	end, err := wholeRecordsEnd(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("pcap %s: %w", path, err)
	}
	if err := f.Truncate(end); err != nil {
		f.Close()
		return nil, fmt.Errorf("pcap %s: %w", path, err)
	}
	if _, err := f.Seek(end, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("pcap %s: %w", path, err)
	}
	return start(f, path, end == 0)
}

// fileHeaderLen and recordHeaderLen are the sizes of a pcap file header
// and of a record header.
const fileHeaderLen, recordHeaderLen = 24, 16

// wholeRecordsEnd returns the offset just after the last whole record of
// a pcap file written by this package (little-endian, as pcapgo writes on
// amd64), 0 if it has no whole header.
func wholeRecordsEnd(f *os.File) (int64, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	r := bufio.NewReader(f)
	var hdr [fileHeaderLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil
	}
	end := int64(fileHeaderLen)
	var rec [recordHeaderLen]byte
	for {
		if _, err := io.ReadFull(r, rec[:]); err != nil {
			return end, nil
		}
		n := int64(binary.LittleEndian.Uint32(rec[8:12]))
		if n > snapLen {
			return end, nil // garbage after a torn write
		}
		if _, err := r.Discard(int(n)); err != nil {
			return end, nil
		}
		end += recordHeaderLen + n
	}
}

// start wraps an open file positioned at its end, writing the file header
// first when header is set.
func start(f *os.File, path string, header bool) (*Capture, error) {
	bw := bufio.NewWriterSize(f, bufferSize)
	pw := pcapgo.NewWriter(bw)
	if header {
		if err := pw.WriteFileHeader(snapLen, layers.LinkTypeEthernet); err != nil {
			f.Close()
			return nil, fmt.Errorf("pcap %s: header: %w", path, err)
		}
		if err := bw.Flush(); err != nil {
			f.Close()
			return nil, fmt.Errorf("pcap %s: header: %w", path, err)
		}
	}
	c := &Capture{
		path:    path,
		kick:    make(chan struct{}, 1),
		quit:    make(chan struct{}),
		done:    make(chan struct{}),
		f:       f,
		bw:      bw,
		pw:      pw,
		flushed: make(chan struct{}),
	}
	c.wg.Go(c.flusher)
	return c, nil
}

// Path returns the file's path.
func (c *Capture) Path() string { return c.path }

// Done is closed when Close has flushed and closed the file.
func (c *Capture) Done() <-chan struct{} { return c.done }

// WritePacket appends one frame, stamped ts (or the previous packet's
// time if ts is earlier, so the file stays ordered). It does not retain
// frame and does not allocate. After Close, or after a write error, it
// does nothing.
func (c *Capture) WritePacket(ts time.Time, frame []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.err != nil {
		return
	}
	// Compare wall times: the file records them, and two goroutines'
	// monotonic and wall readings may disagree on which came first.
	if ns := ts.UnixNano(); ns < c.last {
		ts = time.Unix(0, c.last)
	} else {
		c.last = ns
	}
	ci := gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(frame), Length: len(frame)}
	if len(frame) > snapLen {
		ci.CaptureLength = snapLen
		frame = frame[:snapLen]
	}
	if err := c.pw.WritePacket(ci, frame); err != nil {
		c.err = err
		return
	}
	if !c.dirty {
		c.dirty = true
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
}

// Close flushes and closes the file, stops the flusher and closes Done.
// It returns the first error writing the file met. Later calls return nil.
func (c *Capture) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		<-c.done
		return nil
	}
	c.closed = true
	err := c.err
	if ferr := c.bw.Flush(); err == nil {
		err = ferr
	}
	if cerr := c.f.Close(); err == nil {
		err = cerr
	}
	c.notifyLocked()
	c.mu.Unlock()

	close(c.quit)
	c.wg.Wait()
	close(c.done)
	if err != nil {
		return fmt.Errorf("pcap %s: %w", c.path, err)
	}
	return nil
}

// flusher writes the buffer out flushDelay after it became dirty, so a
// packet reaches the file (and followers) promptly without a write(2) per
// packet.
func (c *Capture) flusher() {
	t := time.NewTimer(flushDelay)
	t.Stop()
	for {
		select {
		case <-c.quit:
			return
		case <-c.kick:
		}
		t.Reset(flushDelay)
		select {
		case <-c.quit:
			t.Stop()
			return
		case <-t.C:
		}
		c.mu.Lock()
		if !c.closed {
			c.dirty = false
			if err := c.bw.Flush(); err != nil && c.err == nil {
				c.err = err
			}
			c.notifyLocked()
		}
		c.mu.Unlock()
	}
}

// notifyLocked wakes every follower waiting for a flush.
func (c *Capture) notifyLocked() {
	close(c.flushed)
	if !c.closed {
		c.flushed = make(chan struct{})
	}
}

// flushes returns a channel closed at the next flush.
func (c *Capture) flushes() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.flushed
}

// Follow copies the pcap file at path, from its start, to w, calling flush
// (if not nil) after each chunk so that, for example, a chunked HTTP
// response streams live. While c is open it keeps following the file,
// waking on c's flushes; once c is closed it copies the rest and returns
// nil. With a nil c it copies the file once. It returns ctx.Err() when ctx
// ends first.
func Follow(ctx context.Context, path string, c *Capture, w io.Writer, flush func()) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("pcap follow: %w", err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	poll := time.NewTicker(followPoll)
	defer poll.Stop()
	for {
		// Look at the capture before reading: if it was already closed,
		// the file is complete and this pass copies all of it.
		var flushed, done <-chan struct{}
		finished := true
		if c != nil {
			flushed, done = c.flushes(), c.done
			select {
			case <-done:
			default:
				finished = false
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := copyAvailable(f, w, buf, flush); err != nil {
			return fmt.Errorf("pcap follow %s: %w", path, err)
		}
		if finished {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-flushed:
		case <-done:
		case <-poll.C:
		}
	}
}

// copyAvailable copies f from its current offset to its current end.
func copyAvailable(f *os.File, w io.Writer, buf []byte, flush func()) error {
	for {
		n, err := f.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
			if flush != nil {
				flush()
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
