package actors

import (
	"labd/actors/cloud"
	"labd/actors/ethswitch"
	"labd/actors/hub"
	"labd/actors/kind"
	"labd/actors/qemu"
	"labd/actors/vpcs"
	"labd/replay"
)

// The driver registry: the one place that names the node kinds, in the
// order capabilities list them. Adding a kind is a package implementing
// kind.Driver, one line here and one in the HTTP route table. The kinds
// this host cannot run say why in GNS3's words where GNS3 has them
// (gns3server/compute/<module>), labd's where it has none (IOU) or where
// GNS3's would send the user the wrong way (NAT: GNS3 needs libvirt's
// virbr0, labd will not).
func newDrivers(cfg *Config) []kind.Driver {
	return []kind.Driver{
		vpcs.Driver{Path: cfg.VPCSPath},
		qemu.Driver{Images: cfg.Images, Finder: cfg.QEMU, Options: cfg.QEMUOptions, ShutdownTimeout: cfg.QEMUShutdownTimeout},
		ethswitch.Driver{},
		hub.Driver{},
		cloud.Driver{Interfaces: cfg.CloudInterfaces},
		kind.Missing(kind.Info{Kind: "nat", Title: "NAT"}, "NAT nodes are not available in labd yet"),
		kind.Missing(kind.Info{Kind: "docker", Title: "Docker"}, "Can't connect to Docker daemon"),
		kind.Missing(kind.Info{Kind: "dynamips", Title: "Dynamips"}, "Could not find Dynamips"),
		kind.Missing(kind.Info{Kind: "iou", Title: "IOU"}, "IOU is not available: labd does not run IOU images"),
		kind.Missing(kind.Info{Kind: "virtualbox", Title: "VirtualBox"}, "Could not find VBoxManage"),
		kind.Missing(kind.Info{Kind: "vmware", Title: "VMware"}, "VMware is not installed (vmware or vmplayer executable could not be found in $PATH)"),
		kind.Missing(kind.Info{Kind: "traceng", Title: "TraceNG"}, "Sorry, TraceNG can only run on Windows"),
		kind.Missing(kind.Info{Kind: "frame_relay_switch", Title: "Frame Relay switch"}, "Could not find Dynamips"),
		kind.Missing(kind.Info{Kind: "atm_switch", Title: "ATM switch"}, "Could not find Dynamips"),
	}
}

// driver returns the driver of a kind, nil for a kind labd does not know.
func (c *Config) driver(k string) kind.Driver {
	for _, d := range c.drivers {
		if d.Info().Kind == k {
			return d
		}
	}
	return nil
}

// takesMACOffset reports whether nodes of a kind take a MAC offset.
func (c *Config) takesMACOffset(k string) bool {
	d := c.driver(k)
	return d != nil && d.Info().MACOffset
}

// kindOf is a node's kind, "" when it has no history.
func kindOf(n *replay.Node) string {
	if n == nil {
		return ""
	}
	return n.Kind
}

// Kinds describes every node kind labd knows, runnable here or not.
func (c *Client) Kinds() []kind.Info {
	out := make([]kind.Info, len(c.cfg.drivers))
	for i, d := range c.cfg.drivers {
		out[i] = d.Info()
	}
	return out
}

// Available reports why this host cannot run a kind now (ErrConflict),
// nil when it can; ErrNotFound for a kind labd does not know.
func (c *Client) Available(k string) error {
	d := c.cfg.driver(k)
	if d == nil {
		return NotFound("labd has no node type %q", k)
	}
	return d.Available()
}

// Ports are the ports of a node of a kind with the properties props;
// known is false for a kind labd does not know (audit).
func Ports(k string, props []byte) (ports []kind.Port, known bool) {
	for _, d := range newDrivers(&Config{}) {
		if d.Info().Kind == k {
			return d.Ports(props), true
		}
	}
	return nil, false
}
