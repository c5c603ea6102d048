package api

import (
	"labd/actors"
	"labd/actors/qemu"
	"labd/replay"
)

// qemuV2 is a QEMU node as the GNS3 2.2 compute shows it: the members of
// the seed's start reply, plus the 2.2 members a client can set
// (linked_clone, custom_adapters, tpm, uefi...), so that every property it
// sets reads back.
type qemuV2 struct {
	AdapterType                     string               `json:"adapter_type"`
	Adapters                        int                  `json:"adapters"`
	BIOSImage                       string               `json:"bios_image"`
	BIOSImageMD5Sum                 *string              `json:"bios_image_md5sum"`
	BootPriority                    string               `json:"boot_priority"`
	CDROMImage                      string               `json:"cdrom_image"`
	CDROMImageMD5Sum                *string              `json:"cdrom_image_md5sum"`
	CommandLine                     string               `json:"command_line"`
	Console                         *int                 `json:"console"`
	ConsoleType                     string               `json:"console_type"`
	CPUThrottling                   int                  `json:"cpu_throttling"`
	CPUs                            int                  `json:"cpus"`
	CreateConfigDisk                bool                 `json:"create_config_disk"`
	CustomAdapters                  []qemu.CustomAdapter `json:"custom_adapters"`
	HDADiskImage                    string               `json:"hda_disk_image"`
	HDADiskImageMD5Sum              *string              `json:"hda_disk_image_md5sum"`
	HDADiskInterface                string               `json:"hda_disk_interface"`
	HDBDiskImage                    string               `json:"hdb_disk_image"`
	HDBDiskImageMD5Sum              *string              `json:"hdb_disk_image_md5sum"`
	HDBDiskInterface                string               `json:"hdb_disk_interface"`
	HDCDiskImage                    string               `json:"hdc_disk_image"`
	HDCDiskImageMD5Sum              *string              `json:"hdc_disk_image_md5sum"`
	HDCDiskInterface                string               `json:"hdc_disk_interface"`
	HDDDiskImage                    string               `json:"hdd_disk_image"`
	HDDDiskImageMD5Sum              *string              `json:"hdd_disk_image_md5sum"`
	HDDDiskInterface                string               `json:"hdd_disk_interface"`
	Initrd                          string               `json:"initrd"`
	InitrdMD5Sum                    *string              `json:"initrd_md5sum"`
	KernelCommandLine               string               `json:"kernel_command_line"`
	KernelImage                     string               `json:"kernel_image"`
	KernelImageMD5Sum               *string              `json:"kernel_image_md5sum"`
	LegacyNetworking                bool                 `json:"legacy_networking"`
	LinkedClone                     bool                 `json:"linked_clone"`
	MACAddress                      string               `json:"mac_address"`
	Name                            string               `json:"name"`
	NodeDirectory                   string               `json:"node_directory"`
	NodeID                          string               `json:"node_id"`
	OnClose                         string               `json:"on_close"`
	Options                         string               `json:"options"`
	Platform                        string               `json:"platform"`
	ProcessPriority                 string               `json:"process_priority"`
	ProjectID                       string               `json:"project_id"`
	QemuPath                        string               `json:"qemu_path"`
	RAM                             int                  `json:"ram"`
	ReplicateNetworkConnectionState bool                 `json:"replicate_network_connection_state"`
	Status                          string               `json:"status"`
	TPM                             bool                 `json:"tpm"`
	UEFI                            bool                 `json:"uefi"`
	Usage                           string               `json:"usage"`
}

// qemuV1 is a QEMU VM as GNS3 1.5 shows it (the seed's members).
type qemuV1 struct {
	ACPIShutdown       bool    `json:"acpi_shutdown"`
	AdapterType        string  `json:"adapter_type"`
	Adapters           int     `json:"adapters"`
	BootPriority       string  `json:"boot_priority"`
	CDROMImage         string  `json:"cdrom_image"`
	CDROMImageMD5Sum   *string `json:"cdrom_image_md5sum"`
	Console            *int    `json:"console"`
	ConsoleType        string  `json:"console_type"`
	CPUThrottling      int     `json:"cpu_throttling"`
	CPUs               int     `json:"cpus"`
	HDADiskImage       string  `json:"hda_disk_image"`
	HDADiskImageMD5Sum *string `json:"hda_disk_image_md5sum"`
	HDADiskInterface   string  `json:"hda_disk_interface"`
	HDBDiskImage       string  `json:"hdb_disk_image"`
	HDBDiskImageMD5Sum *string `json:"hdb_disk_image_md5sum"`
	HDBDiskInterface   string  `json:"hdb_disk_interface"`
	HDCDiskImage       string  `json:"hdc_disk_image"`
	HDCDiskImageMD5Sum *string `json:"hdc_disk_image_md5sum"`
	HDCDiskInterface   string  `json:"hdc_disk_interface"`
	HDDDiskImage       string  `json:"hdd_disk_image"`
	HDDDiskImageMD5Sum *string `json:"hdd_disk_image_md5sum"`
	HDDDiskInterface   string  `json:"hdd_disk_interface"`
	Initrd             string  `json:"initrd"`
	InitrdMD5Sum       *string `json:"initrd_md5sum"`
	KernelCommandLine  string  `json:"kernel_command_line"`
	KernelImage        string  `json:"kernel_image"`
	KernelImageMD5Sum  *string `json:"kernel_image_md5sum"`
	LegacyNetworking   bool    `json:"legacy_networking"`
	MACAddress         string  `json:"mac_address"`
	Name               string  `json:"name"`
	Options            string  `json:"options"`
	Platform           string  `json:"platform"`
	ProcessPriority    string  `json:"process_priority"`
	ProjectID          string  `json:"project_id"`
	QemuPath           string  `json:"qemu_path"`
	RAM                int     `json:"ram"`
	Status             string  `json:"status"`
	VMDirectory        string  `json:"vm_directory"`
	VMID               string  `json:"vm_id"`
}

// qemuConfig returns a QEMU node's configuration as labd recorded it.
func qemuConfig(n *replay.Node) qemu.Config {
	c := qemu.Decode(n.Properties)
	c.ConsoleType = n.ConsoleType
	return c
}

// md5Of returns the checksum of an image property, null when none. It is
// read from the image store (a sidecar, cheap) so that an image uploaded
// again shows its new checksum, as in GNS3; the one recorded when the
// property was set stands in when the image cannot be read.
func (s *Server) md5Of(n *replay.Node, c qemu.Config, prop string) *string {
	name := c.Image(prop)
	if name == "" {
		return nil
	}
	if path, err := s.cfg.Images.Resolve(name, s.cfg.Client.ProjectDir(n.ProjectID)); err == nil {
		if sum, err := s.cfg.Images.MD5(path); err == nil {
			return &sum
		}
	}
	if sum, ok := c.MD5Sums[prop]; ok {
		return &sum
	}
	return nil
}

// baseMAC is the MAC address of adapter 0: the configured one, or GNS3's.
func baseMAC(c qemu.Config, nodeID string) string {
	if c.MACAddress != "" {
		return c.MACAddress // as the client wrote it, as GNS3 keeps it
	}
	return qemu.DefaultMAC(nodeID)
}

func (s *Server) v2QEMU(n *replay.Node) qemuV2 {
	c := qemuConfig(n)
	return qemuV2{
		AdapterType: c.AdapterType, Adapters: c.Adapters,
		BIOSImage: c.BIOS, BIOSImageMD5Sum: s.md5Of(n, c, "bios_image"),
		BootPriority: c.BootPriority,
		CDROMImage:   c.CDROM, CDROMImageMD5Sum: s.md5Of(n, c, "cdrom_image"),
		CommandLine: n.CommandLine, Console: consoleOf(n), ConsoleType: n.ConsoleType,
		CPUThrottling: c.CPUThrottling, CPUs: c.CPUs, CreateConfigDisk: c.CreateConfigDisk,
		CustomAdapters: c.CustomAdapters,
		HDADiskImage:   c.HDA.Image, HDADiskImageMD5Sum: s.md5Of(n, c, "hda_disk_image"), HDADiskInterface: c.HDA.Interface,
		HDBDiskImage: c.HDB.Image, HDBDiskImageMD5Sum: s.md5Of(n, c, "hdb_disk_image"), HDBDiskInterface: c.HDB.Interface,
		HDCDiskImage: c.HDC.Image, HDCDiskImageMD5Sum: s.md5Of(n, c, "hdc_disk_image"), HDCDiskInterface: c.HDC.Interface,
		HDDDiskImage: c.HDD.Image, HDDDiskImageMD5Sum: s.md5Of(n, c, "hdd_disk_image"), HDDDiskInterface: c.HDD.Interface,
		Initrd: c.Initrd, InitrdMD5Sum: s.md5Of(n, c, "initrd"),
		KernelCommandLine: c.KernelCommandLine,
		KernelImage:       c.Kernel, KernelImageMD5Sum: s.md5Of(n, c, "kernel_image"),
		LegacyNetworking: c.LegacyNetworking, LinkedClone: c.LinkedClone,
		MACAddress: baseMAC(c, n.ID), Name: n.Name,
		NodeDirectory: s.cfg.Client.NodeDir(n), NodeID: n.ID,
		OnClose: c.OnClose, Options: c.Options, Platform: c.Platform, ProcessPriority: c.ProcessPriority,
		ProjectID: n.ProjectID, QemuPath: c.QemuPath, RAM: c.RAM,
		ReplicateNetworkConnectionState: c.ReplicateNetworkConnectionState,
		Status:                          status(n), TPM: c.TPM, UEFI: c.UEFI, Usage: c.Usage,
	}
}

func (s *Server) v1QEMU(n *replay.Node) qemuV1 {
	v := s.v2QEMU(n)
	return qemuV1{
		ACPIShutdown: v.OnClose == "shutdown_signal",
		AdapterType:  v.AdapterType, Adapters: v.Adapters, BootPriority: v.BootPriority,
		CDROMImage: v.CDROMImage, CDROMImageMD5Sum: v.CDROMImageMD5Sum,
		Console: v.Console, ConsoleType: v.ConsoleType, CPUThrottling: v.CPUThrottling, CPUs: v.CPUs,
		HDADiskImage: v.HDADiskImage, HDADiskImageMD5Sum: v.HDADiskImageMD5Sum, HDADiskInterface: v.HDADiskInterface,
		HDBDiskImage: v.HDBDiskImage, HDBDiskImageMD5Sum: v.HDBDiskImageMD5Sum, HDBDiskInterface: v.HDBDiskInterface,
		HDCDiskImage: v.HDCDiskImage, HDCDiskImageMD5Sum: v.HDCDiskImageMD5Sum, HDCDiskInterface: v.HDCDiskInterface,
		HDDDiskImage: v.HDDDiskImage, HDDDiskImageMD5Sum: v.HDDDiskImageMD5Sum, HDDDiskInterface: v.HDDDiskInterface,
		Initrd: v.Initrd, InitrdMD5Sum: v.InitrdMD5Sum, KernelCommandLine: v.KernelCommandLine,
		KernelImage: v.KernelImage, KernelImageMD5Sum: v.KernelImageMD5Sum,
		LegacyNetworking: v.LegacyNetworking, MACAddress: v.MACAddress, Name: v.Name,
		Options: v.Options, Platform: v.Platform, ProcessPriority: v.ProcessPriority,
		ProjectID: v.ProjectID, QemuPath: v.QemuPath, RAM: v.RAM, Status: v.Status,
		VMDirectory: v.NodeDirectory, VMID: v.NodeID,
	}
}

// qemuProps are the members of a QEMU create or update besides the
// node's own. GNS3 1.5's acpi_shutdown is 2.2's on_close
// shutdown_signal; "platform": "null" is no platform, as GNS3 has it.
type qemuProps struct {
	qemu.Patch
	ACPIShutdown *bool `json:"acpi_shutdown"`
}

// patch checks the enum members the schema restricts before the node
// actor sees them, and returns the patch.
func (p qemuProps) patch(v apiVersion) (*qemu.Patch, error) {
	out := p.Patch
	if p.ACPIShutdown != nil {
		if v != v1 {
			return nil, badRequest("additional property \"acpi_shutdown\" is not allowed")
		}
		onClose := "power_off"
		if *p.ACPIShutdown {
			onClose = "shutdown_signal"
		}
		out.OnClose = &onClose
	}
	if out.Platform != nil && (*out.Platform == "null" || *out.Platform == "") {
		out.Platform = nil
	}
	if out.QemuPath != nil && *out.QemuPath == "" {
		return nil, badRequest("field \"qemu_path\" must not be empty")
	}
	return &out, nil
}

// qemuCreate is the body of a QEMU create on either version (v1 names
// the id vm_id, v2 node_id).
type qemuCreate struct {
	VMID        field[string] `json:"vm_id"`
	NodeID      field[string] `json:"node_id"`
	ConsoleType field[string] `json:"console_type"`
	nodeCreate
	qemuProps
}

// qemuUpdate is the body of a QEMU update on either version.
type qemuUpdate struct {
	nodeUpdate
	qemuProps
}

// qemuWire is QEMU's wire: one body type for both versions' creates and
// updates (1.5's members are 2.2's, acpi_shutdown aside), and a shape per
// version.
type qemuWire struct{}

func (qemuWire) create(v apiVersion, pid string, b []byte) (actors.CreateNode, error) {
	var body qemuCreate
	if err := decodeObject(b, &body); err != nil {
		return actors.CreateNode{}, err
	}
	id, what, other := body.NodeID, "Node", "vm_id"
	if v == v1 {
		id, what, other = body.VMID, "VM", "node_id"
	}
	if (v == v1 && body.NodeID.Set) || (v != v1 && body.VMID.Set) {
		return actors.CreateNode{}, badRequest("additional property %q is not allowed", other)
	}
	cmd, err := body.command(pid, id, what, qemu.Kind)
	if err != nil {
		return cmd, err
	}
	if err := createConsoleType(&cmd, body.ConsoleType, qemu.ConsoleTypes); err != nil {
		return cmd, err
	}
	cmd.Props, err = body.patch(v)
	return cmd, err
}

func (qemuWire) update(v apiVersion, ref actors.NodeRef, _ *replay.Node, b []byte) (actors.UpdateNode, error) {
	var body qemuUpdate
	if err := decodeObject(b, &body); err != nil {
		return actors.UpdateNode{}, err
	}
	cmd, err := body.command(ref, qemu.ConsoleTypes)
	if err != nil {
		return cmd, err
	}
	cmd.Props, err = body.patch(v)
	return cmd, err
}

func (qemuWire) render(s *Server, v apiVersion, n *replay.Node) any {
	if v == v1 {
		return s.v1QEMU(n)
	}
	return s.v2QEMU(n)
}
