package convert

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"path"
	"strings"
)

// maxBodyBytes bounds the text one message keeps in memory, all its body
// parts together; a text part past it travels as an attachment, streamed
// from the source like any other. It is Graph's request limit: more text
// than that can never travel as a message body anyway. Memory per message
// in flight stays bounded whatever the number and size of text parts.
const maxBodyBytes = 4 << 20

// tree is what a walk over one entity found: at most one body, and
// attachments.
type tree struct {
	body        *textBody
	attachments []Attachment
}

type textBody struct {
	html    bool
	content string
}

// walker walks the entity tree the index built, reading each leaf as a
// section of the message, once to describe it and again whenever an
// attachment is opened.
type walker struct {
	raw       io.ReaderAt
	unnamed   int // attachments named so far without a name of their own
	bodyBytes int // text kept in memory so far, up to maxBodyBytes
}

func (w *walker) walk(e *entity) (tree, error) {
	if e.multipart {
		return w.walkMultipart(e)
	}
	return w.leaf(e, false)
}

func (w *walker) walkMultipart(e *entity) (tree, error) {
	subtype := strings.TrimPrefix(e.mediaType, "multipart/")
	var children []tree
	for _, child := range e.children {
		if child.empty() {
			continue
		}
		var t tree
		var err error
		if subtype == "related" && len(children) > 0 {
			t, err = w.leaf(child, true)
		} else {
			t, err = w.walk(child)
		}
		if err != nil {
			return tree{}, err
		}
		children = append(children, t)
	}
	switch subtype {
	case "alternative":
		return chooseAlternative(children), nil
	case "related":
		return mergeRelated(children), nil
	}
	return w.mergeMixed(children), nil
}

// chooseAlternative keeps the richest alternative: the last with HTML,
// else the last with any body; with no body at all (an image only), the
// last that has attachments. A calendar alternative (a meeting request) is
// kept too, as an .ics attachment, since Graph has no place for it.
func chooseAlternative(children []tree) tree {
	best := -1
	for i, c := range children {
		switch {
		case c.body == nil:
		case c.body.html:
			best = i
		case best < 0 || !children[best].body.html:
			best = i
		}
	}
	for i := len(children) - 1; best < 0 && i >= 0; i-- {
		if len(children[i].attachments) > 0 {
			best = i
		}
	}
	var t tree
	if best >= 0 {
		t = children[best]
	}
	for i, c := range children {
		for _, a := range c.attachments {
			if i != best && strings.HasPrefix(a.ContentType, "text/calendar") {
				t.attachments = append(t.attachments, a)
			}
		}
	}
	return t
}

// mergeRelated takes the root's body; the other parts are the root's
// resources, such as inline images.
func mergeRelated(children []tree) tree {
	var t tree
	for i, c := range children {
		if i == 0 {
			t.body = c.body
		}
		t.attachments = append(t.attachments, c.attachments...)
	}
	return t
}

// mergeMixed keeps the first body. A later body of the same kind joins it:
// Apple Mail splits a body around inline attachments into several parts. A
// body of the other kind travels as an attachment.
func (w *walker) mergeMixed(children []tree) tree {
	var t tree
	var joined strings.Builder // the body so far, built once however many parts join it
	for _, c := range children {
		t.attachments = append(t.attachments, c.attachments...)
		switch {
		case c.body == nil:
		case t.body == nil:
			t.body = &textBody{html: c.body.html}
			joined.WriteString(c.body.content)
		case c.body.html == t.body.html:
			if !c.body.html && joined.Len() > 0 && !strings.HasSuffix(joined.String(), "\n") {
				joined.WriteString("\r\n")
			}
			joined.WriteString(c.body.content)
		default:
			t.attachments = append(t.attachments, w.bodyAttachment(c.body))
		}
	}
	if t.body != nil {
		t.body.content = joined.String()
	}
	return t
}

// bodyAttachment carries a body that has no place in the message.
func (w *walker) bodyAttachment(body *textBody) Attachment {
	ext, ct := ".txt", "text/plain; charset=utf-8"
	if body.html {
		ext, ct = ".html", "text/html; charset=utf-8"
	}
	content := []byte(body.content)
	return Attachment{
		Name: w.defaultName(ext), ContentType: ct, Size: int64(len(content)),
		Open: bytesAttachment(content),
	}
}

// leaf describes a part that is not walked into: a body text, or an
// attachment streamed later from the message.
func (w *walker) leaf(e *entity, inRelated bool) (tree, error) {
	isText := e.mediaType == "text/plain" || e.mediaType == "text/html"
	var size int64
	var subject string
	if isText && e.disposition != "attachment" && e.filename == "" && !inRelated {
		t, n, err := w.readText(e, maxBodyBytes-w.bodyBytes)
		if t.body != nil {
			w.bodyBytes += len(t.body.content)
		}
		if err != nil || t.body != nil {
			return t, err
		}
		// Too large for a body: it travels as an attachment.
		size = n
	} else {
		var err error
		if size, subject, err = w.measure(e); err != nil {
			return tree{}, err
		}
	}
	a := Attachment{Name: e.filename, ContentType: e.mediaType, Size: size, Open: w.opener(e), part: e}
	if cs := e.charset; strings.HasPrefix(e.mediaType, "text/") && cs != "" && isToken(cs) {
		// The bytes stay in their charset: say which it is.
		a.ContentType += "; charset=" + cs
	}
	switch {
	case a.Name != "":
	case e.mediaType == "message/rfc822":
		a.Name = safeName(firstNonEmpty(subject, "message")) + ".eml"
	case e.mediaType == "text/calendar":
		a.Name = "invite.ics"
	default:
		a.Name = w.defaultName(extension(e.mediaType))
	}
	a.Name = safeName(a.Name)
	if id := strings.Trim(strings.TrimSpace(e.header.Get("Content-Id")), "<>"); id != "" {
		a.ContentID = id
		a.IsInline = e.disposition != "attachment"
	} else if loc := strings.TrimSpace(e.header.Get("Content-Location")); loc != "" && inRelated {
		a.location = loc
	}
	return tree{attachments: []Attachment{a}}, nil
}

// body streams the decoded body of e from the message.
func (w *walker) body(e *entity) io.Reader {
	return transferDecoder(e.encoding, io.NewSectionReader(w.raw, e.bodyStart, e.bodyEnd-e.bodyStart))
}

// readText decodes a body part to UTF-8; uuencoded files in plain text
// become attachments. A part over limit bytes gives no body but its
// decoded size, read to the end.
func (w *walker) readText(e *entity, limit int) (tree, int64, error) {
	r := w.body(e)
	// Decoding never lengthens a body (base64 and quoted-printable
	// shorten it), so a buffer of the encoded length holds it: reading
	// into one that doubles as it fills made twice the garbage. One byte
	// more tells a body over limit, and one more again lets the read that
	// finds the end happen without growing the buffer. The limit is below
	// zero once earlier parts, grown by their conversion to UTF-8, used
	// more than all of it.
	buf := make([]byte, 0, max(min(e.bodyEnd-e.bodyStart, int64(limit)), 0)+2)
	raw, err := readAllInto(buf, io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return tree{}, 0, err
	}
	if len(raw) <= limit {
		var t tree
		if e.mediaType == "text/plain" {
			raw, t.attachments = w.uuencodedFiles(raw)
		}
		t.body = &textBody{html: e.mediaType == "text/html", content: textToUTF8(raw, e.mediaType, e.charset)}
		return t, 0, nil
	}
	rest, err := io.Copy(io.Discard, r)
	return tree{}, int64(len(raw)) + rest, err
}

// readAllInto is io.ReadAll appending to buf, which it grows only if r
// holds more than buf's capacity.
func readAllInto(buf []byte, r io.Reader) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// measure counts an attachment's decoded bytes without keeping them; for an
// attached message it also reads its subject, to name the file.
func (w *walker) measure(e *entity) (int64, string, error) {
	cr := &countingReader{r: w.body(e)}
	var subject string
	if e.mediaType == "message/rfc822" {
		br := bufio.NewReader(cr)
		if h, _, err := readHeader(br); err == nil {
			subject = decodedText(mailHeader(h), "Subject")
		}
		_, err := io.Copy(io.Discard, br)
		return cr.n, subject, err
	}
	_, err := io.Copy(io.Discard, cr)
	return cr.n, subject, err
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// opener streams the decoded content of e: a section read of the message,
// costing the size of the part alone.
func (w *walker) opener(e *entity) Opener {
	return func() (io.ReadCloser, error) { return io.NopCloser(w.body(e)), nil }
}

// bytesAttachment opens content kept in memory.
func bytesAttachment(content []byte) Opener {
	return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(content)), nil }
}

type readCloser struct {
	io.Reader
	io.Closer
}

func (w *walker) defaultName(ext string) string {
	w.unnamed++
	return fmt.Sprintf("attachment-%d%s", w.unnamed, ext)
}

// extensions for types whose mime.ExtensionsByType answer varies by system.
var extensions = map[string]string{
	"application/pdf": ".pdf", "image/jpeg": ".jpg", "image/png": ".png", "image/gif": ".gif",
	"image/tiff": ".tif", "text/plain": ".txt", "text/html": ".html", "text/csv": ".csv",
	"message/rfc822": ".eml", "text/calendar": ".ics", "application/zip": ".zip",
	"application/octet-stream": ".bin", "message/delivery-status": ".txt", "text/rfc822-headers": ".txt",
	"application/pkcs7-signature": ".p7s", "application/pgp-signature": ".asc",
}

func extension(mediaType string) string {
	if ext, ok := extensions[mediaType]; ok {
		return ext
	}
	return ".bin"
}

// safeName keeps a file name Graph and mail clients accept.
func safeName(name string) string {
	name = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || strings.ContainsRune(`/\:*?"<>|`, r) {
			return '_'
		}
		return r
	}, strings.TrimSpace(name))
	name = path.Base("/" + name)
	if name == "/" || name == "." || name == "" {
		return "attachment"
	}
	if len(name) > 200 {
		ext := path.Ext(name)
		if len(ext) > 10 {
			ext = ""
		}
		name = strings.ToValidUTF8(name[:200-len(ext)], "") + ext
	}
	return name
}

func firstNonEmpty(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}
