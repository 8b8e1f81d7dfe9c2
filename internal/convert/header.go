package convert

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/emersion/go-message"
	gomail "github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
)

// byteOrderMark is UTF-8's, which some Windows programs write first.
const byteOrderMark = "\uFEFF"

// Limits of one header, the message's or a part's. Beyond them a message
// header is refused (at intake, and as malformed if one is ever found in
// the spool) and a part header ends, its body starting at the line that
// passed them. A parsed field costs about 400 bytes of memory whatever its
// length, so fields are bounded as well as bytes: a header of a million
// short lines is as much a memory attack as one long line.
const (
	MaxHeaderBytes  = 1 << 20
	MaxHeaderFields = 1000
)

// maxFieldName is the longest field name read as one: RFC 5322's line
// length. HeaderMeter relies on it to classify a line from its start.
const maxFieldName = 998

// errHeaderTooLarge is a message header past MaxHeaderBytes or MaxHeaderFields.
var errHeaderTooLarge = &MalformedError{fmt.Sprintf("the message header is larger than %d MiB or has more than %d fields",
	MaxHeaderBytes>>20, MaxHeaderFields)}

// readHeader reads a message's top-level header as leniently as mail
// servers do (see headerLines); body continues after the header. The
// passthrough and an attached message's subject read the header through
// here; the part index feeds the same headerLines, so they agree on where
// the body starts.
func readHeader(br *bufio.Reader) (h textproto.Header, body io.Reader, err error) {
	hl := headerLines{top: true}
	body = br
	for {
		line, err := readLine(br, MaxHeaderBytes-hl.size)
		if err != nil && err != io.EOF {
			var malformed *MalformedError
			if errors.As(err, &malformed) {
				return h, nil, err
			}
			return h, nil, fmt.Errorf("reading the message header: %w", err)
		}
		if len(line) == 0 {
			break
		}
		step, stepErr := hl.add(line)
		if stepErr != nil {
			return h, nil, stepErr
		}
		if step == headerEndsBefore {
			body = io.MultiReader(bytes.NewReader(line), br)
		}
		if step != headerContinues || err == io.EOF {
			break
		}
	}
	h, err = hl.header()
	return h, body, err
}

// headerLines collects a header line by line, as leniently as mail servers
// read one. In a message header a UTF-8 byte-order mark, lines of white
// space and white space before the first field are skipped, and so is a
// leading mbox "From " line. The first line that is not a header field
// ends the header and starts the body, as if the blank line between them
// had been forgotten. A part header may also be empty.
type headerLines struct {
	top    bool // the message's own header, not a part's
	lines  int
	size   int // raw bytes taken so far
	fields int
	clean  bytes.Buffer
}

// headerStep tells what a header line did to the header.
type headerStep int

const (
	headerContinues  headerStep = iota
	headerEndsAfter             // the line was the blank line that ends the header
	headerEndsBefore            // the line is not part of the header: it starts the body
)

func (hl *headerLines) add(line []byte) (headerStep, error) {
	step, keep, err := hl.read(line, len(line))
	if keep != nil {
		hl.clean.Write(keep)
		hl.clean.WriteString("\r\n")
	}
	return step, err
}

// read takes one line of size bytes, of which line holds at least the
// first maxFieldName+2, and returns what it does to the header and the
// text to keep of it (nil: none). A line that passes the limits is not
// taken: it fails with errHeaderTooLarge and would start the body.
func (hl *headerLines) read(line []byte, size int) (step headerStep, keep []byte, err error) {
	first := hl.lines == 0
	hl.lines++
	hl.size += size
	if hl.size > MaxHeaderBytes {
		return headerEndsBefore, nil, errHeaderTooLarge
	}
	text := bytes.TrimRight(line, "\r\n")
	if hl.top && hl.fields == 0 && len(text) > 0 {
		if first {
			text = bytes.TrimPrefix(text, []byte(byteOrderMark))
		}
		if text = bytes.TrimLeft(text, " \t"); len(text) == 0 {
			return headerContinues, nil, nil
		}
	}
	switch {
	case len(text) == 0:
		return headerEndsAfter, nil, nil
	case hl.top && first && bytes.HasPrefix(text, []byte("From ")):
		return headerContinues, nil, nil
	case hl.fields > 0 && isSpace(text[0]):
	case isHeaderField(text):
		if hl.fields++; hl.fields > MaxHeaderFields {
			return headerEndsBefore, nil, errHeaderTooLarge
		}
	case hl.fields == 0 && hl.top:
		return headerEndsBefore, nil, &MalformedError{"the data is not a mail message: it does not start with a header field"}
	default:
		return headerEndsBefore, nil, nil
	}
	return headerContinues, text, nil
}

// header parses the lines taken.
func (hl *headerLines) header() (textproto.Header, error) {
	hl.clean.WriteString("\r\n")
	// A buffer the size of the header: a part header is often tiny.
	h, err := textproto.ReadHeader(bufio.NewReaderSize(&hl.clean, hl.clean.Len()))
	if err != nil {
		// Not expected: every line kept is one go-message accepts.
		return h, &MalformedError{"the message header cannot be read"}
	}
	return h, nil
}

// readLine reads one line, however long, up to limit bytes.
func readLine(br *bufio.Reader, limit int) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(line)+len(chunk) > limit {
			return nil, errHeaderTooLarge
		}
		line = append(line, chunk...)
		if err != bufio.ErrBufferFull {
			return line, err
		}
	}
}

// isHeaderField reports a "Name: value" line with a name go-message
// accepts (spaces before the colon are common and tolerated).
func isHeaderField(line []byte) bool {
	name, _, ok := bytes.Cut(line, []byte(":"))
	name = bytes.TrimRight(name, " \t")
	if !ok || len(name) == 0 || len(name) > maxFieldName {
		return false
	}
	for _, c := range name {
		if c < 33 || c > 126 {
			return false
		}
	}
	return true
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// headerUTF8 turns raw header text into UTF-8. Raw 8-bit bytes inside an
// encoded word (Eudora writes them) are escaped first, so that the word
// decodes in the charset it names; other raw text is read as lenientUTF8
// reads it.
func headerUTF8(s string) string {
	return lenientUTF8([]byte(escapeEightBitWords(s)))
}

// decodedText is a header's value as UTF-8 with RFC 2047 words decoded.
func decodedText(h gomail.Header, key string) string {
	return strings.TrimSpace(decodeWord(headerUTF8(h.Get(key))))
}

// addrSpecRE finds bare addresses in text that does not parse; a domain
// without a dot (localhost, an intranet host) is an address too.
var addrSpecRE = regexp.MustCompile(`[^\s<>,;:"()\[\]@]+@[^\s<>,;:"()\[\]@]+`)

// addressList parses an address header leniently: when the whole list does
// not parse, each entry (separated by commas, or the semicolons Outlook
// users type) is parsed alone, and an entry that still does not parse gives
// its bare addresses without a name. Display names are decoded by
// decodeWord, like every other header text: net/mail is given the encoded
// words in quotes, so that it keeps them as they are. This also decodes
// encoded words that a quoted display name holds, as every mail client
// does, though RFC 2047 forbids them there.
func addressList(h gomail.Header, key string) []*mail.Address {
	v := quoteEncodedWords(headerUTF8(h.Get(key)))
	if strings.TrimSpace(v) == "" {
		return nil
	}
	list, err := mail.ParseAddressList(v)
	if err != nil {
		list = nil
		for _, entry := range splitOutsideQuotes(v, ",;") {
			list = append(list, entryAddresses(entry)...)
		}
	}
	for _, a := range list {
		a.Name = decodeWord(a.Name)
	}
	return list
}

// quoteEncodedWords puts each encoded word of an address list that stands
// outside quotes, comments and angle addresses in quotes of its own.
func quoteEncodedWords(v string) string {
	matches := encodedWordRE.FindAllStringIndex(v, -1)
	if matches == nil {
		return v
	}
	var b strings.Builder
	var st structure
	last := 0
	for i := 0; i < len(v) && len(matches) > 0; i++ {
		if m := matches[0]; i == m[0] {
			matches = matches[1:]
			if st.outside() {
				b.WriteString(v[last:m[0]])
				b.WriteString(`"` + quotedPairs.Replace(v[m[0]:m[1]]) + `"`)
				last = m[1]
				i = m[1] - 1 // the word is a quoted string now: nothing in it is structure
				continue
			}
		}
		st.next(v[i])
	}
	return b.String() + v[last:]
}

// quotedPairs escapes text for a quoted string.
var quotedPairs = strings.NewReplacer(`\`, `\\`, `"`, `\"`)

// entryAddresses parses one entry of an address list that does not parse
// whole. An entry that does not parse as it is is tried again without what
// net/mail refuses but RFC 5322 allows: comments and white space inside the
// address (pete(his account)@silly.test) and an obsolete source route
// (<@relay:jdoe@example.com>). Failing that, its bare addresses are kept.
func entryAddresses(entry string) []*mail.Address {
	// A group's name and terminator ("team: a@b;") are not addresses.
	if name, rest, ok := strings.Cut(entry, ":"); ok && !strings.ContainsAny(name, `"<@(`) {
		entry = rest
	}
	entry = strings.TrimSpace(entry)
	if entry == "" {
		return nil
	}
	if a, err := mail.ParseAddress(entry); err == nil {
		return []*mail.Address{a}
	}
	repaired := obsRouteRE.ReplaceAllString(withoutInnerCFWS(entry), "<")
	if a, err := mail.ParseAddress(repaired); err == nil {
		return []*mail.Address{a}
	}
	var out []*mail.Address
	for _, addr := range addrSpecRE.FindAllString(repaired, -1) {
		out = append(out, &mail.Address{Address: addr})
	}
	return out
}

// obsRouteRE matches the start of an angle address with an obsolete source
// route (RFC 5322 section 4.4), which only the last address after it needs.
var obsRouteRE = regexp.MustCompile(`<[\s,]*@[^<>:"]*:`)

// withoutInnerCFWS drops what RFC 5322 allows inside an address but
// net/mail refuses: comments, except one that ends the entry, which
// net/mail reads as the display name ("a@b (Name)"), and white space
// beside "@" (john @ example.com).
func withoutInnerCFWS(s string) string {
	var out, comment strings.Builder
	var st structure
	for i := 0; i < len(s); i++ {
		c := s[i]
		inComment := st.comment > 0
		st.next(c)
		switch {
		case inComment || st.comment > 0:
			comment.WriteByte(c)
			if st.comment == 0 {
				if strings.TrimSpace(s[i+1:]) == "" {
					out.WriteString(comment.String())
				}
				comment.Reset()
			}
		case !st.quoted && (c == ' ' || c == '\t') &&
			(strings.HasPrefix(strings.TrimLeft(s[i+1:], " \t"), "@") || strings.HasSuffix(out.String(), "@")):
		default:
			out.WriteByte(c)
		}
	}
	return out.String() + comment.String()
}

// splitOutsideQuotes splits s at any of the bytes in seps where it is not
// inside a quoted string, an angle-bracketed address or a comment.
func splitOutsideQuotes(s, seps string) []string {
	var parts []string
	var st structure
	start := 0
	for i := 0; i < len(s); i++ {
		if st.outside() && strings.IndexByte(seps, s[i]) >= 0 {
			parts = append(parts, s[start:i])
			start = i + 1
		}
		st.next(s[i])
	}
	return append(parts, s[start:])
}

// structure follows structured header text byte by byte: quoted strings,
// comments (which nest) and angle-bracketed addresses. Inside a quoted
// string only its end and escapes count; inside a comment, only
// parentheses and escapes.
type structure struct {
	quoted, escaped bool
	comment, angle  int
}

func (st *structure) next(c byte) {
	switch {
	case st.escaped:
		st.escaped = false
	case c == '\\':
		st.escaped = true
	case st.comment == 0 && c == '"':
		st.quoted = !st.quoted
	case st.quoted:
	case c == '(':
		st.comment++
	case c == ')' && st.comment > 0:
		st.comment--
	case st.comment > 0:
	case c == '<':
		st.angle++
	case c == '>' && st.angle > 0:
		st.angle--
	}
}

// outside reports that the next byte is plain structure: not escaped, and
// in no quoted string, comment or angle address.
func (st *structure) outside() bool {
	return !st.escaped && !st.quoted && st.comment == 0 && st.angle == 0
}

// parseParams parses a Content-Type or Content-Disposition value, more
// leniently than mime.ParseMediaType, which gives up every parameter when
// one is bad: a bad parameter is skipped, a repeated one keeps its first
// value, unquoted 8-bit values are kept, and RFC 2231 values (extended,
// continued) are decoded from any charset go-message knows. value is the
// part before the parameters, in lower case.
func parseParams(v string) (value string, params map[string]string) {
	segments := splitOutsideQuotes(v, ";")
	value = strings.ToLower(strings.TrimSpace(segments[0]))
	params = map[string]string{}
	type piece struct {
		index    int
		value    string
		extended bool
	}
	continued := map[string][]piece{}
	for _, seg := range segments[1:] {
		key, value, ok := strings.Cut(seg, "=")
		key = strings.ToLower(strings.TrimSpace(key))
		if !ok || key == "" {
			continue
		}
		value = unquote(strings.TrimSpace(value))
		base, rest, isContinued := strings.Cut(key, "*")
		if !isContinued {
			if _, seen := params[key]; !seen {
				params[key] = value
			}
			continue
		}
		// base* is extended; base*N a section; base*N* an extended section.
		p := piece{extended: rest == "" || strings.HasSuffix(rest, "*")}
		if number := strings.TrimSuffix(rest, "*"); number != "" {
			n, err := strconv.Atoi(number)
			if err != nil || n < 0 || n > 999 {
				continue
			}
			p.index = n
		}
		p.value = value
		continued[base] = append(continued[base], p)
	}
	for base, pieces := range continued {
		sort.SliceStable(pieces, func(i, j int) bool { return pieces[i].index < pieces[j].index })
		var raw []byte
		cs := ""
		for i, p := range pieces {
			if i > 0 && p.index == pieces[i-1].index {
				continue
			}
			if !p.extended {
				raw = append(raw, p.value...)
				continue
			}
			value := p.value
			if i == 0 {
				// charset'language'value
				if c, rest, ok := strings.Cut(value, "'"); ok {
					if _, v, ok := strings.Cut(rest, "'"); ok {
						cs, value = c, v
					}
				}
			}
			raw = append(raw, percentDecode(value)...)
		}
		params[base] = toUTF8(raw, cs)
	}
	return value, params
}

// isMediaType reports a well-formed type/subtype.
func isMediaType(v string) bool {
	typ, sub, ok := strings.Cut(v, "/")
	return ok && isToken(typ) && isToken(sub)
}

// unquote removes a quoted string's quotes and escapes, ignoring anything
// after the closing quote; an unquoted value is returned as it is.
func unquote(v string) string {
	if !strings.HasPrefix(v, `"`) {
		return v
	}
	var b strings.Builder
	for i := 1; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\\' && i+1 < len(v):
			i++
			b.WriteByte(v[i])
		case c == '"':
			return b.String()
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// percentDecode undoes RFC 2231 %XX escapes, keeping a stray %.
func percentDecode(s string) []byte {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				out = append(out, byte(n))
				i += 2
				continue
			}
		}
		out = append(out, s[i])
	}
	return out
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?=`, c) >= 0 {
			return false
		}
	}
	return true
}

// mailHeader wraps a raw header for go-message's mail helpers.
func mailHeader(h textproto.Header) gomail.Header {
	return gomail.Header{Header: message.Header{Header: h}}
}
