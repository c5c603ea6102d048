package nio

import (
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Batch geometry. A slot holds the largest possible UDP payload, so a
// datagram is never truncated; a batch of batchSize slots is what one
// recvmmsg or sendmmsg call moves at most.
const (
	batchSize = 64
	slotSize  = 65535
)

// batch is one preallocated set of receive and send headers over
// batchSize slot buffers. A direction borrows a batch from batchPool when
// its socket becomes readable and gives it back before it parks, so idle
// links hold no buffers at all.
//
// Frames to send are listed in siov, in order; pack groups them into send
// messages, several frames per message when UDP GSO can carry them.
type batch struct {
	slots []byte         // batchSize*slotSize bytes; slot i is slots[i*slotSize:][:slotSize]
	recv  []unix.Mmsghdr // one per slot, each with its own iovec over its slot
	riov  []unix.Iovec
	siov  []unix.Iovec   // the frames to send
	send  []unix.Mmsghdr // the messages pack built over siov
	ctrl  []byte         // one UDP_SEGMENT control message per send message
	segs  []int          // frames in each send message
	first []int          // index in siov of each send message's first frame

	// shared has bit i set when frame siov[i] is another batch's buffer
	// that other ports send too (a fabric floods it without copying): a
	// filter that modifies frames must work on a copy (own).
	shared uint64
}

// Size of one UDP_SEGMENT control message (a uint16 payload).
var segCmsgSpace = unix.CmsgSpace(2)

// GSO limits: frames per message, and bytes per message (the largest UDP
// payload over IPv4).
const (
	maxSegments = 64
	maxGSOBytes = 65507
)

// newBatch returns a batch with receive slots; newSendBatch one that only
// sends frames held elsewhere.
func newBatch() *batch {
	bt := newSendBatch()
	bt.slots = make([]byte, batchSize*slotSize)
	bt.recv = make([]unix.Mmsghdr, batchSize)
	bt.riov = make([]unix.Iovec, batchSize)
	for i := range batchSize {
		bt.riov[i].Base = &bt.slots[i*slotSize]
		bt.riov[i].SetLen(slotSize)
		bt.recv[i].Hdr.Iov = &bt.riov[i]
		bt.recv[i].Hdr.SetIovlen(1)
	}
	return bt
}

func newSendBatch() *batch {
	return &batch{
		siov:  make([]unix.Iovec, batchSize),
		send:  make([]unix.Mmsghdr, batchSize),
		ctrl:  make([]byte, batchSize*segCmsgSpace),
		segs:  make([]int, batchSize),
		first: make([]int, batchSize),
	}
}

// own copies frame siov[i] into slot i and points siov[i] at the copy,
// which the caller may then modify. Only a batch with slots can own, and
// slot i must be free: a fabric puts the frames it rewrites for a port in
// the slot of their own index, so slot i is either frame i's already or
// unused.
func (bt *batch) own(i int) []byte {
	dst := bt.slots[i*slotSize:][:bt.siov[i].Len]
	copy(dst, unsafe.Slice(bt.siov[i].Base, bt.siov[i].Len))
	bt.siov[i].Base = firstByte(dst)
	bt.shared &^= 1 << i
	return dst
}

// frame returns frame siov[i].
func (bt *batch) frame(i int) []byte { return unsafe.Slice(bt.siov[i].Base, bt.siov[i].Len) }

// resetRecv clears the per-call output fields of the first n receive
// headers so the next recvmmsg starts clean.
func (bt *batch) resetRecv(n int) {
	for i := range n {
		bt.recv[i].Hdr.Flags = 0
		bt.recv[i].Len = 0
	}
}

// pack turns frames siov[from:k] into send messages starting at send[msg]
// and returns the index after the last message. With gso, a run of
// equal-sized frames (the last may be shorter) becomes one message with a
// UDP_SEGMENT control message: the kernel routes it once and splits it
// into the same datagrams, which saves most of the per-datagram cost of
// the send path. Since a message holds at least one frame, the messages
// never overtake the frames they are built from.
func (bt *batch) pack(from, k, msg int, gso bool) int {
	for i := from; i < k; msg++ {
		size := bt.siov[i].Len
		j := i + 1
		if gso && size > 0 {
			total := size
			for j < k && j-i < maxSegments {
				next := bt.siov[j].Len
				if next == 0 || next > size || total+next > maxGSOBytes {
					break
				}
				total += next
				j++
				if next < size {
					break // a shorter frame can only end a run
				}
			}
		}
		m := &bt.send[msg]
		m.Hdr.Iov = &bt.siov[i]
		m.Hdr.SetIovlen(j - i)
		if j-i > 1 {
			ctrl := bt.ctrl[msg*segCmsgSpace : (msg+1)*segCmsgSpace]
			h := (*unix.Cmsghdr)(unsafe.Pointer(&ctrl[0]))
			h.Level = unix.SOL_UDP
			h.Type = unix.UDP_SEGMENT
			h.SetLen(unix.CmsgLen(2))
			*(*uint16)(unsafe.Pointer(&ctrl[unix.CmsgLen(0)])) = uint16(size)
			m.Hdr.Control = &ctrl[0]
			m.Hdr.SetControllen(segCmsgSpace)
		} else {
			m.Hdr.Control = nil
			m.Hdr.SetControllen(0)
		}
		bt.segs[msg] = j - i
		bt.first[msg] = i
		i = j
	}
	return msg
}

// batchPool shares batches between every direction of every bridge of the
// process. A plain mutex-guarded stack rather than sync.Pool: a batch is
// 4 MiB of address space whose pages stay faulted in, and sync.Pool would
// let the GC drop and later reallocate them.
//
// The pool is package state on purpose: it is a cache of memory, like
// sync.Pool, with no configuration and nothing to wire.
var batchPool pool

type pool struct {
	mu   sync.Mutex
	free []*batch
}

func (p *pool) get() *batch {
	p.mu.Lock()
	if n := len(p.free); n > 0 {
		bt := p.free[n-1]
		p.free[n-1] = nil
		p.free = p.free[:n-1]
		p.mu.Unlock()
		return bt
	}
	p.mu.Unlock()
	return newBatch()
}

func (p *pool) put(bt *batch) {
	p.mu.Lock()
	p.free = append(p.free, bt)
	p.mu.Unlock()
}

// rawSyscalls makes recvmmsg and sendmmsg raw system calls, which skip
// the scheduler's syscall entry and exit (and the sysmon wake-ups they
// cause): measured 10-15 % less relay CPU per packet. That is sound only
// because both calls never block (MSG_DONTWAIT on non-blocking sockets)
// and move at most batchSize datagrams, so the P is held for
// microseconds. A variable so that the benchmark can compare.
var rawSyscalls = true

// recvmmsg receives up to len(msgs) datagrams from the non-blocking socket
// fd without waiting.
func recvmmsg(fd uintptr, msgs []unix.Mmsghdr) (int, unix.Errno) {
	if rawSyscalls {
		n, _, errno := unix.RawSyscall6(unix.SYS_RECVMMSG, fd,
			uintptr(unsafe.Pointer(&msgs[0])), uintptr(len(msgs)),
			unix.MSG_DONTWAIT, 0, 0)
		if errno != 0 {
			return 0, errno
		}
		return int(n), 0
	}
	n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd,
		uintptr(unsafe.Pointer(&msgs[0])), uintptr(len(msgs)),
		unix.MSG_DONTWAIT, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), 0
}

// An mmsgFunc moves up to len(msgs) frames between fd and msgs without
// waiting, as recvmmsg and sendmmsg do, and returns how many it moved (or
// an error if it moved none). Each message holds one frame.
type mmsgFunc func(fd uintptr, msgs []unix.Mmsghdr) (int, unix.Errno)

// readDevice is recvmmsg for a TAP device, which is not a socket: one
// read(2) per frame until the batch is full or the device has no more.
func readDevice(fd uintptr, msgs []unix.Mmsghdr) (int, unix.Errno) {
	for i := range msgs {
		iov := msgs[i].Hdr.Iov
		n, errno := rawOrSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(iov.Base)), uintptr(iov.Len))
		if errno != 0 {
			if i > 0 {
				return i, 0 // the error (EAGAIN, mostly) comes back on the next call
			}
			return 0, errno
		}
		msgs[i].Len = uint32(n)
	}
	return len(msgs), 0
}

// writeDevice is sendmmsg for a TAP device: one writev(2) per message,
// each message being one frame (the device's sock never segments).
func writeDevice(fd uintptr, msgs []unix.Mmsghdr) (int, unix.Errno) {
	for i := range msgs {
		h := &msgs[i].Hdr
		n, errno := rawOrSyscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(h.Iov)), uintptr(h.Iovlen))
		if errno == unix.EIO {
			errno = unix.ENETDOWN // what a TAP that is down says: counted, not logged
		}
		if errno != 0 {
			if i > 0 {
				return i, 0
			}
			return 0, errno
		}
		msgs[i].Len = uint32(n)
	}
	return len(msgs), 0
}

// rawOrSyscall makes a three-argument system call that never blocks (a
// non-blocking fd), raw when rawSyscalls says so.
func rawOrSyscall(trap, a1, a2, a3 uintptr) (uintptr, unix.Errno) {
	var n uintptr
	var errno unix.Errno
	if rawSyscalls {
		n, _, errno = unix.RawSyscall(trap, a1, a2, a3)
	} else {
		n, _, errno = unix.Syscall(trap, a1, a2, a3)
	}
	return n, errno
}

// sendmmsg sends msgs on the connected socket fd without waiting and
// returns how many the kernel took. Like sendmmsg(2), it reports an error
// only when not even the first message could be sent.
func sendmmsg(fd uintptr, msgs []unix.Mmsghdr) (int, unix.Errno) {
	if rawSyscalls {
		n, _, errno := unix.RawSyscall6(unix.SYS_SENDMMSG, fd,
			uintptr(unsafe.Pointer(&msgs[0])), uintptr(len(msgs)),
			unix.MSG_DONTWAIT, 0, 0)
		if errno != 0 {
			return 0, errno
		}
		return int(n), 0
	}
	n, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, fd,
		uintptr(unsafe.Pointer(&msgs[0])), uintptr(len(msgs)),
		unix.MSG_DONTWAIT, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), 0
}

// sockBufSize is what the bridge asks for SO_RCVBUF and SO_SNDBUF (the
// kernel doubles it, capped by net.core.rmem_max/wmem_max). The default
// 208 KiB absorbs only 92-256 datagrams, which is where bursts are lost.
const sockBufSize = 1 << 20

// setSockopts prepares a bridge socket before bind: SO_REUSEADDR as
// ubridge does, and larger buffers.
func setSockopts(fd uintptr) error {
	s := int(fd)
	if err := unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return err
	}
	if err := unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_RCVBUF, sockBufSize); err != nil {
		return err
	}
	return unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_SNDBUF, sockBufSize)
}

// isPeerError reports errors that only mean the peer is not there (yet):
// an ICMP error from an earlier datagram, or no route. They are counted,
// not logged per packet.
func isPeerError(errno unix.Errno) bool {
	switch errno {
	case unix.ECONNREFUSED, unix.ENETUNREACH, unix.EHOSTUNREACH,
		unix.ENETDOWN, unix.EHOSTDOWN, unix.EINVAL:
		return true
	}
	return false
}

// isGSOError reports errors a segmented send gets when the route cannot
// segment (no checksum offload, segments larger than the path MTU).
func isGSOError(errno unix.Errno) bool {
	return errno == unix.EINVAL || errno == unix.EIO || errno == unix.EMSGSIZE
}

// isFullError reports errors that mean the socket cannot take more now.
func isFullError(errno unix.Errno) bool {
	return errno == unix.EAGAIN || errno == unix.ENOBUFS
}
