package queue

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"

	"github.com/smtpgw/smtpgw/internal/envelope"
)

// A .msg file holds everything about one message:
//
//	smtpgw-spool 2 SSSSSSSSSSSSSSSS\n   header: S is the raw message's size, 16 hex digits
//	{envelope JSON}\n
//	raw message, exactly as received
//	\n{state JSON}\n                     one record per change of state, appended
//
// The state records are appended, never rewritten: appending one and
// fsyncing the file is the cheapest durable write there is (no temporary
// file, no rename, no folder sync), and a crash in the middle of one leaves
// a torn last record that reading skips, with the one before still whole.
// Each record starts with a line break, so that a torn record never runs
// into the next one. The header is written last, once the size is known,
// before the file is committed.
//
// Version 1 files, written before, have no header and keep their state in
// ID.state beside them; Open converts them.
const (
	headerPrefix = "smtpgw-spool 2 "
	headerLen    = len(headerPrefix) + 16 + 1
	// maxStateTail is how much of a file's end is read for its state: far
	// more than the records of every attempt in a message's lifetime.
	maxStateTail = 1 << 20
)

// errNoHeader refuses to append state to a file without the header: one
// in the layout of an earlier version, which only the gateway's start
// converts, or a damaged one.
var errNoHeader = errors.New("the message file is not in the current spool layout (an earlier version's, or damaged): start the gateway once to convert the spool")

func encodeHeader(rawSize int64) []byte {
	return fmt.Appendf(nil, "%s%016x\n", headerPrefix, rawSize)
}

// stateRecord is st as appended to a .msg file.
func stateRecord(st State) ([]byte, error) {
	data, err := json.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("spool: encode state: %w", err)
	}
	rec := make([]byte, 0, len(data)+2)
	rec = append(rec, '\n')
	rec = append(rec, data...)
	return append(rec, '\n'), nil
}

// layout is where the parts of a .msg file lie.
type layout struct {
	env      *envelope.Envelope
	rawStart int64
	rawSize  int64
	version1 bool // no header; the state is in ID.state
}

// stateStart is where the state records begin.
func (l layout) stateStart() int64 { return l.rawStart + l.rawSize }

// layoutReaders read the start of message files: every delivery attempt
// loads its message's envelope, and a new buffer each time was garbage.
// readEnvelope copies the line it decodes, so nothing points into them.
var layoutReaders = sync.Pool{New: func() any { return bufio.NewReader(nil) }}

// readLayout reads the header and envelope of a .msg file of size bytes.
func readLayout(r io.Reader, size int64) (layout, error) {
	br := takeLayoutReader(r)
	defer putLayoutReader(br)
	l, err := readFileHeader(br)
	if err != nil {
		return layout{}, err
	}
	env, n, err := readEnvelope(br)
	if err != nil {
		return layout{}, err
	}
	l.env, l.rawStart = env, l.rawStart+n
	if l.version1 {
		l.rawSize = size - l.rawStart
	}
	return l, l.check(size)
}

// readStateStart is readLayout without decoding the envelope, for a caller
// that only wants the state: the envelope line is skipped. A version 1
// file has no state records; its layout says so.
func readStateStart(r io.Reader, size int64) (layout, error) {
	br := takeLayoutReader(r)
	defer putLayoutReader(br)
	l, err := readFileHeader(br)
	if err != nil || l.version1 {
		return l, err
	}
	for {
		line, err := br.ReadSlice('\n')
		l.rawStart += int64(len(line))
		if err == nil {
			break
		}
		if err == io.EOF {
			return layout{}, fmt.Errorf("%w: no envelope line", ErrCorrupt)
		}
		if err != bufio.ErrBufferFull {
			return layout{}, fmt.Errorf("spool: read envelope: %w", err)
		}
	}
	return l, l.check(size)
}

func takeLayoutReader(r io.Reader) *bufio.Reader {
	br := layoutReaders.Get().(*bufio.Reader)
	br.Reset(r)
	return br
}

func putLayoutReader(br *bufio.Reader) {
	br.Reset(nil)
	layoutReaders.Put(br)
}

// readFileHeader reads the header of a .msg file, if it has one: the
// layout it returns has the raw message's size, and its start as if the
// envelope line were empty.
func readFileHeader(br *bufio.Reader) (layout, error) {
	if head, err := br.Peek(len(headerPrefix)); err != nil || string(head) != headerPrefix {
		return layout{version1: true}, nil
	}
	line := make([]byte, headerLen)
	if _, err := io.ReadFull(br, line); err != nil {
		return layout{}, fmt.Errorf("%w: header: %v", ErrCorrupt, err)
	}
	n, err := strconv.ParseInt(string(line[len(headerPrefix):headerLen-1]), 16, 64)
	if err != nil || n < 0 || line[headerLen-1] != '\n' {
		return layout{}, fmt.Errorf("%w: header %q", ErrCorrupt, line)
	}
	return layout{rawStart: int64(headerLen), rawSize: n}, nil
}

// check refuses a layout that does not fit in a file of size bytes.
func (l layout) check(size int64) error {
	if l.stateStart() > size {
		return fmt.Errorf("%w: %d bytes, the header says %d", ErrCorrupt, size, l.stateStart())
	}
	return nil
}

// readStateRecords returns the last whole state record of the file f
// between start and size; none is the zero State, a message never tried.
func readStateRecords(f *os.File, start, size int64) (State, error) {
	start = max(start, size-maxStateTail)
	if start >= size {
		return State{}, nil
	}
	tail := make([]byte, size-start)
	if _, err := f.ReadAt(tail, start); err != nil {
		return State{}, fmt.Errorf("spool: read state: %w", err)
	}
	for len(tail) > 0 {
		i := bytes.LastIndexByte(tail[:len(tail)-1], '\n')
		var st State
		if json.Unmarshal(tail[i+1:], &st) == nil {
			return st, nil
		}
		tail = tail[:i+1]
	}
	return State{}, nil
}

// appendState appends a state record to the .msg file at path, fsyncs the
// file when durable is set, and returns the record's length. checkHeader
// reads the file's header first, for a caller that does not know the
// file's layout: appended to a version 1 file, the record would become
// part of the message, and an admin command run before the upgrade must
// not do that.
func appendState(path string, st State, durable, checkHeader bool) (int64, error) {
	rec, err := stateRecord(st)
	if err != nil {
		return 0, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND, 0)
	if err != nil {
		return 0, err
	}
	if checkHeader {
		head := make([]byte, len(headerPrefix))
		if _, err = f.ReadAt(head, 0); err == io.EOF || err == nil && string(head) != headerPrefix {
			err = errNoHeader
		}
	}
	if err == nil {
		_, err = f.Write(rec)
	}
	if err == nil && durable {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return int64(len(rec)), err
}
