package console

import "bytes"

// tailSize is how much recent output a new client is replayed.
const tailSize = 2 << 10

// tail keeps the last tailSize bytes of the console output in a ring.
// The zero value is empty and ready to use.
type tail struct {
	buf  [tailSize]byte
	next int  // where the next byte goes
	full bool // the ring has wrapped: buf[next:] is the oldest data
}

// write records b as the newest output.
func (t *tail) write(b []byte) {
	if len(b) >= tailSize {
		copy(t.buf[:], b[len(b)-tailSize:])
		t.next, t.full = 0, true
		return
	}
	n := copy(t.buf[t.next:], b)
	copy(t.buf[:], b[n:])
	if t.next+len(b) >= tailSize {
		t.full = true
	}
	t.next = (t.next + len(b)) % tailSize
}

// appendTo appends the recorded output to dst, oldest first. Once the ring
// has wrapped, its oldest line is cut, so the replay starts after the first
// newline: a client never sees half a line or half an escape sequence
// (unless no newline is left at all).
func (t *tail) appendTo(dst []byte) []byte {
	if !t.full {
		return append(dst, t.buf[:t.next]...)
	}
	start := len(dst)
	dst = append(dst, t.buf[t.next:]...)
	dst = append(dst, t.buf[:t.next]...)
	if i := bytes.IndexByte(dst[start:], '\n'); i >= 0 {
		dst = append(dst[:start], dst[start+i+1:]...)
	}
	return dst
}
