package console

import (
	"bytes"
	"testing"
)

func TestInputFilter(t *testing.T) {
	const (
		IAC, SB, SE, WILL, WONT, DO, DONT = 255, 250, 240, 251, 252, 253, 254
		NOP, AYT, GA                      = 241, 246, 249
		ECHO, NAWS, TTYPE                 = 1, 31, 24
	)
	cat := func(parts ...any) []byte {
		var b []byte
		for _, p := range parts {
			switch v := p.(type) {
			case string:
				b = append(b, v...)
			case int:
				b = append(b, byte(v))
			}
		}
		return b
	}
	tests := []struct {
		name     string
		in, want []byte
	}{
		{"plain", cat("show ip\r\n"), cat("show ip\r\n")},
		{"empty", nil, nil},
		{"IAC IAC is a literal 0xFF", cat("a", IAC, IAC, "b"), cat("a", 0xFF, "b")},
		{"two escaped 0xFF", cat(IAC, IAC, IAC, IAC), cat(0xFF, 0xFF)},
		{"option replies", cat("x", IAC, DO, ECHO, IAC, WILL, NAWS, IAC, DONT, 0, IAC, WONT, 3, "y"), cat("xy")},
		{"option byte 0xFF is not data", cat(IAC, WILL, IAC, "z"), cat("z")},
		{"two-byte commands", cat(IAC, NOP, "a", IAC, AYT, IAC, GA, "b"), cat("ab")},
		{"subnegotiation", cat("a", IAC, SB, NAWS, 0, 80, 0, 24, IAC, SE, "b"), cat("ab")},
		{"terminal type", cat(IAC, SB, TTYPE, 0, "XTERM-256COLOR", IAC, SE, "ls\r"), cat("ls\r")},
		{"escaped 0xFF inside subnegotiation", cat(IAC, SB, NAWS, 0, IAC, IAC, 0, 24, IAC, SE, "ok"), cat("ok")},
		{"SE without IAC stays inside", cat(IAC, SB, NAWS, SE, "hidden", IAC, SE, "shown"), cat("shown")},
		{"typical client hello", cat(IAC, DO, ECHO, IAC, DO, 3, IAC, WILL, 0, IAC, DO, 0, IAC, WILL, NAWS, IAC, SB, NAWS, 0, 132, 0, 43, IAC, SE, "echo hi\r\n"), cat("echo hi\r\n")},
		{"0xFF-free high bytes pass", cat(0x80, 0xF0, 0xFE), cat(0x80, 0xF0, 0xFE)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Whole, then split at every position into two reads, then one
			// byte per read: the result must not depend on the cut.
			check := func(how string, chunks [][]byte) {
				t.Helper()
				var f inputFilter
				var got []byte
				for _, c := range chunks {
					got = append(got, f.filter(bytes.Clone(c))...)
				}
				if !bytes.Equal(got, tt.want) {
					t.Errorf("%s: filter(% x) = % x, want % x", how, tt.in, got, tt.want)
				}
				if f.state != stateData {
					t.Errorf("%s: ends in state %d, want data", how, f.state)
				}
			}
			check("whole", [][]byte{tt.in})
			for i := 1; i < len(tt.in); i++ {
				check("split", [][]byte{tt.in[:i], tt.in[i:]})
			}
			var bytewise [][]byte
			for i := range tt.in {
				bytewise = append(bytewise, tt.in[i:i+1])
			}
			check("bytewise", bytewise)
		})
	}
}

func TestInputFilterFiltersInPlace(t *testing.T) {
	b := []byte{'a', 255, 251, 1, 'b'}
	var f inputFilter
	got := f.filter(b)
	if string(got) != "ab" || &got[0] != &b[0] {
		t.Fatalf("filter = %q at %p, want \"ab\" in the input buffer %p", got, &got[0], &b[0])
	}
	if n := testing.AllocsPerRun(100, func() { f.filter(b[:1]) }); n != 0 {
		t.Errorf("filter allocates %v times per call, want 0", n)
	}
}

func TestNegotiationMatchesGNS3(t *testing.T) {
	// IAC WILL ECHO, IAC WILL SUPPRESS-GO-AHEAD, IAC WILL BINARY, IAC DO BINARY.
	want := []byte{0xff, 0xfb, 0x01, 0xff, 0xfb, 0x03, 0xff, 0xfb, 0x00, 0xff, 0xfd, 0x00}
	if !bytes.Equal(negotiation, want) {
		t.Fatalf("negotiation = % x, want % x", negotiation, want)
	}
}
