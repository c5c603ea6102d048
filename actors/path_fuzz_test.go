package actors_test

import (
	"errors"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"labd/actors"
)

func TestCleanPath(t *testing.T) {
	cases := []struct {
		in   string
		want string // the cleaned path; "" when refused
		err  error  // the class of the refusal
	}{
		// Accepted, cleaned.
		{"a.txt", "a.txt", nil},
		{"configs/r1.cfg", "configs/r1.cfg", nil},
		{"a//b", "a/b", nil},
		{"./a", "a", nil},
		{"a/./b/", "a/b", nil},
		{"...", "...", nil},
		{"..a/b..", "..a/b..", nil},
		{"%41", "%41", nil},                   // kept literally: the HTTP layer has decoded once already
		{"100%", "100%", nil},                 // not an escape at all
		{"%2e%2ea", "%2e%2ea", nil},           // decodes to "..a", a plain name
		{"dir/café.txt", "dir/café.txt", nil}, // UTF-8 is fine

		// Refused: could leave the directory.
		{"..", "", actors.ErrForbidden},
		{"../a", "", actors.ErrForbidden},
		{"a/../b", "", actors.ErrForbidden},
		{"a/..", "", actors.ErrForbidden},
		{"/etc/passwd", "", actors.ErrForbidden},
		{"//etc/passwd", "", actors.ErrForbidden},
		{"..%2Fetc%2Fpasswd", "", actors.ErrForbidden},
		{"%2e%2e/etc/passwd", "", actors.ErrForbidden},
		{"%2E%2E%2Fetc", "", actors.ErrForbidden},
		{"%252e%252e%252fetc", "", actors.ErrForbidden},
		{"%2fetc%2fpasswd", "", actors.ErrForbidden}, // absolute once decoded
		{`..\..\x`, "", actors.ErrForbidden},
		{`a\b`, "", actors.ErrForbidden},
		{"..%5C..%5Cx", "", actors.ErrForbidden},
		{"a\x00b", "", actors.ErrForbidden},
		{"a%00b", "", actors.ErrForbidden},
		{"\xff", "", actors.ErrForbidden},
		{"a%ff", "", actors.ErrForbidden},
		{"%2e%2e/%zz", "", actors.ErrForbidden}, // an invalid escape does not stop the decoding
		{"%zz%2f..%2fx", "", actors.ErrForbidden},

		// Refused: names no file.
		{"", "", actors.ErrInvalid},
		{".", "", actors.ErrInvalid},
		{"./", "", actors.ErrInvalid},
		{"./.", "", actors.ErrInvalid},
	}
	for _, c := range cases {
		got, err := actors.CleanPath(c.in)
		switch {
		case c.err == nil && err != nil:
			t.Errorf("CleanPath(%q): %v, want %q", c.in, err, c.want)
		case c.err == nil && got != c.want:
			t.Errorf("CleanPath(%q) = %q, want %q", c.in, got, c.want)
		case c.err != nil && !errors.Is(err, c.err):
			t.Errorf("CleanPath(%q) = %q, %v; want an error matching %v", c.in, got, err, c.err)
		case c.err != nil && got != "":
			t.Errorf("CleanPath(%q) refused, yet returned %q", c.in, got)
		}
		if err != nil && errors.Is(err, actors.ErrForbidden) == errors.Is(err, actors.ErrInvalid) {
			t.Errorf("CleanPath(%q): %v matches both or neither of ErrForbidden and ErrInvalid", c.in, err)
		}
	}
}

// hasDotDot reports whether p has a ".." element.
func hasDotDot(p string) bool { return slices.Contains(strings.Split(p, "/"), "..") }

func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{
		"a.txt", "dir/sub/file", "a//b/", "./a", "..", "../a", "a/../b", "/etc/passwd", "//x",
		"..%2Fetc", "%2e%2e/x", "%252e%252e%252fx", "%25252e%25252e", `..\x`, "a\x00", "%00", "\xff", "%ff",
		"", ".", "%", "%zz/..", "...", "a/.../b",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		p, err := actors.CleanPath(in)
		if err != nil {
			if p != "" {
				t.Fatalf("CleanPath(%q) refused with %v, yet returned %q", in, err, p)
			}
			if !errors.Is(err, actors.ErrForbidden) && !errors.Is(err, actors.ErrInvalid) {
				t.Fatalf("CleanPath(%q): %v is neither ErrForbidden nor ErrInvalid", in, err)
			}
			return
		}
		switch {
		case !filepath.IsLocal(p):
			t.Fatalf("CleanPath(%q) = %q, not a local path", in, p)
		case hasDotDot(p):
			t.Fatalf("CleanPath(%q) = %q has a .. element", in, p)
		case strings.HasPrefix(p, "/"):
			t.Fatalf("CleanPath(%q) = %q is absolute", in, p)
		case strings.ContainsAny(p, "\\\x00"):
			t.Fatalf("CleanPath(%q) = %q holds a backslash or a NUL", in, p)
		case !utf8.ValidString(p):
			t.Fatalf("CleanPath(%q) = %q is not valid UTF-8", in, p)
		case !strings.HasPrefix(filepath.Join("/root/proj", p), "/root/proj/"):
			t.Fatalf("CleanPath(%q) = %q leaves /root/proj once joined: %q", in, p, filepath.Join("/root/proj", p))
		}
		// Accepted, so no decoding of it, once or twice, has a ".." element.
		s := in
		for i := range 2 {
			if hasDotDot(s) {
				t.Fatalf("CleanPath(%q) = %q, yet it has a .. element after %d decoding(s): %q", in, p, i, s)
			}
			d, err := url.PathUnescape(s)
			if err != nil {
				return
			}
			s = d
		}
		if hasDotDot(s) {
			t.Fatalf("CleanPath(%q) = %q, yet it has a .. element after 2 decodings: %q", in, p, s)
		}
	})
}
