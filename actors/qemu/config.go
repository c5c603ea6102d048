package qemu

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Config is a QEMU node's configuration: the properties of GNS3 2.2's
// QEMU schema that labd keeps (paths of images are as the client gave
// them; the node driver resolves them).
type Config struct {
	Usage                           string          `json:"usage"`
	LinkedClone                     bool            `json:"linked_clone"`
	QemuPath                        string          `json:"qemu_path"`
	Platform                        string          `json:"platform"`
	ConsoleType                     string          `json:"console_type"`
	HDA                             Disk            `json:"hda"`
	HDB                             Disk            `json:"hdb"`
	HDC                             Disk            `json:"hdc"`
	HDD                             Disk            `json:"hdd"`
	CDROM                           string          `json:"cdrom_image"`
	BIOS                            string          `json:"bios_image"`
	Initrd                          string          `json:"initrd"`
	Kernel                          string          `json:"kernel_image"`
	KernelCommandLine               string          `json:"kernel_command_line"`
	BootPriority                    string          `json:"boot_priority"`
	RAM                             int             `json:"ram"`
	CPUs                            int             `json:"cpus"`
	Adapters                        int             `json:"adapters"`
	AdapterType                     string          `json:"adapter_type"`
	MACAddress                      string          `json:"mac_address"`
	LegacyNetworking                bool            `json:"legacy_networking"`
	ReplicateNetworkConnectionState bool            `json:"replicate_network_connection_state"`
	TPM                             bool            `json:"tpm"`
	UEFI                            bool            `json:"uefi"`
	CreateConfigDisk                bool            `json:"create_config_disk"`
	OnClose                         string          `json:"on_close"`
	CPUThrottling                   int             `json:"cpu_throttling"`
	ProcessPriority                 string          `json:"process_priority"`
	Options                         string          `json:"options"`
	CustomAdapters                  []CustomAdapter `json:"custom_adapters"`
	// MD5Sums are the checksums of the configured images, by property
	// name (ImageProperties), computed by labd when the images are set.
	MD5Sums map[string]string `json:"md5sums,omitempty"`
}

// Disk is one of the four hard disks.
type Disk struct {
	Image     string `json:"image"`
	Interface string `json:"interface"`
}

// CustomAdapter overrides the model or MAC address of one adapter.
type CustomAdapter struct {
	AdapterNumber int    `json:"adapter_number"`
	PortName      string `json:"port_name,omitempty"`
	AdapterType   string `json:"adapter_type,omitempty"`
	MACAddress    string `json:"mac_address,omitempty"`
}

// The enums of GNS3's schema.
var (
	ConsoleTypes    = []string{"telnet", "vnc", "spice", "spice+agent", "none"}
	BootPriorities  = []string{"c", "d", "n", "cn", "cd", "dn", "dc", "nc", "nd"}
	OnCloseActions  = []string{"power_off", "shutdown_signal", "save_vm_state"}
	ProcessPriority = []string{"realtime", "very high", "high", "normal", "low", "very low", "null"}
	DiskInterfaces  = []string{"ide", "sata", "nvme", "scsi", "virtio", "sd", "mtd", "floppy", "pflash", "none"}
	Platforms       = []string{"aarch64", "alpha", "arm", "cris", "i386", "lm32", "m68k", "microblaze", "microblazeel", "mips", "mips64", "mips64el", "mipsel", "moxie", "or32", "ppc", "ppc64", "ppcemb", "s390x", "sh4", "sh4eb", "sparc", "sparc64", "tricore", "unicore32", "x86_64", "xtensa", "xtensaeb"}
)

// Default returns the configuration of a new node, with GNS3's compute
// defaults.
func Default() Config {
	return Config{
		LinkedClone: true, Platform: "x86_64", ConsoleType: "telnet",
		HDA: Disk{Interface: "none"}, HDB: Disk{Interface: "none"}, HDC: Disk{Interface: "none"}, HDD: Disk{Interface: "none"},
		BootPriority: "c", RAM: 256, CPUs: 1, Adapters: 1, AdapterType: "e1000",
		ReplicateNetworkConnectionState: true, OnClose: "power_off", ProcessPriority: "low",
		CustomAdapters: []CustomAdapter{},
	}
}

// Decode returns the configuration a node's recorded properties hold (the
// JSON of a Config that labd validated), with the defaults for whatever
// they leave out; the console type is the node's, set by the caller.
func Decode(props json.RawMessage) Config {
	c := Default()
	if len(props) > 0 {
		_ = json.Unmarshal(props, &c) // labd recorded it from a Config
	}
	return c
}

// ErrInvalid is matched by every error Validate returns.
var ErrInvalid = errors.New("qemu: invalid configuration")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

var macRE = regexp.MustCompile(`^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$`)

// Validate checks c against GNS3's schema and labd's rules: enums, ranges,
// MAC addresses, extra options that parse as QEMU options. Which options
// a node may have is an OptionPolicy's decision.
func (c Config) Validate() error {
	oneOf := func(field, v string, set []string) error {
		if !slices.Contains(set, v) {
			return invalid("%s %q is not one of %s", field, v, strings.Join(set, ", "))
		}
		return nil
	}
	inRange := func(field string, v, lo, hi int) error {
		if v < lo || v > hi {
			return invalid("%s %d is out of range %d..%d", field, v, lo, hi)
		}
		return nil
	}
	errs := []error{
		oneOf("console_type", c.ConsoleType, ConsoleTypes),
		oneOf("boot_priority", c.BootPriority, BootPriorities),
		oneOf("on_close", c.OnClose, OnCloseActions),
		oneOf("process_priority", c.ProcessPriority, ProcessPriority),
		inRange("ram", c.RAM, 1, 1<<20),
		inRange("cpus", c.CPUs, 1, 255),
		inRange("adapters", c.Adapters, 0, 275),
		inRange("cpu_throttling", c.CPUThrottling, 0, 800),
	}
	if c.Platform != "" {
		errs = append(errs, oneOf("platform", c.Platform, Platforms))
	}
	for name, d := range c.disks() {
		errs = append(errs, oneOf(name+"_disk_interface", d.Interface, DiskInterfaces))
	}
	if c.AdapterType == "" {
		errs = append(errs, invalid("adapter_type must not be empty"))
	}
	if c.MACAddress != "" && !macRE.MatchString(c.MACAddress) {
		errs = append(errs, invalid("mac_address %q is not a MAC address", c.MACAddress))
	}
	for _, ca := range c.CustomAdapters {
		if ca.AdapterNumber < 0 || ca.AdapterNumber >= max(c.Adapters, 1) {
			errs = append(errs, invalid("custom_adapters: adapter %d does not exist", ca.AdapterNumber))
		}
		if ca.MACAddress != "" && !macRE.MatchString(ca.MACAddress) {
			errs = append(errs, invalid("custom_adapters: mac_address %q is not a MAC address", ca.MACAddress))
		}
	}
	if c.CDROM != "" && c.HDC.Image != "" {
		errs = append(errs, invalid("cdrom_image and hdc_disk_image cannot both be set"))
	}
	if _, err := ParseOptions(c.Options); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// disks returns the four disks by GNS3's names.
func (c Config) disks() map[string]Disk {
	return map[string]Disk{"hda": c.HDA, "hdb": c.HDB, "hdc": c.HDC, "hdd": c.HDD}
}

// SplitOptions splits an options string the way a POSIX shell would split
// words (as GNS3's shlex.split does): quotes group, backslashes escape,
// nothing is expanded.
func SplitOptions(s string) ([]string, error) {
	var (
		out     []string
		cur     strings.Builder
		inWord  bool
		quote   rune
		escaped bool
	)
	for _, r := range s {
		switch {
		case escaped:
			// Inside double quotes a backslash escapes only " and \.
			if quote == '"' && r != '"' && r != '\\' {
				cur.WriteRune('\\')
			}
			cur.WriteRune(r)
			escaped, inWord = false, true
		case quote == '\'':
			if r == '\'' {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case quote == '"':
			switch r {
			case '"':
				quote = 0
			case '\\':
				escaped = true
			default:
				cur.WriteRune(r)
			}
		case r == '\\':
			escaped, inWord = true, true
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ' || r == '\t' || r == '\n' || r == '\r':
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, errors.New("unterminated quote")
	}
	if escaped {
		return nil, errors.New("trailing backslash")
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out, nil
}
