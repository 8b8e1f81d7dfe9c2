package convert

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/text/encoding/unicode"
)

func TestToUTF8(t *testing.T) {
	tests := []struct {
		name, raw, charset, want string
	}{
		{"valid UTF-8 stays", "Привет, мир", "utf-8", "Привет, мир"},
		{"one invalid byte in UTF-8: only it is replaced", "Привет\xff, мир", "utf-8", "Привет\uFFFD, мир"},
		{"a cut character at the end", "Привет, ми\xd1", "", "Привет, ми\uFFFD"},
		{"a cut three-byte character is one replacement", "Grüße \xe2\x82 5", "utf-8", "Grüße \uFFFD 5"},
		{"as many valid sequences as invalid ones: UTF-8", "Grüße \xe9", "utf-8", "Grüße \uFFFD"},
		{"no valid multi-byte sequence: Windows-1252", "Caf\xe9 cr\xe8me", "utf-8", "Café crème"},
		{"Windows-1252 punctuation", "\x93quoted\x94 \x80 5", "", "“quoted” € 5"},
		{"mostly invalid: Windows-1252", "Gr\xfc\xdfe \xe0 \xe9t\xe9 \xc3\xa9", "", "Grüße à été Ã©"},
		{"8-bit text labelled US-ASCII", "Stra\xdfe", "us-ascii", "Straße"},
		{"unknown charset, UTF-8 text", "Straße", "x-unknown", "Straße"},
		{"unknown charset, Latin-1 text", "Stra\xdfe", "x-unknown", "Straße"},
		{"declared charset", "Stra\xdfe", "iso-8859-15", "Straße"},
		{"declared charset, ASCII text", "Strasse", "iso-8859-1", "Strasse"},
		{"UTF-8 labelled Latin-1", "Straße, 20 €", "iso-8859-1", "Straße, 20 €"},
		{"UTF-8 labelled Windows-1251", "Привет", "windows-1251", "Привет"},
		{"Windows-1251 text", "\xcf\xf0\xe8\xe2\xe5\xf2", "windows-1251", "Привет"},
		{"UTF-8 labelled with a multi-byte charset stays in it", "\xe6\x97\xa5", "gb18030", "鏃\uFFFD"},
		{"Windows Japanese as cp932", "\x8c\xa9\x90\xcf\x8f\x91", "cp932", "見積書"},
		{"win-1251", "\xcf\xf0\xe8\xe2\xe5\xf2", "win-1251", "Привет"},
		{"x- prefix", "\x93quoted\x94", "x-windows-1252", "“quoted”"},
		{"quoted label", "Stra\xdfe", "'ISO-8859-1'", "Straße"},
		{"latin-1", "Stra\xdfe", "latin-1", "Straße"},
		{"ISO-8859-1 is read as Windows-1252", "\x93Stra\xdfe\x94 \x96 \x80", "ISO-8859-1", "“Straße” – €"},
		{"UTF-8 under an ASCII alias", "Straße", "ANSI_X3.4-1968", "Straße"},
		{"Latin-1 under a UTF-8 alias", "Stra\xdfe", "utf8", "Straße"},
		{"unlabelled ISO-2022-JP", "\x1b$B8+@Q=q\x1b(B", "", "見積書"},
		{"ISO-2022-JP labelled US-ASCII", "\x1b$B8+@Q=q\x1b(B", "us-ascii", "見積書"},
		{"UTF-7", "Fr+APY-sche", "UTF-7", "Frösche"},
		{"UTF-7 alias", "Fr+APY-sche", "unicode-1-1-utf-7", "Frösche"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := toUTF8([]byte(tt.raw), tt.charset); got != tt.want {
				t.Errorf("toUTF8(%q, %q) = %q, want %q", tt.raw, tt.charset, got, tt.want)
			}
		})
	}
}

func TestDecodeUTF7(t *testing.T) {
	tests := map[string]string{
		// The examples of RFC 2152.
		"A+ImIDkQ.":       "A≢Α.",
		"Hi Mom -+Jjo--!": "Hi Mom -☺-!",
		"+ZeVnLIqe-":      "日本語",
		// A plus sign, a run ended by a character outside base64, a
		// surrogate pair, a lone surrogate, a trailing "+", an 8-bit byte.
		"1 +- 1 = 2":     "1 + 1 = 2",
		"Fr+APY sche":    "Fr\u00f6 sche",
		"+2D3eAA-":       "😀",
		"a+2D0-b":        "a\uFFFDb",
		"a+":             "a",
		"caf\xe9":        "caf\uFFFD",
		"line+AAo-break": "line\nbreak",
	}
	for raw, want := range tests {
		if got := decodeUTF7([]byte(raw)); got != want {
			t.Errorf("decodeUTF7(%q) = %q, want %q", raw, got, want)
		}
	}
}

func TestTextToUTF8(t *testing.T) {
	cyrillic := "\xcf\xf0\xe8\xe2\xe5\xf2"
	tests := []struct {
		name, raw, mediaType, charset, want string
	}{
		{"meta charset", `<html><head><meta charset="windows-1251"></head>` + cyrillic, "text/html", "", `<html><head><meta charset="windows-1251"></head>Привет`},
		{"meta http-equiv", `<META HTTP-EQUIV="Content-Type" CONTENT="text/html; charset=windows-1251">` + cyrillic, "text/html", "", `<META HTTP-EQUIV="Content-Type" CONTENT="text/html; charset=windows-1251">Привет`},
		{"the Content-Type charset wins", `<meta charset="utf-8">` + "Stra\xdfe", "text/html", "iso-8859-1", `<meta charset="utf-8">Straße`},
		{"plain text has no meta", `<meta charset="windows-1251">` + cyrillic, "text/plain", "", `<meta charset="windows-1251">Ïðèâåò`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := textToUTF8([]byte(tt.raw), tt.mediaType, tt.charset); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// TestScanUTF8 compares scanUTF8 with golang.org/x/text's UTF-8 decoder,
// which also replaces maximal subparts, on every sequence of up to four
// bytes at the edges of UTF-8's ranges.
func TestScanUTF8(t *testing.T) {
	edges := []byte{0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc1, 0xc2, 0xdf, 0xe0, 0xed, 0xef, 0xf0, 0xf4, 0xf5}
	var check func(raw []byte)
	check = func(raw []byte) {
		var out strings.Builder
		scanUTF8(raw, &out)
		if want, _ := unicode.UTF8.NewDecoder().Bytes(raw); out.String() != string(want) {
			t.Fatalf("scanUTF8(%q) wrote %q, want %q", raw, out.String(), want)
		}
		if len(raw) < 4 {
			for _, c := range edges {
				check(append(raw, c))
			}
		}
	}
	check(nil)
}

// FuzzTextDecoding checks that every text decoder gives valid UTF-8, and
// that valid UTF-8 of unknown charset is kept as it is.
func FuzzTextDecoding(f *testing.F) {
	for _, seed := range []string{"Привет\xff", "Caf\xe9", "=?utf-7?Q?Fr+APY-sche?=", "=?x?B?w6k?= =?x?Q?=E9_?=",
		"=?iso-8859-1?Q?Fr\xf6sche?=", "+2D0-", "+ZeVnLIqe-", "\x1b$B8+@Q=q\x1b(B"} {
		f.Add([]byte(seed), "utf-8")
	}
	f.Add([]byte("\x8c\xa9\x90\xcf"), "cp932")
	f.Fuzz(func(t *testing.T, raw []byte, cs string) {
		for name, s := range map[string]string{
			"toUTF8": toUTF8(raw, cs), "decodeWord": decodeWord(string(raw)),
			"headerUTF8": headerUTF8(string(raw)), "decodeUTF7": decodeUTF7(raw),
		} {
			if !utf8.ValidString(s) {
				t.Fatalf("%s(%q, %q) = %q: not UTF-8", name, raw, cs, s)
			}
		}
		if utf8.Valid(raw) && !bytes.Contains(raw, []byte("\x1b$")) && lenientUTF8(raw) != string(raw) {
			t.Fatalf("lenientUTF8 changed valid UTF-8 %q", raw)
		}
		// golang.org/x/text's UTF-8 decoder also replaces maximal subparts.
		var out strings.Builder
		scanUTF8(raw, &out)
		if want, _ := unicode.UTF8.NewDecoder().Bytes(raw); out.String() != string(want) {
			t.Fatalf("scanUTF8(%q) wrote %q, want %q", raw, out.String(), want)
		}
	})
}

// BenchmarkLenientUTF8 reads 8 MiB bodies, the most kept as a body, that are
// not valid UTF-8: UTF-8 with one bad byte, and Latin-1.
func BenchmarkLenientUTF8(b *testing.B) {
	cyrillic := "Привет, мир! "
	latin := "Caf\xe9 cr\xe8me "
	for name, raw := range map[string][]byte{
		"utf8-one-invalid-byte": append(bytes.Repeat([]byte(cyrillic), maxBodyBytes/len(cyrillic)), 0xff),
		"latin1":                bytes.Repeat([]byte(latin), maxBodyBytes/len(latin)),
	} {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				lenientUTF8(raw)
			}
		})
	}
}
