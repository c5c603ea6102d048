package actors

import (
	"unicode"
	"unicode/utf8"
)

// checkName refuses a project's or node's name that would not survive as
// given: invalid UTF-8 (JSON would store it mangled into U+FFFD), NUL and
// other control characters (a line break would become a second line of a
// startup script, an escape sequence would play on a console).
func checkName(what, name string) error {
	if !utf8.ValidString(name) {
		return Invalid("%s name is not valid UTF-8", what)
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return Invalid("%s name %q holds a control character (%U)", what, name, r)
		}
	}
	return nil
}
