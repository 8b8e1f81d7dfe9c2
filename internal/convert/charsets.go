package convert

import (
	"bytes"
	"io"
	"regexp"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/emersion/go-message/charset"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/japanese"
	"golang.org/x/text/encoding/unicode"
)

// toUTF8 decodes text in charset cs. UTF-7 is decoded here, since neither
// go-message nor golang.org/x/text knows it. Text that claims UTF-8 or
// ASCII, names an unknown charset, or does not decode in the one it names
// goes to lenientUTF8, and so does valid UTF-8 with multi-byte sequences
// labelled with a single-byte charset: scripts label UTF-8 as ISO-8859-1,
// and real text in a single-byte charset is practically never valid UTF-8
// (each 8-bit letter would have to be followed by the right symbols).
func toUTF8(raw []byte, cs string) string {
	switch {
	case isUTF7(cs):
		return decodeUTF7(raw)
	case cs != "" && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "us-ascii"):
		if r, err := charset.Reader(cs, bytes.NewReader(raw)); err == nil {
			decoded, err := io.ReadAll(r)
			singleByte := utf8.RuneCount(decoded) == len(raw)
			if err == nil && utf8.Valid(decoded) && !(singleByte && isMultiByteUTF8(raw)) {
				return string(decoded)
			}
		}
	}
	return lenientUTF8(raw)
}

// isMultiByteUTF8 reports valid UTF-8 that is not plain ASCII.
func isMultiByteUTF8(b []byte) bool {
	return utf8.Valid(b) && utf8.RuneCount(b) < len(b)
}

// lenientUTF8 reads text of unknown or doubtful charset. Valid UTF-8 stays,
// unless it has ISO-2022-JP's escape sequences: old Japanese software sends
// that 7-bit charset unlabelled, in headers and bodies.
// Text with at least as many valid multi-byte UTF-8 sequences as invalid
// ones is UTF-8 with some damage (a cut character, a stray byte): only each
// invalid sequence becomes U+FFFD, so one bad byte does not garble the rest.
// Other 8-bit text is not UTF-8 at all: it is read as Windows-1252, the
// charset of the devices and programs that send unlabelled 8-bit text (a
// Latin-1 letter is an invalid UTF-8 sequence, and valid sequences almost
// never occur by chance in Latin text).
func lenientUTF8(raw []byte) string {
	if utf8.Valid(raw) {
		if bytes.Contains(raw, []byte("\x1b$")) {
			return fromISO2022JP(raw)
		}
		return string(raw)
	}
	// The decoder replaces each maximal invalid subsequence (as Unicode
	// recommends) with one U+FFFD, so counting them counts the damage.
	decoded, _ := unicode.UTF8.NewDecoder().Bytes(raw)
	invalid := bytes.Count(decoded, []byte("\uFFFD")) - bytes.Count(raw, []byte("\uFFFD"))
	multiByte := utf8.RuneCount(decoded) - asciiBytes(decoded) - invalid
	if multiByte > 0 && invalid <= multiByte {
		return string(decoded)
	}
	latin, err := charmap.Windows1252.NewDecoder().Bytes(raw)
	if err != nil {
		return string(decoded)
	}
	return strings.ToValidUTF8(string(latin), "\uFFFD")
}

// fromISO2022JP decodes ISO-2022-JP, keeping the text as it is if it is
// not (another ISO-2022 charset uses the same escape).
func fromISO2022JP(raw []byte) string {
	decoded, err := japanese.ISO2022JP.NewDecoder().Bytes(raw)
	if err != nil || !utf8.Valid(decoded) {
		return string(raw)
	}
	return string(decoded)
}

// textToUTF8 decodes a text body. An HTML body whose Content-Type names no
// charset names it in a <meta> tag, which browsers and mail clients obey.
func textToUTF8(raw []byte, mediaType, cs string) string {
	if cs == "" && mediaType == "text/html" {
		if m := metaCharsetRE.FindSubmatch(raw[:min(len(raw), 4096)]); m != nil {
			cs = string(m[1])
		}
	}
	return toUTF8(raw, cs)
}

// metaCharsetRE finds the charset of <meta charset="..."> and of
// <meta http-equiv="Content-Type" content="text/html; charset=...">.
var metaCharsetRE = regexp.MustCompile(`(?i)<meta\s[^>]*charset\s*=\s*["']?\s*([a-z0-9][a-z0-9_:.+-]*)`)

func asciiBytes(b []byte) int {
	n := 0
	for _, c := range b {
		if c < utf8.RuneSelf {
			n++
		}
	}
	return n
}

// utf7Names are the names UTF-7 goes by in mail, without "-" and "_".
var utf7Names = map[string]bool{"utf7": true, "csutf7": true, "unicode11utf7": true, "csunicode11utf7": true, "xunicode20utf7": true}

func isUTF7(cs string) bool {
	return utf7Names[strings.NewReplacer("-", "", "_", "").Replace(strings.ToLower(cs))]
}

// decodeUTF7 decodes UTF-7 (RFC 2152), which Outlook 2000 and Outlook
// Express could send. Characters stand for themselves, except that "+"
// starts a run of modified base64 (no padding) holding UTF-16 code units;
// the run ends at the first character outside base64, and a "-" ending it
// is dropped. "+-" is a plus sign. An 8-bit byte or a lone surrogate
// becomes U+FFFD.
func decodeUTF7(raw []byte) string {
	var b strings.Builder
	var units []uint16
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c != '+' {
			if c >= utf8.RuneSelf {
				b.WriteRune(utf8.RuneError)
			} else {
				b.WriteByte(c)
			}
			continue
		}
		i++
		if i < len(raw) && raw[i] == '-' {
			b.WriteByte('+')
			continue
		}
		var bits uint32
		var nbits uint
		units = units[:0]
		for ; i < len(raw); i++ {
			v := strings.IndexByte(base64Alphabet, raw[i])
			if v < 0 {
				break
			}
			bits, nbits = bits<<6|uint32(v), nbits+6
			if nbits >= 16 {
				nbits -= 16
				units = append(units, uint16(bits>>nbits))
				bits &= 1<<nbits - 1
			}
		}
		b.WriteString(string(utf16.Decode(units)))
		if i < len(raw) && raw[i] != '-' {
			i-- // the character that ended the run stands for itself
		}
	}
	return b.String()
}

const base64Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
