package qemu

// Patch is a create or an update of a QEMU node's properties, under GNS3's
// member names. A nil member leaves the property as it is, so a JSON null
// does too (GNS3 accepts null for most of them and keeps its default).
// The node-level members (name, console, console_type) are the node's,
// not the patch's.
type Patch struct {
	Usage                           *string          `json:"usage"`
	LinkedClone                     *bool            `json:"linked_clone"`
	QemuPath                        *string          `json:"qemu_path"`
	Platform                        *string          `json:"platform"`
	HDADiskImage                    *string          `json:"hda_disk_image"`
	HDADiskInterface                *string          `json:"hda_disk_interface"`
	HDBDiskImage                    *string          `json:"hdb_disk_image"`
	HDBDiskInterface                *string          `json:"hdb_disk_interface"`
	HDCDiskImage                    *string          `json:"hdc_disk_image"`
	HDCDiskInterface                *string          `json:"hdc_disk_interface"`
	HDDDiskImage                    *string          `json:"hdd_disk_image"`
	HDDDiskInterface                *string          `json:"hdd_disk_interface"`
	CDROMImage                      *string          `json:"cdrom_image"`
	BIOSImage                       *string          `json:"bios_image"`
	Initrd                          *string          `json:"initrd"`
	KernelImage                     *string          `json:"kernel_image"`
	KernelCommandLine               *string          `json:"kernel_command_line"`
	BootPriority                    *string          `json:"boot_priority"`
	RAM                             *int             `json:"ram"`
	CPUs                            *int             `json:"cpus"`
	Adapters                        *int             `json:"adapters"`
	AdapterType                     *string          `json:"adapter_type"`
	MACAddress                      *string          `json:"mac_address"`
	LegacyNetworking                *bool            `json:"legacy_networking"`
	ReplicateNetworkConnectionState *bool            `json:"replicate_network_connection_state"`
	TPM                             *bool            `json:"tpm"`
	UEFI                            *bool            `json:"uefi"`
	CreateConfigDisk                *bool            `json:"create_config_disk"`
	OnClose                         *string          `json:"on_close"`
	CPUThrottling                   *int             `json:"cpu_throttling"`
	ProcessPriority                 *string          `json:"process_priority"`
	Options                         *string          `json:"options"`
	CustomAdapters                  *[]CustomAdapter `json:"custom_adapters"`

	// The checksums clients send back are accepted and ignored: labd
	// computes them from the images.
	HDADiskImageMD5Sum *string `json:"hda_disk_image_md5sum"`
	HDBDiskImageMD5Sum *string `json:"hdb_disk_image_md5sum"`
	HDCDiskImageMD5Sum *string `json:"hdc_disk_image_md5sum"`
	HDDDiskImageMD5Sum *string `json:"hdd_disk_image_md5sum"`
	CDROMImageMD5Sum   *string `json:"cdrom_image_md5sum"`
	BIOSImageMD5Sum    *string `json:"bios_image_md5sum"`
	InitrdMD5Sum       *string `json:"initrd_md5sum"`
	KernelImageMD5Sum  *string `json:"kernel_image_md5sum"`
}

// Apply returns c with the patch's members set. The result is not
// validated: call Validate.
func (p Patch) Apply(c Config) Config {
	set := func(dst *string, v *string) {
		if v != nil {
			*dst = *v
		}
	}
	setInt := func(dst *int, v *int) {
		if v != nil {
			*dst = *v
		}
	}
	setBool := func(dst *bool, v *bool) {
		if v != nil {
			*dst = *v
		}
	}
	set(&c.Usage, p.Usage)
	setBool(&c.LinkedClone, p.LinkedClone)
	set(&c.QemuPath, p.QemuPath)
	set(&c.Platform, p.Platform)
	set(&c.HDA.Image, p.HDADiskImage)
	set(&c.HDA.Interface, p.HDADiskInterface)
	set(&c.HDB.Image, p.HDBDiskImage)
	set(&c.HDB.Interface, p.HDBDiskInterface)
	set(&c.HDC.Image, p.HDCDiskImage)
	set(&c.HDC.Interface, p.HDCDiskInterface)
	set(&c.HDD.Image, p.HDDDiskImage)
	set(&c.HDD.Interface, p.HDDDiskInterface)
	set(&c.CDROM, p.CDROMImage)
	set(&c.BIOS, p.BIOSImage)
	set(&c.Initrd, p.Initrd)
	set(&c.Kernel, p.KernelImage)
	set(&c.KernelCommandLine, p.KernelCommandLine)
	set(&c.BootPriority, p.BootPriority)
	setInt(&c.RAM, p.RAM)
	setInt(&c.CPUs, p.CPUs)
	setInt(&c.Adapters, p.Adapters)
	set(&c.AdapterType, p.AdapterType)
	set(&c.MACAddress, p.MACAddress)
	setBool(&c.LegacyNetworking, p.LegacyNetworking)
	setBool(&c.ReplicateNetworkConnectionState, p.ReplicateNetworkConnectionState)
	setBool(&c.TPM, p.TPM)
	setBool(&c.UEFI, p.UEFI)
	setBool(&c.CreateConfigDisk, p.CreateConfigDisk)
	set(&c.OnClose, p.OnClose)
	setInt(&c.CPUThrottling, p.CPUThrottling)
	set(&c.ProcessPriority, p.ProcessPriority)
	set(&c.Options, p.Options)
	if p.CustomAdapters != nil {
		c.CustomAdapters = append([]CustomAdapter{}, (*p.CustomAdapters)...)
	}
	return c
}

// ImageProperties are the properties that name image files, by GNS3's
// member names, in the order their checksums are shown.
var ImageProperties = []string{
	"hda_disk_image", "hdb_disk_image", "hdc_disk_image", "hdd_disk_image",
	"cdrom_image", "bios_image", "initrd", "kernel_image",
}

// Image returns the value of an image property (see ImageProperties).
func (c Config) Image(property string) string {
	switch property {
	case "hda_disk_image":
		return c.HDA.Image
	case "hdb_disk_image":
		return c.HDB.Image
	case "hdc_disk_image":
		return c.HDC.Image
	case "hdd_disk_image":
		return c.HDD.Image
	case "cdrom_image":
		return c.CDROM
	case "bios_image":
		return c.BIOS
	case "initrd":
		return c.Initrd
	case "kernel_image":
		return c.Kernel
	}
	return ""
}
