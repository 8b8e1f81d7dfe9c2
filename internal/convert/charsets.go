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
)

// toUTF8 decodes text in charset cs. UTF-7 is decoded here, since neither
// go-message nor golang.org/x/text knows it. Text that claims UTF-8 or
// ASCII, names an unknown charset, or does not decode in the one it names
// goes to lenientUTF8, and so does valid UTF-8 with multi-byte sequences
// labelled with a single-byte charset: scripts label UTF-8 as ISO-8859-1,
// and real text in a single-byte charset is practically never valid UTF-8
// (each 8-bit letter would have to be followed by the right symbols).
func toUTF8(raw []byte, cs string) string {
	key := charsetKey(cs)
	switch {
	case key == "" || strings.HasSuffix(key, "utf8") || asciiKeys[key]:
		return lenientUTF8(raw)
	case strings.HasSuffix(key, "utf7"):
		return decodeUTF7(raw)
	}
	decoded, ok := decodeCharset(raw, cs, key)
	singleByte := utf8.RuneCount(decoded) == len(raw)
	if !ok || !utf8.Valid(decoded) || singleByte && isMultiByteUTF8(raw) {
		return lenientUTF8(raw)
	}
	return string(decoded)
}

// charsetKey is a charset label without case, quotes, "-" and "_", so
// that the spellings of one name compare equal.
func charsetKey(cs string) string {
	return charsetSeparators.Replace(strings.ToLower(strings.Trim(cs, " \t'\"")))
}

// charsetSeparators is built once: building a Replacer costs more than
// using it, and every text part of every message asks for its charset.
var charsetSeparators = strings.NewReplacer("-", "", "_", "")

// asciiKeys are US-ASCII's labels. The charset indexes read them as
// Windows-1252; lenientUTF8 also reads the UTF-8 sent under them.
var asciiKeys = map[string]bool{"usascii": true, "ascii": true, "csascii": true, "ansix3.41968": true, "iso646us": true}

// charsetAliases are labels real mail uses, by key, with the charset to
// read them in: names the charset indexes do not know, and ISO-8859-1,
// which is read as Windows-1252 as browsers do (Windows labels its text
// ISO-8859-1; the two differ only where ISO-8859-1 has control characters
// that no text means).
var charsetAliases = map[string]string{
	"cp932": "shift_jis", "ms932": "shift_jis", "xmscp932": "shift_jis", "windows932": "shift_jis",
	"iso2022jp1": "iso-2022-jp", "iso2022jp2": "iso-2022-jp", "iso2022jp3": "iso-2022-jp",
	"iso88591": "windows-1252", "iso885911987": "windows-1252", "latin1": "windows-1252", "isolatin1": "windows-1252",
	"88591": "windows-1252", "csisolatin1": "windows-1252", "l1": "windows-1252", "cp819": "windows-1252", "ibm819": "windows-1252",
}

// decodeCharset decodes raw in the charset labelled cs (key is its
// charsetKey): by an alias, as labelled, or without an "x-" prefix, the
// spellings real mail uses.
func decodeCharset(raw []byte, cs, key string) ([]byte, bool) {
	label := strings.ToLower(strings.Trim(cs, " \t'\""))
	alias := charsetAliases[key]
	if strings.HasPrefix(key, "win") && !strings.HasPrefix(key, "windows") {
		alias = "windows-" + key[len("win"):] // win-1251
	}
	for _, name := range []string{alias, label, strings.TrimPrefix(label, "x-")} {
		if name == "" {
			continue
		}
		if r, err := charset.Reader(name, bytes.NewReader(raw)); err == nil {
			decoded, err := io.ReadAll(r)
			return decoded, err == nil
		}
	}
	return nil, false
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
	multiByte, invalid := scanUTF8(raw, nil)
	var out strings.Builder
	if multiByte > 0 && invalid <= multiByte {
		out.Grow(len(raw) + 2*invalid)
		scanUTF8(raw, &out)
		return out.String()
	}
	out.Grow(len(raw) + 2*(multiByte+invalid))
	for _, c := range raw {
		out.WriteRune(windows1252[c])
	}
	return out.String()
}

// windows1252 maps each byte to its character in Windows-1252.
var windows1252 = func() (table [256]rune) {
	for i := range table {
		table[i] = charmap.Windows1252.DecodeByte(byte(i))
	}
	return table
}()

// scanUTF8 counts raw's valid multi-byte sequences and its invalid ones;
// with out, it also writes raw there with each invalid one replaced by
// U+FFFD. An invalid sequence is a maximal subpart, as Unicode recommends
// counting and replacing them: a character cut short is one.
func scanUTF8(raw []byte, out *strings.Builder) (multiByte, invalid int) {
	start := 0
	for i := 0; i < len(raw); {
		if raw[i] < utf8.RuneSelf {
			i++
			continue
		}
		if r, n := utf8.DecodeRune(raw[i:]); r != utf8.RuneError || n > 1 {
			multiByte++
			i += n
			continue
		}
		invalid++
		if out != nil {
			out.Write(raw[start:i])
			out.WriteRune(utf8.RuneError)
		}
		i += invalidLength(raw[i:])
		start = i
	}
	if out != nil {
		out.Write(raw[start:])
	}
	return multiByte, invalid
}

// invalidLength is the length of the maximal subpart at the start of b,
// which starts with no valid sequence: its first byte, and the bytes after
// it that could continue a sequence it starts.
func invalidLength(b []byte) int {
	lo, hi, size := byte(0x80), byte(0xBF), 1
	switch c := b[0]; {
	case 0xC2 <= c && c <= 0xDF:
		size = 2
	case c == 0xE0:
		lo, size = 0xA0, 3
	case c == 0xED:
		hi, size = 0x9F, 3
	case 0xE1 <= c && c <= 0xEF:
		size = 3
	case c == 0xF0:
		lo, size = 0x90, 4
	case c == 0xF4:
		hi, size = 0x8F, 4
	case 0xF1 <= c && c <= 0xF3:
		size = 4
	}
	n := 1
	for n < size && n < len(b) && lo <= b[n] && b[n] <= hi {
		n++
		lo, hi = 0x80, 0xBF
	}
	return n
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
