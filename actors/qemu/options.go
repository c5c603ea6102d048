package qemu

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// A node's extra options (GNS3's "options" property) are the one place a
// client writes QEMU's command line, and QEMU's command line can run
// programs (-incoming exec:), read and write any file (-chardev file,
// -fw_cfg file=, -serial file:, -pidfile, -D), open sockets (-qmp tcp:)
// and escape labd (-daemonize, -sandbox off). GNS3 refuses a short list of
// options; labd accepts only options it knows to be safe, with their
// sub-options checked one by one, and refuses everything else with a 400
// naming it. An operator can widen the list (--qemu-allow-option); what
// that risks is in SECURITY.md.

// Option is one QEMU option of a node's extra options.
type Option struct {
	// Name is the option's name without its dash or dashes: "smp".
	Name string
	// Word is the option as written: "-smp" or "--smp".
	Word string
	// Arg is the option's argument, when it takes one.
	Arg    string
	HasArg bool
}

// String is the option as a shell would read it back.
func (o Option) String() string {
	if !o.HasArg {
		return o.Word
	}
	return o.Word + " " + shellQuote(o.Arg)
}

func shellQuote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\n'\"\\$`") {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// ParseOptions splits an options string like a shell (SplitOptions) and
// groups its words into QEMU options, by QEMU's own table of which options
// take an argument. It refuses what QEMU would read in a way labd cannot
// check: a word that is not an option where one is due (QEMU takes it for
// a disk image), an option QEMU 7.2 does not have, an option without its
// argument.
func ParseOptions(s string) ([]Option, error) {
	words, err := SplitOptions(s)
	if err != nil {
		return nil, invalid("options: %v", err)
	}
	var opts []Option
	for i := 0; i < len(words); i++ {
		w := words[i]
		name, ok := optionName(w)
		if !ok {
			return nil, invalid("options: %q is not an option (QEMU would open it as a disk image)", w)
		}
		takesArg, known := qemuOptions[name]
		if !known {
			return nil, invalid("options: %s is not a QEMU option", w)
		}
		o := Option{Name: name, Word: w}
		if takesArg {
			if i+1 == len(words) {
				return nil, invalid("options: %s needs an argument", w)
			}
			i++
			o.Arg, o.HasArg = words[i], true
		}
		opts = append(opts, o)
	}
	return opts, nil
}

// optionName returns the name of an option word ("-smp" or "--smp").
func optionName(w string) (string, bool) {
	name, ok := strings.CutPrefix(w, "-")
	if !ok {
		return "", false
	}
	name = strings.TrimPrefix(name, "-")
	return name, name != ""
}

// Words returns options as QEMU's arguments.
func Words(opts []Option) []string {
	var out []string
	for _, o := range opts {
		out = append(out, o.Word)
		if o.HasArg {
			out = append(out, o.Arg)
		}
	}
	return out
}

// Expand substitutes GNS3's variables (%vm-name%, ...) in the options'
// arguments. Each value has its commas doubled, QEMU's escape, so that a
// node's name cannot add a sub-option; it cannot add an option either,
// since the words were split before.
func Expand(opts []Option, vars map[string]string) []Option {
	if len(vars) == 0 {
		return opts
	}
	var pairs []string
	for k, v := range vars {
		pairs = append(pairs, k, escapeComma(v))
	}
	r := strings.NewReplacer(pairs...)
	out := make([]Option, len(opts))
	for i, o := range opts {
		if o.HasArg {
			o.Arg = r.Replace(o.Arg)
		}
		out[i] = o
	}
	return out
}

// has reports whether opts hold an option of one of the names.
func has(opts []Option, names ...string) bool {
	return slices.ContainsFunc(opts, func(o Option) bool { return slices.Contains(names, o.Name) })
}

// setsAccel reports whether the options choose the accelerator
// themselves, so labd must not add its -machine accel=: QEMU refuses two
// ways of saying it.
func setsAccel(opts []Option) bool {
	for _, o := range opts {
		switch o.Name {
		case "accel", "enable-kvm":
			return true
		case "machine", "M":
			subs, err := subOptions(o.Arg, "type")
			if err == nil && slices.ContainsFunc(subs, func(s subOption) bool { return s.key == "accel" }) {
				return true
			}
		}
	}
	return false
}

// OptionPolicy decides which extra options a node may have: the options
// labd knows to be safe, each with its arguments checked, plus the options
// an operator allowed outright. The zero value is the allowlist alone.
type OptionPolicy struct {
	widened map[string]bool
}

// NewOptionPolicy returns the allowlist widened by names (QEMU option names
// without the dash), which are then accepted with any argument. A name
// QEMU does not have is an error.
func NewOptionPolicy(names ...string) (OptionPolicy, error) {
	p := OptionPolicy{widened: map[string]bool{}}
	for _, n := range names {
		n = strings.TrimLeft(strings.TrimSpace(n), "-")
		if _, ok := qemuOptions[n]; !ok {
			return OptionPolicy{}, fmt.Errorf("qemu: %q is not a QEMU option", n)
		}
		p.widened[n] = true
	}
	return p, nil
}

// Widened lists the options allowed outright, sorted.
func (p OptionPolicy) Widened() []string {
	var out []string
	for n := range p.widened {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Check parses options and refuses the first option the policy does not
// allow, naming it. Every error wraps ErrInvalid.
func (p OptionPolicy) Check(options string) error {
	opts, err := ParseOptions(options)
	if err != nil {
		return err
	}
	return p.CheckParsed(opts)
}

// CheckParsed is Check on options already parsed (and expanded).
func (p OptionPolicy) CheckParsed(opts []Option) error {
	for _, o := range opts {
		if p.widened[o.Name] {
			continue
		}
		if reason, refused := refusedOptions[o.Name]; refused {
			return invalid("Forbidden additional option: %s (%s)", o, reason)
		}
		check, ok := allowedOptions[o.Name]
		if !ok {
			return invalid("Forbidden additional option: %s (not on labd's list of safe QEMU options)", o)
		}
		if err := check(o.Arg); err != nil {
			return invalid("Forbidden additional option: %s (%v)", o, err)
		}
	}
	return nil
}

// argCheck checks an allowed option's argument.
type argCheck func(arg string) error

// flag is the check of an option that takes no argument.
func flag(string) error { return nil }

// The options labd accepts, each with the check of its argument. Each
// entry is something QEMU does inside the guest's machine: its CPUs, RAM,
// chipset, firmware tables, devices without a host backend. Nothing here
// names a host file, socket, program or account.
var allowedOptions = map[string]argCheck{
	"nographic":      flag,
	"enable-kvm":     flag,
	"nodefaults":     flag,
	"no-user-config": flag,
	"no-hpet":        flag,
	"no-acpi":        flag,
	"no-reboot":      flag,
	"no-shutdown":    flag,
	"no-fd-bootchk":  flag,
	"win2k-hack":     flag,
	"usb":            flag,
	"mem-prealloc":   flag,
	"snapshot":       flag,
	"full-screen":    flag,
	"S":              flag,

	"machine": keyval("type", machineKeys),
	"M":       keyval("type", machineKeys),
	"accel":   keyval("accel", accelKeys),
	"cpu":     cpuArg,
	"smp":     keyval("cpus", smpKeys),
	"m":       keyval("size", memKeys),
	"boot":    keyval("order", bootKeys),
	"rtc":     keyval("", rtcKeys),
	"icount":  keyval("shift", icountKeys),
	"smbios":  keyval("", smbiosKeys),
	"fw_cfg":  keyval("name", fwCfgKeys),
	"msg":     keyval("", msgKeys),
	"overcommit": keyval("", map[string]valueCheck{
		"mem-lock": oneOf("on", "off"), "cpu-pm": oneOf("on", "off"),
	}),
	"action": keyval("", map[string]valueCheck{
		"reboot":   oneOf("reset", "shutdown"),
		"shutdown": oneOf("poweroff", "pause"),
		"panic":    oneOf("pause", "shutdown", "exit-failure", "none"),
		"watchdog": oneOf("reset", "shutdown", "poweroff", "inject-nmi", "pause", "debug", "none"),
	}),
	"device":          deviceArg,
	"usbdevice":       whole(oneOf("tablet", "mouse", "keyboard", "wacom-tablet")),
	"vga":             whole(oneOf("std", "cirrus", "vmware", "qxl", "virtio", "none")),
	"soundhw":         whole(matching(`^[a-z0-9]+(,[a-z0-9]+)*$`)),
	"serial":          chardevArg,
	"parallel":        chardevArg,
	"display":         whole(oneOf("none")),
	"k":               whole(matching(`^[a-z]{2}(-[a-z]{2,3})?$`)),
	"uuid":            whole(matching(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)),
	"hdachs":          whole(matching(`^[0-9]+,[0-9]+,[0-9]+(,(none|lba|auto))?$`)),
	"watchdog":        whole(matching(`^[a-z0-9_-]+$`)),
	"watchdog-action": whole(oneOf("reset", "shutdown", "poweroff", "inject-nmi", "pause", "debug", "none")),
	"g":               whole(matching(`^[0-9]+x[0-9]+(x[0-9]+)?$`)),
	"rotate":          whole(oneOf("0", "90", "180", "270")),
}

// refusedOptions are QEMU options labd refuses with a reason the client
// should read; any other option off the allowlist is refused too.
var refusedOptions = map[string]string{
	"drive": "labd attaches the disks itself", "hda": "labd attaches the disks itself",
	"hdb": "labd attaches the disks itself", "hdc": "labd attaches the disks itself",
	"hdd": "labd attaches the disks itself", "blockdev": "labd attaches the disks itself",
	"cdrom": "use the cdrom_image property", "fda": "it opens a host file", "fdb": "it opens a host file",
	"sd": "it opens a host file", "pflash": "it opens a host file", "mtdblock": "it opens a host file",
	"netdev": "labd wires the network itself", "nic": "labd wires the network itself",
	"net":   "labd wires the network itself (-net tap runs scripts)",
	"fsdev": "it shares host files", "virtfs": "it shares host files",
	"incoming": "it can run a program or open a socket", "chardev": "it opens host files and sockets",
	"object": "it can open host files", "plugin": "it loads a host library",
	"sandbox": "labd sets QEMU's sandbox itself", "pidfile": "it writes a host file",
	"D": "it writes a host file", "d": "it floods the node's log", "trace": "it writes host files",
	"add-fd": "it hands QEMU a file descriptor", "mon": "it opens a monitor",
	"qmp": "it opens a monitor", "qmp-pretty": "it opens a monitor", "monitor": "it opens a monitor",
	"runas": "it changes the account QEMU runs as", "chroot": "it changes QEMU's root",
	"daemonize": "QEMU would leave labd's control", "readconfig": "it reads a host file",
	"L": "it names a host directory", "bios": "use the bios_image property",
	"kernel": "use the kernel_image property", "initrd": "use the initrd property",
	"append": "use the kernel_command_line property", "dtb": "it reads a host file",
	"option-rom": "it reads a host file", "mem-path": "it maps a host file",
	"loadvm": "labd restores saved states itself", "gdb": "it opens a debugger socket",
	"s": "it opens a debugger socket", "vnc": "labd serves the console", "spice": "labd serves the console",
	"set": "it can set any option", "global": "it can set any device property",
	"acpitable": "it reads host files", "semihosting": "it gives the guest host files",
	"semihosting-config": "it gives the guest host files", "tpmdev": "it opens host devices",
	"audiodev": "it can write host files", "dump-vmstate": "it writes a host file",
	"debugcon": "it opens a host file or socket", "qtest": "it opens a socket",
	"qtest-log": "it writes a host file", "iscsi": "it opens a network disk",
	"xen-domid": "labd runs no Xen guests", "xen-attach": "labd runs no Xen guests",
	"name": "labd names the node itself",
}

// valueCheck checks one sub-option's value.
type valueCheck func(v string) error

func oneOf(values ...string) valueCheck {
	return func(v string) error {
		if !slices.Contains(values, v) {
			return fmt.Errorf("%q is not one of %s", v, strings.Join(values, ", "))
		}
		return nil
	}
}

func matching(pattern string) valueCheck {
	re := regexp.MustCompile(pattern)
	return func(v string) error {
		if !re.MatchString(v) {
			return fmt.Errorf("%q is not a value labd accepts here", v)
		}
		return nil
	}
}

// any accepts any value: the sub-option is a string inside the guest
// (an SMBIOS product name, a fw_cfg string).
func anyValue(string) error { return nil }

var (
	simple  = matching(`^[A-Za-z0-9._:+-]*$`)
	number  = matching(`^[0-9]+$`)
	size    = matching(`^[0-9]+(\.[0-9]+)?[kKmMgGtT]?[bB]?$`)
	onOffV  = oneOf("on", "off", "yes", "no", "true", "false")
	anyText = valueCheck(anyValue)
)

// whole applies a value check to the whole argument.
func whole(check valueCheck) argCheck {
	return func(arg string) error { return check(arg) }
}

var machineKeys = map[string]valueCheck{
	"type": simple, "accel": matching(`^(kvm|tcg|xen|hax|whpx|hvf|nvmm)(:(kvm|tcg|xen|hax|whpx|hvf|nvmm))*$`),
	"kernel_irqchip": simple, "kernel-irqchip": simple, "vmport": simple, "dump-guest-core": onOffV,
	"mem-merge": onOffV, "usb": onOffV, "graphics": onOffV, "hpet": onOffV, "acpi": simple,
	"smm": simple, "pic": onOffV, "pit": onOffV, "sata": onOffV, "i8042": onOffV,
	"max-ram-below-4g": size, "smbios-entry-point-type": oneOf("32", "64"), "suppress-vmdesc": onOffV,
	"nvdimm": onOffV, "hmat": onOffV, "gic-version": simple, "highmem": onOffV, "secure": onOffV,
	"virtualization": onOffV, "iommu": simple, "ras": onOffV, "its": onOffV, "mte": onOffV,
	"default-bus-bypass-iommu": onOffV, "usb-bus": simple, "cap-hpt-max-page-size": simple,
}

var accelKeys = map[string]valueCheck{
	"accel": oneOf("kvm", "tcg", "xen", "hax", "whpx", "hvf", "nvmm"), "thread": oneOf("single", "multi"),
	"tb-size": number, "kernel-irqchip": simple, "kvm-shadow-mem": size, "split-wx": onOffV,
	"one-insn-per-tb": onOffV, "dirty-ring-size": number, "notify-vmexit": simple, "notify-window": number,
}

var smpKeys = map[string]valueCheck{
	"cpus": number, "maxcpus": number, "sockets": number, "dies": number, "clusters": number,
	"cores": number, "threads": number, "books": number, "drawers": number,
}

var memKeys = map[string]valueCheck{"size": size, "slots": number, "maxmem": size}

// bootKeys leave out splash=, a host file.
var bootKeys = map[string]valueCheck{
	"order": matching(`^[a-p]*$`), "once": matching(`^[a-p]*$`), "menu": onOffV,
	"splash-time": number, "reboot-timeout": matching(`^-?[0-9]+$`), "strict": onOffV,
}

var rtcKeys = map[string]valueCheck{
	"base": matching(`^[A-Za-z0-9:.-]+$`), "clock": oneOf("host", "rt", "vm"), "driftfix": oneOf("none", "slew"),
}

// icountKeys leave out rr=, rrfile= and rrsnapshot=: record and replay
// writes host files.
var icountKeys = map[string]valueCheck{
	"shift": matching(`^([0-9]+|auto)$`), "align": onOffV, "sleep": onOffV,
}

// smbiosKeys leave out file= and path=, host files.
var smbiosKeys = map[string]valueCheck{
	"type": number, "vendor": anyText, "version": anyText, "date": anyText, "release": anyText,
	"uefi": onOffV, "manufacturer": anyText, "product": anyText, "serial": anyText, "uuid": simple,
	"sku": anyText, "family": anyText, "asset": anyText, "location": anyText, "part": anyText,
	"speed": number, "sock_pfx": anyText, "max-speed": number, "current-speed": number,
	"processor-id": simple, "loc_pfx": anyText, "bank": anyText, "value": anyText,
	"designation": anyText, "kind": anyText, "instance": number, "pcidev": simple,
	"external_reference": anyText, "internal_reference": anyText, "connector_type": number, "port_type": number,
}

// fwCfgKeys leave out file=, a host file.
var fwCfgKeys = map[string]valueCheck{
	"name": matching(`^[A-Za-z0-9._/-]+$`), "string": anyText,
}

var msgKeys = map[string]valueCheck{"timestamp": onOffV, "guest-name": onOffV}

// keyval checks a QemuOpts argument: every sub-option's key must be one of
// keys and its value pass the key's check. implied is the key of a first
// element without '=' ("q35" in -machine q35); "" when the option has none.
func keyval(implied string, keys map[string]valueCheck) argCheck {
	return func(arg string) error {
		subs, err := subOptions(arg, implied)
		if err != nil {
			return err
		}
		for _, s := range subs {
			check, ok := keys[s.key]
			if !ok && s.bare {
				// "nofoo" is QemuOpts' foo=off.
				if k, isNo := strings.CutPrefix(s.key, "no"); isNo {
					check, ok = keys[k]
					s.value = "off"
				}
			}
			if !ok {
				return fmt.Errorf("sub-option %q is not one labd accepts", s.key)
			}
			if err := check(s.value); err != nil {
				return fmt.Errorf("%s: %v", s.key, err)
			}
		}
		return nil
	}
}

// subOption is one element of a QemuOpts argument.
type subOption struct {
	key, value string
	// bare is set for an element without '=' that is not the implied
	// key's value: a boolean, "on".
	bare bool
}

var keyRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// subOptions splits a QemuOpts argument as QEMU does: commas separate
// elements, ",," is a comma inside a value, an element is key=value or a
// bare key (a boolean, on); a first bare element is the value of the
// implied key when the option has one.
func subOptions(arg, implied string) ([]subOption, error) {
	if arg == "" {
		return nil, errors.New("empty argument")
	}
	var out []subOption
	for i, el := range splitElements(arg) {
		key, value, hasValue := strings.Cut(el, "=")
		s := subOption{key: key, value: value}
		switch {
		case !hasValue && i == 0 && implied != "":
			s = subOption{key: implied, value: el}
		case !hasValue:
			s.value, s.bare = "on", true
		}
		if !keyRE.MatchString(s.key) {
			return nil, fmt.Errorf("sub-option %q is not one labd accepts", s.key)
		}
		out = append(out, s)
	}
	return out, nil
}

// splitElements splits at single commas; ",," is a literal comma. Only
// values hold commas this way: a key ends at the first '=' or ','.
func splitElements(arg string) []string {
	var (
		out []string
		cur strings.Builder
	)
	for i := 0; i < len(arg); i++ {
		if arg[i] == ',' {
			if i+1 < len(arg) && arg[i+1] == ',' {
				cur.WriteByte(',')
				i++
				continue
			}
			out = append(out, cur.String())
			cur.Reset()
			continue
		}
		cur.WriteByte(arg[i])
	}
	return append(out, cur.String())
}

// cpuArg checks -cpu: a model, then features (+f, -f, f=v, f).
func cpuArg(arg string) error {
	model, features, _ := strings.Cut(arg, ",")
	if !cpuModelRE.MatchString(model) {
		return fmt.Errorf("CPU model %q is not one labd accepts", model)
	}
	if features == "" {
		return nil
	}
	for _, f := range strings.Split(features, ",") {
		if !cpuFeatureRE.MatchString(f) {
			return fmt.Errorf("CPU feature %q is not one labd accepts", f)
		}
	}
	return nil
}

var (
	cpuModelRE   = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)
	cpuFeatureRE = regexp.MustCompile(`^[+-]?[A-Za-z0-9._-]+(=[A-Za-z0-9._-]+)?$`)
	vcRE         = regexp.MustCompile(`^vc:[0-9]+C?x[0-9]+C?$`)
)

// The devices labd accepts: NICs, input, USB and PCI controllers, video,
// sound, watchdogs, the Apple SMC, entropy and balloon devices. None of
// them needs a host backend; the properties that would give one (a
// drive, a netdev, a chardev, a ROM file, a memory backend) are refused.
var allowedDevices = []string{
	"e1000", "e1000-82544gc", "e1000-82545em", "e1000e", "igb", "i82550", "i82551", "i82557a",
	"i82557b", "i82557c", "i82558a", "i82558b", "i82559a", "i82559b", "i82559c", "i82559er",
	"i82562", "i82801", "ne2k_pci", "ne2k_isa", "pcnet", "rtl8139", "virtio-net-pci",
	"virtio-net-pci-non-transitional", "virtio-net", "vmxnet3", "tulip", "usb-net",
	"usb-kbd", "usb-mouse", "usb-tablet", "usb-hub", "usb-ehci", "ich9-usb-ehci1",
	"ich9-usb-ehci2", "ich9-usb-uhci1", "ich9-usb-uhci2", "ich9-usb-uhci3", "ich9-usb-uhci4",
	"ich9-usb-uhci5", "ich9-usb-uhci6", "piix3-usb-uhci", "piix4-usb-uhci", "nec-usb-xhci",
	"qemu-xhci", "pci-ohci", "virtio-keyboard-pci", "virtio-mouse-pci", "virtio-tablet-pci",
	"isa-applesmc", "virtio-rng-pci", "virtio-balloon", "virtio-balloon-pci", "i6300esb",
	"ib700", "pvpanic", "pvpanic-pci", "VGA", "cirrus-vga", "qxl", "qxl-vga", "virtio-vga",
	"virtio-gpu-pci", "vmware-svga", "bochs-display", "secondary-vga", "ramfb",
	"intel-hda", "ich9-intel-hda", "hda-duplex", "hda-output", "hda-micro", "AC97", "ES1370",
	"sb16", "virtio-serial", "virtio-serial-pci", "pci-bridge", "pcie-root-port", "ioh3420",
	"x3130-upstream", "xio3130-downstream", "i82801b11-bridge", "pcie-pci-bridge",
	"virtio-scsi-pci", "ahci", "intel-iommu", "virtio-iommu-pci", "vmcoreinfo",
}

// deniedDeviceProperties give a device a host backend or a host file.
var deniedDeviceProperties = []string{
	"drive", "netdev", "chardev", "romfile", "file", "memdev", "rng", "iothread",
	"audiodev", "host", "fd", "vhostfd", "path", "sock", "socket", "backend",
}

// deviceArg checks -device: an allowed driver and no property that
// names a host resource. The JSON form (-device {...}) is refused: its
// driver does not parse as one.
func deviceArg(arg string) error {
	subs, err := subOptions(arg, "driver")
	if err != nil {
		return err
	}
	for _, s := range subs {
		switch {
		case s.key == "driver":
			if !slices.Contains(allowedDevices, s.value) {
				return fmt.Errorf("device %q is not one labd accepts", s.value)
			}
		case slices.Contains(deniedDeviceProperties, s.key):
			return fmt.Errorf("device property %q names a host resource", s.key)
		}
	}
	if len(subs) == 0 || subs[0].key != "driver" {
		return errors.New("a device needs its driver first")
	}
	return nil
}

// chardevArg checks -serial and -parallel: backends that stay inside
// QEMU's process (stdio, which labd points at the node's log and an empty
// stdin; a virtual console; nothing), with or without the monitor
// multiplexed on them. Files, pipes, sockets, host devices and programs
// are refused.
func chardevArg(arg string) error {
	backend := strings.TrimPrefix(arg, "mon:")
	switch {
	case slices.Contains([]string{"stdio", "null", "none", "vc", "pty", "msmouse"}, backend):
		return nil
	case vcRE.MatchString(backend):
		return nil
	}
	return fmt.Errorf("backend %q is not one labd accepts (stdio, null, none, vc, pty, msmouse)", arg)
}
