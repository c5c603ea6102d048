package qemu

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Tunnel is the local UDP tunnel of one adapter: QEMU's socket netdev
// sends to Bridge and receives on Node, both on 127.0.0.1.
type Tunnel struct {
	Node, Bridge int
}

// Run holds what a start decides besides the configuration: the resolved
// binary and images, ports and sockets.
type Run struct {
	Binary string
	Name   string
	NodeID string
	// Images are the resolved paths of the configured images, by GNS3's
	// property name ("hda_disk_image", "cdrom_image", "kernel_image"...);
	// a linked clone's disk is its overlay.
	Images map[string]string
	// Console is the internal telnet port of the serial console, or the
	// VNC/SPICE port, depending on the console type.
	Console int
	// ConsoleHost is the address QEMU serves VNC and SPICE on (labd's
	// console address); empty means 127.0.0.1. The serial console's
	// internal port is always on 127.0.0.1, behind labd's proxy.
	ConsoleHost string
	// QMP is the path of the QMP socket labd controls QEMU through.
	QMP string
	// Tunnels has one entry per adapter.
	Tunnels []Tunnel
	// VNCPassword turns on the VNC console's password authentication
	// (the password is set over QMP once QEMU runs).
	VNCPassword bool
	// LoadVM restores the saved state (on_close save_vm_state).
	LoadVM bool
	// BootCD boots this run from the CD image in Images["cdrom_image"]
	// (a start's own CD, Danube Cloud's cdimage): always, or only for
	// the first boot with BootCDOnce (-boot once=d: a reset boots the
	// disks again).
	BootCD, BootCDOnce bool
	// Accel is the -machine accel= value; empty means Accel().
	Accel string
	// Vars are the values of GNS3's variables in options (%vm-name%...).
	Vars map[string]string
	// Options decides which of the configuration's extra options may
	// run; the zero value is labd's allowlist.
	Options OptionPolicy
}

// Sandbox is the -sandbox argument of every QEMU labd starts: QEMU's
// seccomp filter, which kills QEMU if it tries to fork or exec, regain
// privileges or change its scheduling, so that not even an option an
// operator allowed can run a program.
const Sandbox = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"

// Accel returns the acceleration to ask QEMU for on this host: kvm:tcg
// (KVM when it works, TCG otherwise) when the CPU has hardware
// virtualisation and /dev/kvm exists, tcg otherwise. A /dev/kvm without
// vmx or svm (a paravirtual KVM module in a guest) accepts QEMU and then
// hangs a stock kernel, so it is not trusted.
func Accel() string {
	if _, err := os.Stat("/dev/kvm"); err != nil {
		return "tcg"
	}
	info, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "tcg"
	}
	for f := range strings.FieldsSeq(string(info)) {
		if f == "vmx" || f == "svm" {
			return "kvm:tcg"
		}
	}
	return "tcg"
}

// SavedState is the name of the snapshot save_vm_state writes, GNS3's.
const SavedState = "GNS3_SAVED_STATE"

// Args returns QEMU's arguments for a start, in GNS3 2.2's order (its
// _build_command), with labd's differences: acceleration is asked as
// -machine accel= (see Accel), the monitor is a QMP socket, every
// adapter's socket netdev points at labd's bridge, the extra options are
// those r.Options allows (checked again after the variables are
// substituted), and the last option is the sandbox.
func Args(c Config, r Run) ([]string, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if len(r.Tunnels) != c.Adapters {
		return nil, fmt.Errorf("qemu: %d tunnels for %d adapters", len(r.Tunnels), c.Adapters)
	}
	extra, err := ParseOptions(c.Options)
	if err != nil {
		return nil, err
	}
	extra = Expand(extra, r.Vars)
	if err := r.Options.CheckParsed(extra); err != nil {
		return nil, err
	}
	a := []string{"-name", r.Name, "-m", strconv.Itoa(c.RAM) + "M", "-smp", "cpus=" + strconv.Itoa(c.CPUs) + ",sockets=1"}
	if !setsAccel(extra) {
		accel := r.Accel
		if accel == "" {
			accel = Accel()
		}
		a = append(a, "-machine", "accel="+accel)
	}
	switch {
	case r.BootCD && r.BootCDOnce:
		a = append(a, "-boot", "order="+c.BootPriority+",once=d")
	case r.BootCD:
		a = append(a, "-boot", "order=d")
	default:
		a = append(a, "-boot", "order="+c.BootPriority)
	}
	if p := r.Images["bios_image"]; p != "" {
		a = append(a, "-bios", p)
	}
	if p := r.Images["cdrom_image"]; p != "" {
		a = append(a, "-cdrom", p)
	}
	for i, name := range []string{"hda", "hdb", "hdc", "hdd"} {
		p := r.Images[name+"_disk_image"]
		if p == "" {
			continue
		}
		a = append(a, diskArgs(i, p, c.disks()[name].Interface)...)
	}
	if p := r.Images["initrd"]; p != "" {
		a = append(a, "-initrd", p)
	}
	if p := r.Images["kernel_image"]; p != "" {
		a = append(a, "-kernel", p)
	}
	if c.KernelCommandLine != "" {
		a = append(a, "-append", c.KernelCommandLine)
	}
	if !has(extra, "uuid") {
		a = append(a, "-uuid", r.NodeID)
	}
	host := r.ConsoleHost
	if host == "" {
		host = "127.0.0.1"
	}
	switch c.ConsoleType {
	case "telnet":
		a = append(a, "-serial", "telnet:127.0.0.1:"+strconv.Itoa(r.Console)+",server=on,wait=off")
	case "vnc":
		vnc := host + ":" + strconv.Itoa(r.Console-5900)
		if r.VNCPassword {
			// The password itself goes over QMP, never on the command line.
			vnc += ",password=on"
		}
		a = append(a, "-vnc", vnc)
	case "spice", "spice+agent":
		a = append(a, "-spice", "addr="+host+",port="+strconv.Itoa(r.Console)+",disable-ticketing=on", "-vga", "qxl")
	}
	if r.QMP != "" {
		a = append(a, "-qmp", "unix:"+escapeComma(r.QMP)+",server=on,wait=off")
	}
	a = append(a, "-net", "none")
	for n, t := range r.Tunnels {
		model, mac := c.AdapterType, c.adapterMAC(n, r.NodeID)
		for _, ca := range c.CustomAdapters {
			if ca.AdapterNumber == n {
				if ca.AdapterType != "" {
					model = ca.AdapterType
				}
				if ca.MACAddress != "" {
					mac = ca.MACAddress
				}
			}
		}
		id := "gns3-" + strconv.Itoa(n)
		a = append(a,
			"-device", model+",mac="+mac+",netdev="+id,
			"-netdev", "socket,id="+id+",udp=127.0.0.1:"+strconv.Itoa(t.Bridge)+",localaddr=127.0.0.1:"+strconv.Itoa(t.Node))
	}
	if r.LoadVM {
		a = append(a, "-loadvm", SavedState)
	}
	if c.ConsoleType == "telnet" && !has(extra, "display", "nographic") {
		a = append(a, "-display", "none")
	}
	a = append(a, Words(extra)...)
	return append(a, "-sandbox", Sandbox), nil
}

// diskArgs returns the arguments of disk index i on interface iface, as
// GNS3 writes them.
func diskArgs(i int, path, iface string) []string {
	idx := strconv.Itoa(i)
	file := "file=" + escapeComma(path)
	switch iface {
	case "sata":
		return []string{"-device", "ahci,id=ahci" + idx,
			"-drive", file + ",if=none,id=drive" + idx + ",index=" + idx + ",media=disk",
			"-device", "ide-hd,drive=drive" + idx + ",bus=ahci" + idx + ".0,id=drive" + idx}
	case "nvme":
		return []string{"-drive", file + ",if=none,id=drive" + idx + ",index=" + idx + ",media=disk",
			"-device", "nvme,drive=drive" + idx + ",serial=" + idx}
	case "scsi":
		return []string{"-device", "virtio-scsi-pci,id=scsi" + idx,
			"-drive", file + ",if=none,id=drive" + idx + ",index=" + idx + ",media=disk",
			"-device", "scsi-hd,drive=drive" + idx}
	case "none":
		iface = "ide" // GNS3's default interface is a disk on IDE
	}
	return []string{"-drive", file + ",if=" + iface + ",index=" + idx + ",media=disk,id=drive" + idx}
}

// escapeComma doubles commas, QEMU's escape inside option values.
func escapeComma(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// adapterMAC returns the MAC address of adapter n: the configured base,
// or GNS3's 0c:<node id bytes>:00:00, plus n.
func (c Config) adapterMAC(n int, nodeID string) string {
	base := c.MACAddress
	if base == "" {
		base = DefaultMAC(nodeID)
	}
	var b [6]byte
	for i, part := range strings.Split(base, ":") {
		v, _ := strconv.ParseUint(part, 16, 8)
		b[i] = byte(v)
	}
	// Adding n to the last two bytes, as GNS3's int arithmetic on the
	// address does for any sane adapter count.
	low := int(b[4])<<8 | int(b[5]) + n
	b[4], b[5] = byte(low>>8), byte(low)
	return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4], b[5])
}

// DefaultMAC is GNS3's base MAC address of a node: 0c, then the node id's
// hex digits 2-8, then 00:00.
func DefaultMAC(nodeID string) string {
	h := strings.ReplaceAll(nodeID, "-", "")
	if len(h) < 8 {
		h += "00000000"
	}
	return "0c:" + h[2:4] + ":" + h[4:6] + ":" + h[6:8] + ":00:00"
}
