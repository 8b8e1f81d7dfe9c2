// Package safetext makes text that came from a client or a message safe to
// show: in a log line, where an attacker could forge entries or flood the
// disk, and on an admin's terminal, where escape sequences could drive it.
package safetext

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxLogValue is how many bytes of one value a log line keeps.
const MaxLogValue = 256

// Escape replaces control characters (C0, DEL, C1, and Unicode format
// characters such as bidi overrides) and invalid UTF-8 with Go escapes
// like \x1b or \u202e. Printable text, including non-ASCII, stays as it is.
func Escape(s string) string {
	if isClean(s) {
		return s
	}
	var b strings.Builder
	for i, r := range s {
		switch {
		case r == utf8.RuneError && isInvalidAt(s, i):
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case unsafeRune(r):
			b.WriteString(strings.Trim(strconv.QuoteRune(r), "'"))
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// Log is Escape for a log value, cut to MaxLogValue bytes with the
// original length noted.
func Log(s string) string {
	if len(s) > MaxLogValue {
		cut := MaxLogValue
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return Escape(s[:cut]) + fmt.Sprintf("…(%d bytes)", len(s))
	}
	return Escape(s)
}

func isClean(s string) bool {
	for i, r := range s {
		if unsafeRune(r) || r == utf8.RuneError && isInvalidAt(s, i) {
			return false
		}
	}
	return true
}

func isInvalidAt(s string, i int) bool {
	_, size := utf8.DecodeRuneInString(s[i:])
	return size <= 1
}

func unsafeRune(r rune) bool {
	return unicode.IsControl(r) || unicode.Is(unicode.Cf, r)
}

// EscapeLines is Escape for multi-line text shown as lines, such as a
// message header: each line is escaped, and line breaks stay.
func EscapeLines(s string) string {
	lines := strings.SplitAfter(s, "\n")
	for i, line := range lines {
		text, lf := strings.CutSuffix(line, "\n")
		text = strings.TrimSuffix(text, "\r")
		lines[i] = Escape(text)
		if lf {
			lines[i] += "\n"
		}
	}
	return strings.Join(lines, "")
}

// HasControl reports whether s holds an ASCII control character (C0 or
// DEL): a name or address holding one is refused rather than escaped.
func HasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}
