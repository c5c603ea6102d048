package console

// Telnet command bytes (RFC 854) and the options we negotiate (RFC 856,
// 857, 858).
const (
	telnetSE   = 240 // end of subnegotiation
	telnetSB   = 250 // start of subnegotiation
	telnetWILL = 251
	telnetWONT = 252
	telnetDO   = 253
	telnetDONT = 254
	telnetIAC  = 255 // interpret as command

	optBinary = 0
	optEcho   = 1
	optSGA    = 3 // suppress go-ahead
)

// negotiation is what every new client is sent first, the same options
// GNS3's wrapper announces: the server echoes and suppresses go-ahead, so a
// line-mode telnet client switches to character mode, and both directions
// are binary.
var negotiation = []byte{
	telnetIAC, telnetWILL, optEcho,
	telnetIAC, telnetWILL, optSGA,
	telnetIAC, telnetWILL, optBinary,
	telnetIAC, telnetDO, optBinary,
}

// telnetState is where inputFilter is inside a telnet command.
type telnetState uint8

const (
	stateData    telnetState = iota // plain data
	stateCommand                    // after IAC
	stateOption                     // after IAC WILL/WONT/DO/DONT, before the option byte
	stateSub                        // inside IAC SB ... IAC SE
	stateSubIAC                     // after IAC inside a subnegotiation
)

// inputFilter removes telnet commands from a client's byte stream. It keeps
// its state between calls, so a command may be split across reads. The zero
// value is ready to use.
type inputFilter struct {
	state telnetState
}

// filter removes the telnet commands from b in place and returns the data
// left, a prefix of b. IAC IAC yields one literal 0xFF byte; a
// subnegotiation is dropped whole up to IAC SE; any other command is two
// bytes, or three for WILL, WONT, DO and DONT.
func (f *inputFilter) filter(b []byte) []byte {
	n := 0
	for _, x := range b {
		switch f.state {
		case stateData:
			if x == telnetIAC {
				f.state = stateCommand
				continue
			}
			b[n] = x
			n++
		case stateCommand:
			f.state = stateData
			switch x {
			case telnetIAC:
				b[n] = x
				n++
			case telnetWILL, telnetWONT, telnetDO, telnetDONT:
				f.state = stateOption
			case telnetSB:
				f.state = stateSub
			}
		case stateOption:
			f.state = stateData
		case stateSub:
			if x == telnetIAC {
				f.state = stateSubIAC
			}
		case stateSubIAC:
			// IAC IAC inside a subnegotiation is an escaped 0xFF of its
			// parameters: still inside.
			f.state = stateSub
			if x == telnetSE {
				f.state = stateData
			}
		}
	}
	return b[:n]
}
