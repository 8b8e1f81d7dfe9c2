package safetext

import (
	"strings"
	"testing"
)

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"scanner@contoso.com":           "scanner@contoso.com",
		"Grüße, 東京":                     "Grüße, 東京",
		"\x1b]0;pwned\x07a@example.com": `\x1b]0;pwned\aa@example.com`,
		"line\r\nforged=entry":          `line\r\nforged=entry`,
		"bidi \u202egnp.exe":            `bidi \u202egnp.exe`,
		"bad \xff utf-8":                `bad \xff utf-8`,
		"c1 \u009b31m":                  `c1 \u009b31m`,
	} {
		if got := Escape(in); got != want {
			t.Errorf("Escape(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLog(t *testing.T) {
	long := strings.Repeat("a", 1000)
	got := Log(long)
	if want := strings.Repeat("a", MaxLogValue) + "…(1000 bytes)"; got != want {
		t.Errorf("Log(1000 bytes) = %q", got)
	}
	// A cut never splits a character.
	got = Log(strings.Repeat("é", 200))
	if !strings.HasSuffix(got, "é…(400 bytes)") || len(got) > MaxLogValue+20 {
		t.Errorf("Log(400 bytes of é) = %q", got)
	}
	if got := Log("short\n"); got != `short\n` {
		t.Errorf("Log = %q", got)
	}
}

func TestEscapeLines(t *testing.T) {
	in := "From: a@example.com\r\nSubject: \x1b]0;pwned\x07\r\n\r\n"
	if got, want := EscapeLines(in), "From: a@example.com\nSubject: \\x1b]0;pwned\\a\n\n"; got != want {
		t.Errorf("EscapeLines = %q, want %q", got, want)
	}
}
