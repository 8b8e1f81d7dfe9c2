package convert

import (
	"bufio"
	"bytes"
	"io"

	"github.com/emersion/go-message/textproto"
)

// newMultipartReader reads the parts of a multipart body. walk and findPart
// both read through here, so the part paths they record and follow agree.
func newMultipartReader(body io.Reader, boundary string) *textproto.MultipartReader {
	return textproto.NewMultipartReader(newPartFilter(body, boundary), boundary)
}

// partFilter repairs a multipart body on its way to go-message's multipart
// reader, which gives up on every remaining part when a part header has a
// line that is not a header field, or when the preamble has a line longer
// than its buffer. The filter drops the preamble and the epilogue (never
// shown to anyone) and ends a part header at its first line that is not a
// field by inserting the missing blank line, as readHeader does for the
// message header. Part bodies pass through unchanged.
type partFilter struct {
	br      *bufio.Reader
	dash    []byte // "--" + boundary
	state   filterState
	fields  int  // header fields seen in the current part header
	midLine bool // the last bytes passed on did not end a line
	pending []byte
	scratch []byte
}

type filterState int

const (
	inPreamble filterState = iota
	inPartHeader
	inPartBody
	inEpilogue
)

func newPartFilter(r io.Reader, boundary string) *partFilter {
	return &partFilter{br: bufio.NewReaderSize(r, 64<<10), dash: []byte("--" + boundary)}
}

func (f *partFilter) Read(p []byte) (int, error) {
	for len(f.pending) == 0 {
		if err := f.next(); err != nil {
			return 0, err
		}
	}
	n := copy(p, f.pending)
	f.pending = f.pending[n:]
	return n, nil
}

// next sets pending to the next bytes to pass on; it may set none.
func (f *partFilter) next() error {
	if f.state == inEpilogue {
		return io.EOF
	}
	if !f.midLine {
		if kind := f.delimiter(); kind != notDelimiter {
			nl, err := f.skipLine()
			f.pending = append(append(f.scratch[:0], f.dash...), nl...)
			if kind == closingDelimiter {
				f.pending = append(append(f.pending[:len(f.dash)], "--"...), nl...)
				f.state = inEpilogue
			} else {
				f.state, f.fields = inPartHeader, 0
			}
			if err == io.EOF {
				return nil
			}
			return err
		}
	}
	line, err := f.take()
	if len(line) == 0 {
		return err
	}
	switch {
	case f.state == inPreamble:
		f.pending = nil
	case f.state == inPartHeader && !f.midLine:
		f.pending = f.headerLine(line)
	default:
		f.pending = line
	}
	f.midLine = line[len(line)-1] != '\n'
	// Any error comes back on the next call, which reads nothing.
	return nil
}

// headerLine passes on one line of a part header, inserting a blank line
// before it when it cannot be part of the header.
func (f *partFilter) headerLine(line []byte) []byte {
	text := bytes.TrimRight(line, "\r\n")
	switch {
	case len(text) == 0:
		f.state = inPartBody
	case f.fields > 0 && isSpace(text[0]):
	case isHeaderField(text):
		f.fields++
	default:
		f.state = inPartBody
		nl := line[len(text):]
		if len(nl) == 0 {
			nl = []byte("\r\n")
		}
		return append(append([]byte(nil), nl...), line...)
	}
	return line
}

type delimiterKind int

const (
	notDelimiter delimiterKind = iota
	partDelimiter
	closingDelimiter
)

// delimiter tells whether the line about to be read is a boundary
// delimiter. It follows go-message's part reader, which ends a part at
// "--boundary" followed by white space, a line end, "-" or the end of the
// input: what follows on that line is dropped, since go-message refuses it.
func (f *partFilter) delimiter() delimiterKind {
	peek, _ := f.br.Peek(len(f.dash) + 2)
	if !bytes.HasPrefix(peek, f.dash) {
		return notDelimiter
	}
	rest := peek[len(f.dash):]
	switch {
	case bytes.HasPrefix(rest, []byte("--")):
		return closingDelimiter
	case len(rest) == 0 || bytes.IndexByte([]byte(" \t\r\n-"), rest[0]) >= 0:
		return partDelimiter
	}
	return notDelimiter
}

// skipLine reads past the end of the current line and returns its line
// ending, CRLF when it has none.
func (f *partFilter) skipLine() ([]byte, error) {
	for {
		chunk, err := f.br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			continue
		}
		if bytes.HasSuffix(chunk, []byte("\r\n")) {
			return []byte("\r\n"), err
		}
		if bytes.HasSuffix(chunk, []byte("\n")) {
			return []byte("\n"), err
		}
		return []byte("\r\n"), err
	}
}

// take reads the rest of the current line, or as much of it as the buffer
// holds, as a copy that stays valid until the next call.
func (f *partFilter) take() ([]byte, error) {
	chunk, err := f.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		err = nil
	}
	f.scratch = append(f.scratch[:0], chunk...)
	return f.scratch, err
}
