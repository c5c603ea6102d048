package cloud

import (
	"labd/actors/kind"
	"labd/nio"
)

// PortMapping is one port of a cloud, as GNS3's ports_mapping has it: a
// host interface ("ethernet"), a TAP device ("tap") or a UDP tunnel to any
// peer ("udp").
type PortMapping struct {
	Name       string `json:"name"`
	PortNumber int    `json:"port_number"`
	Type       string `json:"type"`
	// Interface names the host interface or TAP device.
	Interface string `json:"interface,omitempty"`
	// LPort, RHost and RPort are a udp port's tunnel.
	LPort int    `json:"lport,omitempty"`
	RHost string `json:"rhost,omitempty"`
	RPort int    `json:"rport,omitempty"`
}

// Properties are a cloud's own settings, as recorded.
type Properties struct {
	Ports                 []PortMapping `json:"ports_mapping"`
	RemoteConsoleHost     string        `json:"remote_console_host"`
	RemoteConsolePort     int           `json:"remote_console_port"`
	RemoteConsoleType     string        `json:"remote_console_type"`
	RemoteConsoleHTTPPath string        `json:"remote_console_http_path"`
}

// Patch is a create's or an update's change to a cloud. Nil members keep
// what is recorded (in a create: GNS3's defaults, and one ethernet port
// per host interface that is not special, as GNS3 does).
type Patch struct {
	Ports                 *[]PortMapping
	RemoteConsoleHost     *string
	RemoteConsolePort     *int
	RemoteConsoleType     *string
	RemoteConsoleHTTPPath *string
}

// Number and Label make a PortMapping a kind.MappedPort.
func (p PortMapping) Number() int   { return p.PortNumber }
func (p PortMapping) Label() string { return p.Name }

// Port types.
const (
	Ethernet = "ethernet"
	TAP      = "tap"
	UDP      = "udp"
)

// RemoteConsoleTypes are the console types a cloud's remote console may
// have (it only names a console elsewhere: labd serves none for a cloud).
var RemoteConsoleTypes = []string{"telnet", "vnc", "spice", "http", "https", "none"}

// check validates a port mapping: unique port numbers and names, a known
// type with the members it needs, interface names Linux accepts.
func check(ports []PortMapping) error {
	if err := kind.CheckMapping(ports); err != nil {
		return err
	}
	for _, p := range ports {
		switch p.Type {
		case Ethernet, TAP:
			if err := nio.CheckInterfaceName(p.Interface); err != nil {
				return kind.Invalid("ports_mapping: port %d: %v", p.PortNumber, err)
			}
			if p.LPort != 0 || p.RHost != "" || p.RPort != 0 {
				return kind.Invalid("ports_mapping: port %d is a %s port, which has no lport, rhost or rport", p.PortNumber, p.Type)
			}
		case UDP:
			switch {
			case p.LPort < 1 || p.LPort > 65535:
				return kind.Invalid("ports_mapping: port %d has lport %d, not between 1 and 65535", p.PortNumber, p.LPort)
			case p.RPort < 1 || p.RPort > 65535:
				return kind.Invalid("ports_mapping: port %d has rport %d, not between 1 and 65535", p.PortNumber, p.RPort)
			case p.RHost == "":
				return kind.Invalid("ports_mapping: port %d has no rhost", p.PortNumber)
			case p.Interface != "":
				return kind.Invalid("ports_mapping: port %d is a udp port, which has no interface", p.PortNumber)
			}
		default:
			return kind.Invalid("ports_mapping: port %d has type %q, not one of ethernet, tap, udp", p.PortNumber, p.Type)
		}
	}
	return nil
}
