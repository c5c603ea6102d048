package nio

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// tunDevice is the clone device TAP interfaces are opened through.
const tunDevice = "/dev/net/tun"

// OpenTAP opens TAP device cfg.Interface (IFF_TAP, no packet information
// header), creating it when it does not exist, brings it up and returns
// a bridge between it and the port's link: each frame the host sends on
// the TAP goes to the link, each frame from the link is written to it.
//
// A TAP it creates is persistent, so that it survives a crash of labd
// and the next labd opens it again (created false then); created says
// whether this call created it, and DeleteTAP removes it once its bridge
// is closed. An existing TAP that another process holds open cannot be
// opened (EBUSY), nor can an interface that is not a TAP (EINVAL).
func OpenTAP(cfg HostConfig) (b *Bridge, created bool, err error) {
	name := cfg.Interface
	if err := CheckInterfaceName(name); err != nil {
		return nil, false, fmt.Errorf("bridge %s: tap: %w", cfg.Name, err)
	}
	fd, created, err := attachTAP(name)
	if err != nil {
		return nil, false, fmt.Errorf("bridge %s: tap %s: %w", cfg.Name, name, err)
	}
	if created {
		if err := unix.IoctlSetInt(fd, unix.TUNSETPERSIST, 1); err != nil {
			unix.Close(fd) // not persistent: closing it removes it
			return nil, false, fmt.Errorf("bridge %s: tap %s: persist: %w", cfg.Name, name, err)
		}
	}
	if err := setLinkUp(name); err != nil {
		if created {
			unix.IoctlSetInt(fd, unix.TUNSETPERSIST, 0)
		}
		unix.Close(fd)
		return nil, false, fmt.Errorf("bridge %s: tap %s: up: %w", cfg.Name, name, err)
	}
	b, err = openDeviceBridge(cfg, fd, "tap", readDevice, writeDevice)
	if err != nil {
		return nil, false, err
	}
	return b, created, nil
}

// attachTAP opens the TAP device name, creating it if needed, and
// reports whether it created it: a TAP that exists without a process
// holding it is a persistent one, so one that is not persistent after the
// attach is new.
func attachTAP(name string) (fd int, created bool, err error) {
	fd, err = unix.Open(tunDevice, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, false, err
	}
	ifr, err := unix.NewIfreq(name)
	if err == nil {
		ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
		err = unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr)
	}
	if err == nil {
		err = unix.IoctlIfreq(fd, unix.TUNGETIFF, ifr)
	}
	if err != nil {
		unix.Close(fd)
		return -1, false, err
	}
	return fd, ifr.Uint16()&unix.IFF_PERSIST == 0, nil
}

// DeleteTAP removes TAP device name, which must be persistent (OpenTAP
// created it) and not open: close its bridge first. It is not an error if
// name does not exist; it is one if name is not a TAP, so it never removes
// any other kind of interface.
func DeleteTAP(name string) error {
	if err := CheckInterfaceName(name); err != nil {
		return fmt.Errorf("delete tap: %w", err)
	}
	if _, err := ifIndex(name); errors.Is(err, ErrNoInterface) {
		return nil
	}
	fd, _, err := attachTAP(name)
	if err != nil {
		return fmt.Errorf("delete tap %s: %w", name, err)
	}
	// Without persistence, the device goes with its last descriptor.
	err = unix.IoctlSetInt(fd, unix.TUNSETPERSIST, 0)
	unix.Close(fd)
	if err != nil {
		return fmt.Errorf("delete tap %s: %w", name, err)
	}
	return nil
}
