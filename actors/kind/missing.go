package kind

import "encoding/json"

// Missing is the driver of a kind this host cannot run: its routes exist,
// and every create is refused with why (GNS3's words where GNS3 has them).
func Missing(info Info, why string) Driver { return missing{info: info, why: why} }

type missing struct {
	info Info
	why  string
}

func (m missing) Info() Info                                { return m.info }
func (m missing) Available() error                          { return Conflict("%s", m.why) }
func (m missing) Settle(Node, any) (json.RawMessage, error) { return nil, m.Available() }
func (m missing) Ports(json.RawMessage) []Port              { return nil }
func (m missing) Prepare(*Node, Node, any) error            { return nil }
func (m missing) Launch(Host, Node) (Run, error)            { return nil, m.Available() }
func (m missing) Adopt(Host, Node, Record) (Run, error)     { return nil, m.Available() }
