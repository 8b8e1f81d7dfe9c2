package convert

import (
	"encoding/base64"
	"fmt"
	"io"
	"strconv"
	"sync"
	"unicode/utf8"
)

// The Graph request bodies are written here field by field, streaming
// attachment content from the source and long text in pieces, so that no
// request is ever held whole in memory. The same code counts the bytes
// without writing them, so sizes are exact; the output is byte for byte
// what encoding/json writes for SendMailRequest, Message and FileAttachment.

// WriteSendMailRequest writes the body of POST /users/{mailbox}/sendMail
// for r to w, every attachment inline, read through its Open.
func (r *Result) WriteSendMailRequest(w io.Writer, saveToSentItems bool) error {
	j := newJSONWriter(w)
	j.sendMailRequest(&r.Message, r.Attachments, saveToSentItems)
	return j.err
}

// SendMailRequestSize is the exact size in bytes of what
// WriteSendMailRequest writes, computed without reading any attachment:
// the sender uses it to choose between one sendMail request and a draft
// with upload sessions, and as the request's Content-Length.
func (r *Result) SendMailRequestSize(saveToSentItems bool) int64 {
	j := newJSONWriter(nil)
	j.sendMailRequest(&r.Message, r.Attachments, saveToSentItems)
	return j.n
}

// WriteMessage writes m as a JSON message resource (a draft) to w, with
// attachments inline in place of m.Attachments.
func WriteMessage(w io.Writer, m *Message, attachments []Attachment) error {
	j := newJSONWriter(w)
	j.message(m, attachments)
	return j.err
}

// MessageSize is the size in bytes of what WriteMessage writes, computed
// without reading any attachment.
func MessageSize(m *Message, attachments []Attachment) int64 {
	j := newJSONWriter(nil)
	j.message(m, attachments)
	return j.n
}

// WriteJSON writes a as one JSON fileAttachment, its content in base64.
func (a Attachment) WriteJSON(w io.Writer) error {
	j := newJSONWriter(w)
	j.attachment(a)
	return j.err
}

// EncodedSize is the size in bytes of what WriteJSON writes, computed
// without reading the content.
func (a Attachment) EncodedSize() int64 {
	j := newJSONWriter(nil)
	j.attachment(a)
	return j.n
}

// SourceError is a failure to read an attachment's content from the
// source: the message is fine, the spool is not (or not now).
type SourceError struct {
	Name string // the attachment's file name
	Err  error
}

func (e *SourceError) Error() string { return fmt.Sprintf("attachment %q: %v", e.Name, e.Err) }
func (e *SourceError) Unwrap() error { return e.Err }

// jsonWriter writes JSON to w, or only counts it when w is nil. The first
// error sticks and stops further output.
type jsonWriter struct {
	w   io.Writer
	n   int64
	err error
}

func newJSONWriter(w io.Writer) *jsonWriter { return &jsonWriter{w: w} }

func (j *jsonWriter) raw(s string) {
	j.n += int64(len(s))
	if j.w != nil && j.err == nil {
		_, j.err = io.WriteString(j.w, s)
	}
}

func (j *jsonWriter) rawBytes(b []byte) {
	j.n += int64(len(b))
	if j.w != nil && j.err == nil {
		_, j.err = j.w.Write(b)
	}
}

// str writes s as a JSON string, escaped as encoding/json escapes it. The
// output gathers in a pooled buffer, written out whenever it holds
// strBuffer bytes, so that a text of any length costs neither a copy of
// its size nor a write per escape. When only counting, nothing is copied.
func (j *jsonWriter) str(s string) {
	if j.w == nil {
		j.n += strSize(s)
		return
	}
	buf := strBuffers.Get().(*[]byte)
	out := append((*buf)[:0], '"')
	start := 0
	for i := 0; i < len(s); {
		if jsonPlain[s[i]] {
			i++ // the common case, kept inline
			continue
		}
		escape, size := jsonEscape(s, i)
		if escape != "" {
			out = append(j.appendRun(out, s[start:i]), escape...)
			start = i + size
		}
		i += size
	}
	out = append(j.appendRun(out, s[start:]), '"')
	j.rawBytes(out)
	*buf = out
	strBuffers.Put(buf)
}

// strSize is the length of s written as a JSON string by str: its
// quotes, its bytes, and what each escape adds to the character it
// replaces.
func strSize(s string) int64 {
	n := int64(len(s)) + 2
	for i := 0; i < len(s); {
		if jsonPlain[s[i]] {
			i++
			continue
		}
		escape, size := jsonEscape(s, i)
		if escape != "" {
			n += int64(len(escape) - size)
		}
		i += size
	}
	return n
}

// strBuffer is how much escaped text str gathers before writing it.
const strBuffer = 16 << 10

var strBuffers = sync.Pool{New: func() any { b := make([]byte, 0, strBuffer); return &b }}

// appendRun appends run, text needing no escape, to out; when out would
// grow past strBuffer it writes out first, and a run that large itself.
func (j *jsonWriter) appendRun(out []byte, run string) []byte {
	if len(out)+len(run) <= strBuffer {
		return append(out, run...)
	}
	j.rawBytes(out)
	if len(run) > strBuffer {
		j.raw(run)
		return out[:0]
	}
	return append(out[:0], run...)
}

// jsonEscape returns what encoding/json writes for the character at s[i]
// ("" for the character itself) and the character's length in bytes: the
// escapes of "\\", the quote, controls and HTML's <, > and &; \ufffd
// for each invalid UTF-8 byte; and U+2028 and U+2029, which end lines in
// JavaScript.
func jsonEscape(s string, i int) (string, int) {
	if c := s[i]; c < utf8.RuneSelf {
		return asciiEscapes[c], 1
	}
	r, size := utf8.DecodeRuneInString(s[i:])
	switch {
	case r == utf8.RuneError && size == 1:
		return `\ufffd`, 1
	case r == '\u2028':
		return `\u2028`, size
	case r == '\u2029':
		return `\u2029`, size
	}
	return "", size
}

// jsonPlain tells the bytes that stand for themselves in a JSON string:
// the ASCII characters without an escape.
var jsonPlain = func() (table [256]bool) {
	for c, escape := range asciiEscapes {
		table[c] = escape == ""
	}
	return table
}()

// asciiEscapes is encoding/json's escape of each ASCII byte, "" where it
// writes the byte itself.
var asciiEscapes = func() (table [utf8.RuneSelf]string) {
	const hex = "0123456789abcdef"
	for c := range byte(0x20) {
		table[c] = `\u00` + string(hex[c>>4]) + string(hex[c&0xf])
	}
	for c, escape := range map[byte]string{'\b': `\b`, '\f': `\f`, '\n': `\n`, '\r': `\r`, '\t': `\t`,
		'"': `\"`, '\\': `\\`, '<': `\u003c`, '>': `\u003e`, '&': `\u0026`} {
		table[c] = escape
	}
	return table
}()

func (j *jsonWriter) bool(b bool) { j.raw(strconv.FormatBool(b)) }

func (j *jsonWriter) sendMailRequest(m *Message, attachments []Attachment, saveToSentItems bool) {
	j.raw(`{"message":`)
	j.message(m, attachments)
	j.raw(`,"saveToSentItems":`)
	j.bool(saveToSentItems)
	j.raw("}")
}

// message writes m with attachments in place of m.Attachments, in the
// field order and with the omitempty rules of Message's struct tags.
func (j *jsonWriter) message(m *Message, attachments []Attachment) {
	j.raw(`{"subject":`)
	j.str(m.Subject)
	j.raw(`,"body":{"contentType":`)
	j.str(m.Body.ContentType)
	j.raw(`,"content":`)
	j.str(m.Body.Content)
	j.raw("}")
	if m.From != nil {
		j.raw(`,"from":`)
		j.recipient(*m.From)
	}
	array(j, "toRecipients", m.ToRecipients, j.recipient)
	array(j, "ccRecipients", m.CcRecipients, j.recipient)
	array(j, "bccRecipients", m.BccRecipients, j.recipient)
	array(j, "replyTo", m.ReplyTo, j.recipient)
	if m.Importance != "" {
		j.raw(`,"importance":`)
		j.str(m.Importance)
	}
	if m.InternetMessageID != "" {
		j.raw(`,"internetMessageId":`)
		j.str(m.InternetMessageID)
	}
	array(j, "internetMessageHeaders", m.InternetMessageHeaders, j.header)
	array(j, "attachments", attachments, j.attachment)
	j.raw("}")
}

// array writes ,"key":[items] after an object's earlier fields, or nothing
// for no items, as omitempty does.
func array[T any](j *jsonWriter, key string, items []T, write func(T)) {
	if len(items) == 0 {
		return
	}
	j.raw(`,"` + key + `":[`)
	for i, item := range items {
		if i > 0 {
			j.raw(",")
		}
		write(item)
	}
	j.raw("]")
}

func (j *jsonWriter) recipient(r Recipient) {
	j.raw(`{"emailAddress":{`)
	if r.EmailAddress.Name != "" {
		j.raw(`"name":`)
		j.str(r.EmailAddress.Name)
		j.raw(",")
	}
	j.raw(`"address":`)
	j.str(r.EmailAddress.Address)
	j.raw("}}")
}

func (j *jsonWriter) header(h Header) {
	j.raw(`{"name":`)
	j.str(h.Name)
	j.raw(`,"value":`)
	j.str(h.Value)
	j.raw("}")
}

// attachment writes a as a fileAttachment, its content read through Open
// and base64-encoded on the way.
func (j *jsonWriter) attachment(a Attachment) {
	j.raw(`{"@odata.type":`)
	j.str(FileAttachmentType)
	j.raw(`,"name":`)
	j.str(a.Name)
	if a.ContentType != "" {
		j.raw(`,"contentType":`)
		j.str(a.ContentType)
	}
	j.raw(`,"isInline":`)
	j.bool(a.IsInline)
	if a.ContentID != "" {
		j.raw(`,"contentId":`)
		j.str(a.ContentID)
	}
	j.raw(`,"contentBytes":"`)
	j.base64(a)
	j.raw(`"}`)
}

// base64 writes the attachment's content in standard base64: exactly
// (Size+2)/3*4 bytes, or an error if the source does not hold Size bytes.
func (j *jsonWriter) base64(a Attachment) {
	encoded := (a.Size + 2) / 3 * 4
	if j.w == nil || j.err != nil {
		j.n += encoded
		return
	}
	rc, err := a.Open()
	if err != nil {
		j.err = &SourceError{Name: a.Name, Err: err}
		return
	}
	defer rc.Close()
	cw := &countingWriter{w: j.w}
	enc := base64.NewEncoder(base64.StdEncoding, cw)
	n, err := io.Copy(enc, io.LimitReader(rc, a.Size))
	if err == nil {
		err = enc.Close()
	}
	j.n += cw.n
	switch {
	case cw.err != nil:
		j.err = cw.err // the destination failed, not the source
	case err != nil:
		j.err = &SourceError{Name: a.Name, Err: err}
	case n != a.Size:
		j.err = &SourceError{Name: a.Name, Err: fmt.Errorf("%d bytes where %d were measured", n, a.Size)}
	}
}

// countingWriter counts what reaches w and keeps w's own error apart.
type countingWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	if err != nil {
		c.err = err
	}
	return n, err
}
