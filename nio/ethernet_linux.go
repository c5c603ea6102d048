package nio

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// OpenEthernet opens a raw AF_PACKET socket on host interface
// cfg.Interface and returns a bridge between it and the port's link:
// every frame the interface receives goes to the link, every frame from
// the link is sent out of the interface, as ubridge's add_nio_linux_raw
// does for GNS3. The interface is put in promiscuous mode while the
// bridge is open, so that frames to the lab's own MAC addresses arrive.
//
// No frame sent out of the interface reaches the link: the kernel never
// hands a packet socket back what it sent itself, and the socket drops
// the frames of type PACKET_OUTGOING, which the host's own stack (or
// another capture tool) sends out of the interface. So a lab does not
// see the host's own traffic this way, as with GNS3; a TAP is the way to
// reach the host.
func OpenEthernet(cfg HostConfig) (*Bridge, error) {
	name := cfg.Interface
	if err := CheckInterfaceName(name); err != nil {
		return nil, fmt.Errorf("bridge %s: ethernet: %w", cfg.Name, err)
	}
	index, err := ifIndex(name)
	if err != nil {
		return nil, fmt.Errorf("bridge %s: ethernet: %w", cfg.Name, err)
	}
	fd, err := packetSocket(index)
	if err != nil {
		return nil, fmt.Errorf("bridge %s: ethernet %s: %w", cfg.Name, name, err)
	}
	// recvmmsg and sendmmsg work on packet sockets; a message without an
	// address goes out of the bound interface.
	return openDeviceBridge(cfg, fd, "ethernet", recvmmsg, nil)
}

// packetSocket returns a non-blocking AF_PACKET socket bound to interface
// index for every protocol, promiscuous, that does not receive outgoing
// frames.
func packetSocket(index int) (int, error) {
	// Protocol 0 receives nothing until bind, so no frame of another
	// interface, or an outgoing one, slips in before the filter is set.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err := preparePacketSocket(fd, index); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

func preparePacketSocket(fd, index int) error {
	// The kernel drops outgoing frames before they are queued: with
	// PACKET_IGNORE_OUTGOING (Linux 4.20) before they are even cloned, and
	// by the filter on every kernel (so the option's error is ignored).
	unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1)
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, noOutgoing()); err != nil {
		return fmt.Errorf("filter: %w", err)
	}
	for _, opt := range []int{unix.SO_RCVBUF, unix.SO_SNDBUF} {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, opt, sockBufSize); err != nil {
			return err
		}
	}
	mreq := unix.PacketMreq{Ifindex: int32(index), Type: unix.PACKET_MR_PROMISC}
	if err := unix.SetsockoptPacketMreq(fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &mreq); err != nil {
		return fmt.Errorf("promiscuous mode: %w", err)
	}
	return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: index})
}

// noOutgoing returns a socket filter that drops frames of type
// PACKET_OUTGOING and keeps the others whole.
func noOutgoing() *unix.SockFprog {
	prog, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadExtension{Num: bpf.ExtType},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.PACKET_OUTGOING, SkipTrue: 1},
		bpf.RetConstant{Val: ^uint32(0)},
		bpf.RetConstant{Val: 0},
	})
	if err != nil {
		panic(err) // the program is a constant
	}
	filter := make([]unix.SockFilter, len(prog))
	for i, ins := range prog {
		filter[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	return &unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
}

// htons converts a 16-bit number to network byte order, as sockaddr_ll's
// protocol wants it.
func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}
