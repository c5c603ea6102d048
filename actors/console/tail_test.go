package console

import (
	"bytes"
	"fmt"
	"testing"
)

func TestTail(t *testing.T) {
	lines := func(from, to int) []byte {
		var b []byte
		for i := from; i < to; i++ {
			b = fmt.Appendf(b, "line %04d\r\n", i) // 11 bytes
		}
		return b
	}
	tests := []struct {
		name   string
		writes [][]byte
		want   []byte
	}{
		{"empty", nil, nil},
		{"short", [][]byte{[]byte("VPCS> ")}, []byte("VPCS> ")},
		{"pieces", [][]byte{[]byte("ab"), []byte("cd\n"), []byte("ef")}, []byte("abcd\nef")},
		{"exactly full", [][]byte{bytes.Repeat([]byte("x"), tailSize)}, bytes.Repeat([]byte("x"), tailSize)},
		{
			// 300 lines of 11 bytes: the ring holds the last 2048 bytes and
			// the replay starts at the first whole line in it.
			"wrapped starts at a line", [][]byte{lines(0, 300)},
			append(lines(300-tailSize/11, 300), nil...),
		},
		{
			"wrapped over many writes", [][]byte{lines(0, 100), lines(100, 200), lines(200, 300), []byte("VPCS> ")},
			append(lines(301-tailSize/11, 300), "VPCS> "...),
		},
		{"no newline keeps all", [][]byte{bytes.Repeat([]byte("y"), 3*tailSize)}, bytes.Repeat([]byte("y"), tailSize)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tl tail
			for _, w := range tt.writes {
				tl.write(w)
			}
			got := tl.appendTo([]byte("prefix:"))
			want := append([]byte("prefix:"), tt.want...)
			if !bytes.Equal(got, want) {
				t.Errorf("appendTo = %q\nwant %q", got, want)
			}
			if len(got)-len("prefix:") > tailSize {
				t.Errorf("replay is %d bytes, more than %d", len(got)-len("prefix:"), tailSize)
			}
		})
	}
}
