package convert

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/emersion/go-message/textproto"
)

// maxDepth bounds MIME nesting: deeper multiparts are kept as attachments.
const maxDepth = 20

// Bounds of the headers of all parts together, which the index keeps
// parsed until the message is sent: the parts that start past them travel
// together as one attached .eml, as those past the part limit do.
const (
	maxIndexedHeaderBytes  = 4 << 20
	maxIndexedHeaderFields = 20000
)

// entity is one MIME entity of the message as the index found it: where its
// bytes lie in the message and what its header says. Its body is read later
// as a section of the message, so opening it costs the size of the part.
type entity struct {
	headerStart int64 // the first byte of its header
	bodyStart   int64 // the first byte of its body
	bodyEnd     int64 // past its last body byte; the line end before a delimiter is not part of it

	header      textproto.Header
	mediaType   string // lower case; the default when absent or unreadable
	params      map[string]string
	encoding    string // Content-Transfer-Encoding, lower case
	charset     string
	disposition string // lower case
	filename    string // UTF-8, from the disposition's filename or the type's name

	// children are the parts of a multipart whose delimiters were found, in
	// order. A multipart whose boundary never appears has none and is read
	// as plain text instead.
	children  []*entity
	multipart bool
}

// empty reports a part that has neither header nor body, as a doubled
// delimiter makes.
func (e *entity) empty() bool {
	return e.header.Len() == 0 && e.bodyEnd == e.bodyStart
}

func (e *entity) setHeader(h textproto.Header, defaultType string) {
	e.header = h
	mt, params := parseParams(h.Get("Content-Type"))
	if !isMediaType(mt) {
		mt = defaultType
	}
	e.mediaType, e.params = mt, params
	e.encoding = strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding")))
	e.charset = params["charset"]
	disposition, dparams := parseParams(h.Get("Content-Disposition"))
	e.disposition = disposition
	e.filename = decodeWord(headerUTF8(firstNonEmpty(dparams["filename"], params["name"])))
}

// messageIndex is the result of the index pass.
type messageIndex struct {
	root *entity
	// overflowStart, when not negative, is where the parts beyond the
	// part limit start: the delimiter line of the first one, whose
	// boundary is overflowBoundary.
	overflowStart    int64
	overflowBoundary string
}

// frame is a multipart whose closing delimiter has not been read yet.
type frame struct {
	e    *entity
	dash []byte  // "--" + boundary
	open *entity // the part being read; nil in the preamble
}

// indexer reads the message once, line by line, and builds its entity
// tree. Delimiters follow RFC 2046 §5.1.1: a line that is exactly "--" and
// the boundary, optionally "--" when closing, optional white space, then
// the line end (CRLF or a bare LF). A line that goes on with anything else
// is body text. A delimiter of an enclosing multipart also ends the inner
// ones, whose closing delimiter is then missing.
type indexer struct {
	lines    lineReader
	size     int64
	maxParts int // 0: no limit
	parts    int
	// What the headers read so far hold, against the maxIndexedHeader bounds.
	headerBytes  int
	headerFields int

	frames  []*frame
	header  *headerLines // the header being read, nil in a body
	heading *entity      // whose header it is
	prevEOL int          // line end length of the line before
	index   messageIndex
}

// indexReaders read messages for indexMessage: a new buffer for each
// message was a good part of the garbage of converting a small one. The
// indexer copies what it keeps of a line, so nothing points into them
// once a message is indexed.
var indexReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 64<<10) }}

// indexMessage reads the size bytes of raw once and indexes their parts.
// Past maxParts parts (0: no limit) it stops and records where the rest
// starts. Only the message header can make it fail: a part with a broken
// header still has a body.
func indexMessage(raw io.ReaderAt, size int64, maxParts int) (*messageIndex, error) {
	br := indexReaders.Get().(*bufio.Reader)
	br.Reset(io.NewSectionReader(raw, 0, size))
	defer func() {
		br.Reset(nil)
		indexReaders.Put(br)
	}()
	ix := &indexer{
		lines:    lineReader{br: br},
		size:     size,
		maxParts: maxParts,
		index:    messageIndex{root: &entity{}, overflowStart: -1},
	}
	ix.startHeader(ix.index.root, true)
	for {
		l, err := ix.lines.next(ix.keep())
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading the message: %w", err)
		}
		if level, closing := ix.delimiter(l); level >= 0 {
			if ix.delimiterLine(l, level, closing) {
				break
			}
		} else if ix.header != nil {
			if err := ix.headerLine(l); err != nil {
				return nil, err
			}
		}
		ix.prevEOL = l.eol
	}
	end := ix.size
	if ix.index.overflowStart >= 0 {
		end = ix.index.overflowStart
	}
	if ix.header != nil {
		if err := ix.endHeader(end); err != nil {
			return nil, err
		}
	}
	ix.closeFrames(0, end)
	ix.index.root.bodyEnd = ix.size
	return &ix.index, nil
}

// keep is how many bytes of the next line the indexer needs to see.
func (ix *indexer) keep() int {
	n := 80
	for _, f := range ix.frames {
		n = max(n, len(f.dash)+4)
	}
	if ix.header != nil {
		// One byte over the room left tells a header that is too large.
		n = max(n, MaxHeaderBytes-ix.header.size+1)
	}
	return n
}

// delimiter finds the innermost open multipart that l is a delimiter of;
// level -1 means none.
func (ix *indexer) delimiter(l line) (level int, closing bool) {
	if !bytes.HasPrefix(l.head, []byte("--")) || !l.tailBlank {
		return -1, false
	}
	for i := len(ix.frames) - 1; i >= 0; i-- {
		rest, ok := bytes.CutPrefix(l.head, ix.frames[i].dash)
		if !ok {
			continue
		}
		rest, closing = bytes.CutPrefix(rest, []byte("--"))
		if isBlank(rest) {
			return i, closing
		}
	}
	return -1, false
}

// delimiterLine ends the current part of the multipart at level, and of
// every multipart inside it, and starts the next part. It reports true when
// the part limit stops the index here.
func (ix *indexer) delimiterLine(l line, level int, closing bool) (stop bool) {
	if ix.header != nil {
		// A part header cut short by the delimiter: an empty body. Only a
		// message header can fail, and that is never inside a multipart.
		_ = ix.endHeader(l.start)
	}
	// The line end before a delimiter belongs to the delimiter.
	end := l.start - int64(ix.prevEOL)
	ix.closeFrames(level+1, end)
	f := ix.frames[level]
	if f.open != nil {
		f.open.bodyEnd = max(end, f.open.bodyStart)
	}
	f.open = nil
	f.e.multipart = true
	if closing {
		// What follows up to an enclosing delimiter is its epilogue, and
		// stays in the enclosing part.
		ix.frames = ix.frames[:level]
		return false
	}
	if ix.maxParts > 0 && ix.parts >= ix.maxParts ||
		ix.headerBytes >= maxIndexedHeaderBytes || ix.headerFields >= maxIndexedHeaderFields {
		ix.index.overflowStart = l.start
		ix.index.overflowBoundary = string(f.dash[2:])
		return true
	}
	ix.parts++
	child := &entity{headerStart: l.start + l.length}
	f.open = child
	f.e.children = append(f.e.children, child)
	ix.startHeader(child, false)
	return false
}

// closeFrames ends the open multiparts from level on, innermost first, and
// their current parts, at end.
func (ix *indexer) closeFrames(level int, end int64) {
	for i := len(ix.frames) - 1; i >= level; i-- {
		f := ix.frames[i]
		if f.open != nil {
			f.open.bodyEnd = max(end, f.open.bodyStart)
		}
		if !f.e.multipart {
			// Its boundary never appeared: its body is read as text.
			f.e.mediaType, f.e.charset = "text/plain", ""
		}
	}
	ix.frames = ix.frames[:level]
}

func (ix *indexer) startHeader(e *entity, top bool) {
	ix.header, ix.heading = &headerLines{top: top}, e
}

// headerLine feeds one line to the header being read.
func (ix *indexer) headerLine(l line) error {
	if !l.whole {
		if ix.header.top {
			return errHeaderTooLarge
		}
		// Too large for a part header: the part's body starts here.
		return ix.endHeader(l.start)
	}
	step, err := ix.header.add(l.head)
	switch {
	case err == errHeaderTooLarge && !ix.header.top:
		return ix.endHeader(l.start)
	case err != nil:
		return err
	case step == headerEndsAfter:
		return ix.endHeader(l.start + l.length)
	case step == headerEndsBefore:
		return ix.endHeader(l.start)
	}
	return nil
}

// endHeader ends the header being read; the body starts at bodyStart. A
// multipart starts a frame, unless nested too deep.
func (ix *indexer) endHeader(bodyStart int64) error {
	e, hl := ix.heading, ix.header
	ix.header, ix.heading = nil, nil
	ix.headerBytes += hl.size
	ix.headerFields += hl.fields
	h, err := hl.header()
	if err != nil && hl.top {
		return err
	}
	defaultType := "text/plain"
	if n := len(ix.frames); n > 0 && ix.frames[n-1].e.mediaType == "multipart/digest" {
		defaultType = "message/rfc822"
	}
	e.setHeader(h, defaultType)
	e.bodyStart, e.bodyEnd = bodyStart, bodyStart
	if strings.HasPrefix(e.mediaType, "multipart/") && e.params["boundary"] != "" && len(ix.frames) < maxDepth {
		ix.frames = append(ix.frames, &frame{e: e, dash: []byte("--" + e.params["boundary"])})
	}
	return nil
}

// lineReader reads a message line by line, however long its lines are,
// keeping only the first bytes of each and counting where each lies.
type lineReader struct {
	br   *bufio.Reader
	off  int64 // where the next line starts
	head []byte
}

// line is one line of the message.
type line struct {
	start  int64
	length int64 // with its line end
	eol    int   // bytes of its line end: 2 for CRLF, 1 for a bare LF, 0 at the end of input
	// head is the line's first bytes, at most as many as asked for; it is
	// valid until the next line is read. whole tells head is all of it.
	head  []byte
	whole bool
	// tailBlank tells that the bytes past head are only white space.
	tailBlank bool
}

// next reads the next line, keeping at most keep of its bytes; io.EOF
// means there is none.
func (lr *lineReader) next(keep int) (line, error) {
	l := line{start: lr.off, tailBlank: true}
	lr.head = lr.head[:0]
	var last2 [2]byte
	for {
		chunk, err := lr.br.ReadSlice('\n')
		l.length += int64(len(chunk))
		if n := len(chunk); n >= 2 {
			last2 = [2]byte{chunk[n-2], chunk[n-1]}
		} else if n == 1 {
			last2 = [2]byte{last2[1], chunk[0]}
		}
		room := min(max(keep-len(lr.head), 0), len(chunk))
		lr.head = append(lr.head, chunk[:room]...)
		if l.tailBlank && !isBlank(chunk[room:]) {
			l.tailBlank = false
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		lr.off += l.length
		l.head, l.whole = lr.head, int64(len(lr.head)) == l.length
		switch {
		case err == nil && last2[0] == '\r' && l.length >= 2:
			l.eol = 2
		case err == nil:
			l.eol = 1
		}
		if err == io.EOF && l.length > 0 {
			err = nil
		}
		return l, err
	}
}

// isBlank reports bytes that are only white space and line ends.
func isBlank(b []byte) bool {
	for _, c := range b {
		if !isSpace(c) {
			return false
		}
	}
	return true
}
