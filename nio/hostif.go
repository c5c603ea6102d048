package nio

import (
	"errors"
	"fmt"
	"log/slog"
	"os"

	"golang.org/x/sys/unix"
)

// A cloud node's ports reach the host's network: through a TAP device
// (OpenTAP), a host interface (OpenEthernet), or a plain UDP tunnel
// (OpenBridge). The first two are bridges whose node side is a file
// descriptor, like the tunnel's.

// HostConfig says which host interface a cloud port's bridge uses.
type HostConfig struct {
	// Name is used in logs and errors, e.g. "<node_id>-0" as GNS3 names
	// a cloud's bridges.
	Name string
	// Interface is the host interface: the TAP device, or the Ethernet
	// interface. CheckInterfaceName says what a valid one is.
	Interface string
	// Logger receives the bridge's rare warnings; nil discards them.
	Logger *slog.Logger
}

// ErrBadInterfaceName is matched by the error of CheckInterfaceName, and
// of every function here given a name it refuses.
var ErrBadInterfaceName = errors.New("nio: bad interface name")

// ErrNoInterface is matched by the error of opening a host interface
// that does not exist.
var ErrNoInterface = errors.New("nio: no such interface")

// maxIfNameLen is the longest Linux interface name (IFNAMSIZ - 1).
const maxIfNameLen = unix.IFNAMSIZ - 1

// CheckInterfaceName checks that name is a valid Linux interface name, as
// the kernel's dev_valid_name has it: 1 to 15 bytes, not "." or "..", no
// '/', ':' or white space. It also refuses NUL and other control bytes,
// which the kernel cannot be given or would only put in logs. Its errors
// match ErrBadInterfaceName.
func CheckInterfaceName(name string) error {
	bad := func(why string) error {
		return fmt.Errorf("%w %q: %s", ErrBadInterfaceName, name, why)
	}
	switch {
	case name == "":
		return bad("empty")
	case len(name) > maxIfNameLen:
		return bad(fmt.Sprintf("longer than %d bytes", maxIfNameLen))
	case name == "." || name == "..":
		return bad("not a name")
	}
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case c == '/' || c == ':':
			return bad(fmt.Sprintf("contains %q", c))
		case c <= ' ' || c == 0x7f:
			return bad("contains white space or a control character")
		}
	}
	return nil
}

// ifIndex returns the index of interface name, or an error matching
// ErrNoInterface.
func ifIndex(name string) (int, error) {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(s)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return 0, err
	}
	if err := unix.IoctlIfreq(s, unix.SIOCGIFINDEX, ifr); err != nil {
		if errors.Is(err, unix.ENODEV) {
			return 0, fmt.Errorf("%w %q", ErrNoInterface, name)
		}
		return 0, err
	}
	return int(ifr.Uint32()), nil
}

// setLinkUp brings interface name up, as `ip link set NAME up` does.
func setLinkUp(name string) error {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(s)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(s, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	if flags := ifr.Uint16(); flags&unix.IFF_UP == 0 {
		ifr.SetUint16(flags | unix.IFF_UP)
		return unix.IoctlIfreq(s, unix.SIOCSIFFLAGS, ifr)
	}
	return nil
}

// openDeviceBridge makes the bridge of a cloud port whose node side is
// the non-blocking file descriptor fd: frames are read from it with recv
// and written with write (nil: sendmmsg), one per message. It takes fd
// over, closing it on failure.
func openDeviceBridge(cfg HostConfig, fd int, what string, recv, write mmsgFunc) (*Bridge, error) {
	// A non-blocking fd makes a File the netpoller can wait on.
	f := os.NewFile(uintptr(fd), what+":"+cfg.Interface)
	raw, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("bridge %s: %s %s: %w", cfg.Name, what, cfg.Interface, err)
	}
	n := &fdNode{file: f}
	n.raw = raw
	n.write = write
	n.noGSO.Store(true) // UDP segmentation means nothing to a device
	b := newBridge(cfg.Name, cfg.Logger, nil, n)
	b.startNodeReader(raw, recv)
	return b, nil
}

// LinkExists reports whether the host has an interface called name.
func LinkExists(name string) bool {
	_, err := ifIndex(name)
	return err == nil
}
