package convert

import (
	"encoding/base64"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// encodedWordRE matches an RFC 2047 encoded word: charset (with an optional
// RFC 2231 language, as in utf-8*en), encoding, text. The text may hold
// spaces and raw 8-bit bytes, which broken senders write.
var encodedWordRE = regexp.MustCompile(`=\?([^?\s*]+)(?:\*[^?\s]*)?\?([bBqQ])\?([^?]*)\?=`)

// decodeWord decodes the RFC 2047 encoded words in unstructured text (a
// subject, a file name, a display name). White space between two encoded
// words is dropped, as RFC 2047 says, and adjacent words in one charset are
// decoded together, since senders split a multi-byte character between
// words. Every run goes through toUTF8, so words in UTF-7, in an unknown
// charset or in a wrong one decode as bodies do. The result is valid UTF-8.
func decodeWord(s string) string {
	matches := encodedWordRE.FindAllStringSubmatchIndex(s, -1)
	if matches == nil {
		return lenientUTF8([]byte(s))
	}
	var out strings.Builder
	var run []byte
	runCharset := ""
	flush := func() {
		if runCharset != "" {
			out.WriteString(toUTF8(run, runCharset))
		}
		run, runCharset = run[:0], ""
	}
	last := 0
	for _, m := range matches {
		gap := s[last:m[0]]
		cs, text := s[m[2]:m[3]], s[m[6]:m[7]]
		if runCharset == "" || strings.TrimSpace(gap) != "" {
			flush()
			out.WriteString(gap)
		} else if !strings.EqualFold(cs, runCharset) {
			flush()
		}
		runCharset = cs
		if strings.EqualFold(s[m[4]:m[5]], "b") {
			run = append(run, decodeBase64Word(text)...)
		} else {
			run = append(run, decodeQWord(text)...)
		}
		last = m[1]
	}
	flush()
	out.WriteString(s[last:])
	return lenientUTF8([]byte(out.String()))
}

// decodeBase64Word decodes the B encoding, also without its padding or
// with stray characters, keeping what decodes.
func decodeBase64Word(text string) []byte {
	clean := strings.Map(func(r rune) rune {
		if strings.ContainsRune(base64Alphabet, r) {
			return r
		}
		return -1
	}, text)
	if len(clean)%4 == 1 {
		clean = clean[:len(clean)-1] // a lone sixth of a byte
	}
	raw, _ := base64.RawStdEncoding.DecodeString(clean)
	return raw
}

// decodeQWord decodes the Q encoding: "_" is a space, =XX a byte, and any
// other byte, also a raw 8-bit one or a stray "=", stands for itself.
func decodeQWord(text string) []byte {
	raw := make([]byte, 0, len(text))
	for i := 0; i < len(text); i++ {
		switch c := text[i]; {
		case c == '_':
			raw = append(raw, ' ')
		case c == '=' && i+2 < len(text) && isHexByte(text[i+1:i+3]):
			n, _ := strconv.ParseUint(text[i+1:i+3], 16, 8)
			raw = append(raw, byte(n))
			i += 2
		default:
			raw = append(raw, c)
		}
	}
	return raw
}

func isHexByte(s string) bool {
	_, err := strconv.ParseUint(s, 16, 8)
	return err == nil
}

// qWordRE matches a Q-encoded word, also one holding bytes RFC 2047 forbids.
var qWordRE = regexp.MustCompile(`=\?[^?\s]+\?[qQ]\?[^?]*\?=`)

// escapeEightBitWords writes 8-bit bytes inside Q-encoded words as =XX,
// which is what their sender meant, before the raw header text is turned
// into UTF-8 and before net/mail, which refuses them, reads a display name.
func escapeEightBitWords(s string) string {
	if !strings.Contains(s, "=?") || !hasEightBit(s) {
		return s
	}
	return qWordRE.ReplaceAllStringFunc(s, func(word string) string {
		var b strings.Builder
		for i := 0; i < len(word); i++ {
			if c := word[i]; c >= 0x80 {
				fmt.Fprintf(&b, "=%02X", c)
			} else {
				b.WriteByte(c)
			}
		}
		return b.String()
	})
}

func hasEightBit(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return true
		}
	}
	return false
}
