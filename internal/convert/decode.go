package convert

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"mime/quotedprintable"
	"regexp"
	"strings"
)

// transferDecoder undoes a Content-Transfer-Encoding, leniently: broken
// base64 yields what can be decoded, an unknown encoding the raw bytes.
func transferDecoder(encoding string, r io.Reader) io.Reader {
	switch strings.ToLower(strings.TrimSpace(encoding)) {
	case "base64":
		return &lenientReader{r: base64.NewDecoder(base64.StdEncoding, &base64Filter{r: r})}
	case "quoted-printable":
		return &lenientReader{r: quotedprintable.NewReader(r)}
	case "x-uuencode", "uuencode", "x-uue":
		return &lenientReader{r: &uudecoder{br: bufio.NewReader(r)}}
	}
	return &lenientReader{r: r}
}

// lenientReader ends the stream at the first decoding error, so that a
// damaged part gives the bytes before the damage, the same on every read.
type lenientReader struct {
	r   io.Reader
	err error
}

func (l *lenientReader) Read(p []byte) (int, error) {
	if l.err != nil {
		return 0, l.err
	}
	n, err := l.r.Read(p)
	switch {
	case err == nil:
	case isDecodeError(err):
		l.err = io.EOF
	default:
		l.err = err
	}
	return n, l.err
}

// isDecodeError tells damage in the message (bad base64 or
// quoted-printable) from a failing source.
func isDecodeError(err error) bool {
	var ce base64.CorruptInputError
	return errors.As(err, &ce) || strings.HasPrefix(err.Error(), "quotedprintable:") ||
		errors.Is(err, io.ErrUnexpectedEOF)
}

// base64Filter passes only base64 alphabet bytes, and stops at padding, so
// that line breaks, stray characters and junk after the data do not stop
// decoding. Padding the data lacks at its end is added, so that its last
// bytes decode too.
type base64Filter struct {
	r     io.Reader
	done  bool
	chars int // alphabet bytes before the padding
	pad   int
}

func (f *base64Filter) Read(p []byte) (int, error) {
	for {
		if f.done {
			return f.padding(p)
		}
		n, err := f.r.Read(p)
		out := 0
		for _, c := range p[:n] {
			switch {
			case c == '=':
				p[out] = c
				out++
				f.pad++
			case f.pad > 0:
				if !isSpace(c) {
					f.done = true
				}
			case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '+', c == '/':
				p[out] = c
				out++
				f.chars++
			}
			if f.done {
				break
			}
		}
		if err == io.EOF {
			f.done = true
		} else if err != nil {
			return out, err
		}
		if out > 0 {
			return out, nil
		}
	}
}

// padding writes the "=" that complete the last group of four, then ends.
func (f *base64Filter) padding(p []byte) (int, error) {
	missing := 0
	if rest := f.chars % 4; rest >= 2 {
		missing = 4 - rest - f.pad
	}
	n := 0
	for ; n < len(p) && n < missing; n++ {
		p[n] = '='
		f.pad++
	}
	if n > 0 {
		return n, nil
	}
	return 0, io.EOF
}

// uudecoder decodes uuencoded data: the lines between "begin MODE NAME"
// and "end". Each line starts with its decoded length; four characters
// carry three bytes, each character six bits plus 32 (a backquote stands
// for zero).
type uudecoder struct {
	br    *bufio.Reader
	begun bool
	done  bool
	out   []byte // decoded and not yet read
}

func (u *uudecoder) Read(p []byte) (int, error) {
	for len(u.out) == 0 {
		if u.done {
			return 0, io.EOF
		}
		line, err := u.br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// No uuencoded line is this long: the data ends.
			u.done = true
			continue
		}
		if err != nil && err != io.EOF {
			return 0, err
		}
		u.line(bytes.TrimRight(line, "\r\n"))
		if err == io.EOF {
			u.done = true
		}
	}
	n := copy(p, u.out)
	u.out = u.out[n:]
	return n, nil
}

// line takes one line of the encoded text.
func (u *uudecoder) line(text []byte) {
	switch {
	case !u.begun:
		u.begun = bytes.HasPrefix(text, []byte("begin "))
	case string(bytes.TrimSpace(text)) == "end":
		u.done = true
	case len(text) > 0:
		u.out = uudecodeLine(u.out[:0], text)
	}
}

// uudecodeLine appends the bytes one encoded line carries; characters
// missing at its end (stripped trailing spaces) count as zero.
func uudecodeLine(out, text []byte) []byte {
	sixBits := func(i int) byte {
		if i < len(text) {
			return (text[i] - ' ') & 63
		}
		return 0
	}
	n := int(sixBits(0))
	for i := 1; n > 0; i += 4 {
		c0, c1, c2, c3 := sixBits(i), sixBits(i+1), sixBits(i+2), sixBits(i+3)
		for _, b := range [3]byte{c0<<2 | c1>>4, c1<<4 | c2>>2, c2<<6 | c3} {
			if n > 0 {
				out = append(out, b)
				n--
			}
		}
	}
	return out
}

var uuBeginRE = regexp.MustCompile(`(?m)^begin [0-7]{3,4} ([^\r\n]+?)[ \t]*\r?$`)
var uuEndRE = regexp.MustCompile(`(?m)^end[ \t]*(\r?\n|$)`)

// uuencodedFiles takes the uuencoded files out of a plain text, where old
// mail programs put attachments: each block from "begin MODE NAME" to its
// "end" line becomes an attachment kept in memory, as the text is.
func (w *walker) uuencodedFiles(text []byte) ([]byte, []Attachment) {
	var kept []byte
	var attachments []Attachment
	rest := text
	// The regexp costs more than the rest of a plain text's conversion, and
	// almost no text holds a block: look for the line start it needs first.
	for hasLineStarting(rest, "begin ") {
		begin := uuBeginRE.FindSubmatchIndex(rest)
		if begin == nil {
			break
		}
		end := uuEndRE.FindIndex(rest[begin[1]:])
		if end == nil {
			break
		}
		blockEnd := begin[1] + end[1]
		content, _ := io.ReadAll(&uudecoder{br: bufio.NewReader(bytes.NewReader(rest[begin[0]:blockEnd]))})
		attachments = append(attachments, Attachment{
			Name:        safeName(headerUTF8(string(rest[begin[2]:begin[3]]))),
			ContentType: "application/octet-stream",
			Size:        int64(len(content)),
			Open:        bytesAttachment(content),
		})
		kept = append(kept, rest[:begin[0]]...)
		rest = rest[blockEnd:]
	}
	if attachments == nil {
		return text, nil
	}
	return append(kept, rest...), attachments
}

// hasLineStarting reports whether a line of text starts with prefix.
func hasLineStarting(text []byte, prefix string) bool {
	return bytes.HasPrefix(text, []byte(prefix)) || bytes.Contains(text, []byte("\n"+prefix))
}
