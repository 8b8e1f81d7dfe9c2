package convert

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime/quotedprintable"
	"path"
	"strings"

	"github.com/emersion/go-message/textproto"
)

// maxDepth bounds MIME nesting: deeper structures are kept as attachments.
const maxDepth = 20

// maxBodyBytes bounds the text one message keeps in memory, all its body
// parts together; a text part past it travels as an attachment, streamed
// from the source like any other. It is Graph's request limit: more text
// than that can never travel as a message body anyway. Memory per message
// in flight stays bounded whatever the number and size of text parts.
const maxBodyBytes = 4 << 20

// part is one MIME entity as the walker sees it.
type part struct {
	header    textproto.Header
	body      io.Reader // raw, still transfer-encoded
	mediaType string    // lower case; text/plain when absent or unreadable
	params    map[string]string
	path      []int // indexes from the root through nested multiparts
}

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

// walker walks a message once to describe it; open re-reads the message
// when an attachment is streamed later.
type walker struct {
	open      Opener
	unnamed   int // attachments named so far without a name of their own
	bodyBytes int // text kept in memory so far, up to maxBodyBytes
}

func newPart(h textproto.Header, body io.Reader, path []int, defaultType string) *part {
	mt, params := parseParams(h.Get("Content-Type"))
	if !isMediaType(mt) {
		mt = defaultType
	}
	return &part{header: h, body: body, path: path, mediaType: mt, params: params}
}

func (w *walker) walk(p *part, depth int) (tree, error) {
	if strings.HasPrefix(p.mediaType, "multipart/") && p.params["boundary"] != "" && depth < maxDepth {
		return w.walkMultipart(p, depth)
	}
	return w.leaf(p, false)
}

func (w *walker) walkMultipart(p *part, depth int) (tree, error) {
	subtype := strings.TrimPrefix(p.mediaType, "multipart/")
	childDefault := "text/plain"
	if subtype == "digest" {
		childDefault = "message/rfc822"
	}
	var children []tree
	mr := newMultipartReader(p.body, p.params["boundary"])
	for i := 0; ; i++ {
		cp, err := mr.NextPart()
		if err != nil {
			// io.EOF after the final boundary; anything else is a broken
			// or missing boundary: keep the parts read so far.
			break
		}
		child := newPart(cp.Header, cp, append(append([]int(nil), p.path...), i), childDefault)
		var t tree
		if subtype == "related" && i > 0 {
			t, err = w.leaf(child, true)
		} else {
			t, err = w.walk(child, depth+1)
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
// else the last with any body. A calendar alternative (a meeting request)
// is kept too, as an .ics attachment, since Graph has no place for it.
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
	for _, c := range children {
		t.attachments = append(t.attachments, c.attachments...)
		switch {
		case c.body == nil:
		case t.body == nil:
			t.body = c.body
		case c.body.html == t.body.html:
			joined := t.body.content
			if !c.body.html && joined != "" && !strings.HasSuffix(joined, "\n") {
				joined += "\r\n"
			}
			t.body = &textBody{html: c.body.html, content: joined + c.body.content}
		default:
			t.attachments = append(t.attachments, w.bodyAttachment(c.body))
		}
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
		Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(content)), nil },
	}
}

// leaf describes a part that is not walked into: a body text, or an
// attachment streamed later from the source.
func (w *walker) leaf(p *part, inRelated bool) (tree, error) {
	disposition, dparams := parseParams(p.header.Get("Content-Disposition"))
	filename := decodeWord(headerUTF8(firstNonEmpty(dparams["filename"], p.params["name"])))
	isText := p.mediaType == "text/plain" || p.mediaType == "text/html"
	var size int64
	var subject string
	if isText && disposition != "attachment" && filename == "" && !inRelated {
		body, n, err := readText(p, maxBodyBytes-w.bodyBytes)
		if body != nil {
			w.bodyBytes += len(body.content)
		}
		if err != nil || body != nil {
			return tree{body: body}, err
		}
		// Too large for a body: it travels as an attachment.
		size = n
	} else {
		var err error
		if size, subject, err = measure(p); err != nil {
			return tree{}, err
		}
	}
	a := Attachment{Name: filename, ContentType: p.mediaType, Size: size, Open: w.opener(p.path)}
	if cs := p.params["charset"]; strings.HasPrefix(p.mediaType, "text/") && cs != "" && isToken(cs) {
		// The bytes stay in their charset: say which it is.
		a.ContentType += "; charset=" + cs
	}
	switch {
	case a.Name != "":
	case p.mediaType == "message/rfc822":
		a.Name = safeName(firstNonEmpty(subject, "message")) + ".eml"
	case p.mediaType == "text/calendar":
		a.Name = "invite.ics"
	default:
		a.Name = w.defaultName(extension(p.mediaType))
	}
	a.Name = safeName(a.Name)
	if id := strings.Trim(strings.TrimSpace(p.header.Get("Content-Id")), "<>"); id != "" {
		a.ContentID = id
		a.IsInline = disposition != "attachment"
	} else if loc := strings.TrimSpace(p.header.Get("Content-Location")); loc != "" && inRelated {
		a.location = loc
	}
	return tree{attachments: []Attachment{a}}, nil
}

// readText decodes a body part to UTF-8. A part over limit bytes gives no
// body but its decoded size, read to the end.
func readText(p *part, limit int) (*textBody, int64, error) {
	r := transferDecoder(p.header.Get("Content-Transfer-Encoding"), p.body)
	raw, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return nil, 0, err
	}
	if len(raw) <= limit {
		return &textBody{html: p.mediaType == "text/html", content: textToUTF8(raw, p.mediaType, p.params["charset"])}, 0, nil
	}
	rest, err := io.Copy(io.Discard, r)
	return nil, int64(len(raw)) + rest, err
}

// measure counts an attachment's decoded bytes without keeping them; for an
// attached message it also reads its subject, to name the file.
func measure(p *part) (int64, string, error) {
	cr := &countingReader{r: transferDecoder(p.header.Get("Content-Transfer-Encoding"), p.body)}
	var subject string
	if p.mediaType == "message/rfc822" {
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

// opener streams the decoded content of the part at path by walking the
// message again: the source is read, never held.
func (w *walker) opener(path []int) Opener {
	open := w.open
	return func() (io.ReadCloser, error) {
		rc, err := open()
		if err != nil {
			return nil, err
		}
		p, err := findPart(rc, path)
		if err != nil {
			rc.Close()
			return nil, err
		}
		return readCloser{transferDecoder(p.header.Get("Content-Transfer-Encoding"), p.body), rc}, nil
	}
}

func findPart(r io.Reader, path []int) (*part, error) {
	h, body, err := readHeader(bufio.NewReader(r))
	if err != nil {
		return nil, err
	}
	p := newPart(h, body, nil, "text/plain")
	for depth, index := range path {
		mr := newMultipartReader(p.body, p.params["boundary"])
		var cp *textproto.Part
		for i := 0; i <= index; i++ {
			if cp, err = mr.NextPart(); err != nil {
				return nil, fmt.Errorf("part %v vanished: %w", path[:depth+1], err)
			}
		}
		childDefault := "text/plain"
		if p.mediaType == "multipart/digest" {
			childDefault = "message/rfc822"
		}
		p = newPart(cp.Header, cp, nil, childDefault)
	}
	return p, nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

// transferDecoder undoes a Content-Transfer-Encoding, leniently: broken
// base64 yields what can be decoded, an unknown encoding the raw bytes.
func transferDecoder(encoding string, r io.Reader) io.Reader {
	switch strings.ToLower(strings.TrimSpace(encoding)) {
	case "base64":
		return &lenientReader{r: base64.NewDecoder(base64.StdEncoding, &base64Filter{r: r})}
	case "quoted-printable":
		return &lenientReader{r: quotedprintable.NewReader(r)}
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
// quoted-printable, a missing final boundary) from a failing source.
func isDecodeError(err error) bool {
	var ce base64.CorruptInputError
	return errors.As(err, &ce) || strings.HasPrefix(err.Error(), "quotedprintable:") ||
		errors.Is(err, io.ErrUnexpectedEOF) || strings.HasPrefix(err.Error(), "multipart:")
}

// base64Filter passes only base64 alphabet bytes, and stops at padding, so
// that line breaks, stray characters and junk after the data do not stop
// decoding.
type base64Filter struct {
	r    io.Reader
	done bool
	pad  int
}

func (f *base64Filter) Read(p []byte) (int, error) {
	for {
		if f.done {
			return 0, io.EOF
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
			}
			if f.done {
				break
			}
		}
		if out > 0 || err != nil {
			if err == io.EOF {
				f.done = true
			}
			return out, err
		}
	}
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
