// Package queue is the durable spool: a message is acknowledged to its
// client only once it and its envelope are on disk and fsynced, and it stays
// on disk until it is delivered or moved to the dead-letter folder.
//
// Layout under the spool directory:
//
//	tmp/            files being written; removed at start
//	spare/          files kept to be written over by new messages: empty,
//	                or a delivered message's; replaced by empty ones at
//	                start (spare.go)
//	queue/ID.msg    a header, one line of envelope JSON, the raw message
//	                unchanged, then the delivery state records (attempts,
//	                next attempt, last error), appended (see format.go)
//	failed/         dead letters, same layout; the state names the reason
//	poke            present when an admin command changed the spool
//	smtpgw.lock     held by the gateway that delivers from the spool; its PID
//
// Once committed, a .msg file only grows by state records; its envelope and
// raw message never change.
package queue

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smtpgw/smtpgw/internal/envelope"
)

// Names inside the spool directory.
const (
	tmpDir    = "tmp"
	spareDir  = "spare"
	queueDir  = "queue"
	failedDir = "failed"
	pokeFile  = "poke"
	msgExt    = ".msg"
	stateExt  = ".state"
)

// ErrNotFound is returned for a queue ID that is not (or no longer) in the
// spool, for example because an admin deleted it.
var ErrNotFound = errors.New("spool: no such message")

// ErrCorrupt is returned for a spooled file whose content cannot be
// decoded: unlike an I/O error, trying again will not help.
var ErrCorrupt = errors.New("spool: corrupt message")

// Spool is the on-disk queue. It is safe for concurrent use, and for use by
// admin commands in another process while a server runs.
type Spool struct {
	dir        string
	queueSync  dirSync
	failedSync dirSync
	// onCommit, when set, is told of every newly committed message.
	onCommit atomic.Pointer[func(e *Entry)]
	spares   spares
	room     room
}

// Open creates the spool folders under dir if needed, removes leftovers
// of interrupted writes: temporary files (never acknowledged, so nothing is
// lost) and .state files whose message is gone, and prepares the spares.
// Only the process that delivers from the spool may call Open; admin
// commands use OpenExisting.
func Open(dir string) (*Spool, error) {
	for _, sub := range []string{tmpDir, spareDir, queueDir, failedDir} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o750); err != nil {
			return nil, fmt.Errorf("spool: %w", err)
		}
	}
	leftovers, err := filepath.Glob(filepath.Join(dir, tmpDir, "*"))
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	for _, name := range leftovers {
		os.Remove(name)
	}
	s := newSpool(dir)
	for _, folder := range []string{queueDir, failedDir} {
		if err := s.upgrade(folder); err != nil {
			return nil, err
		}
	}
	s.spares.prepare(filepath.Join(dir, spareDir))
	return s, nil
}

// OpenExisting opens a spool that a running server may be using, for admin
// commands: it creates nothing and removes nothing.
func OpenExisting(dir string) (*Spool, error) {
	for _, sub := range []string{tmpDir, queueDir, failedDir} {
		fi, err := os.Stat(filepath.Join(dir, sub))
		if err != nil {
			return nil, fmt.Errorf("spool: %w", err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("spool: %s is not a folder", filepath.Join(dir, sub))
		}
	}
	return newSpool(dir), nil
}

func newSpool(dir string) *Spool {
	s := &Spool{dir: dir}
	s.room.freeSpace = func() (uint64, error) { return freeSpace(dir) }
	s.queueSync.path = filepath.Join(dir, queueDir)
	s.failedSync.path = filepath.Join(dir, failedDir)
	return s
}

// Dir returns the spool directory.
func (s *Spool) Dir() string { return s.dir }

// OnCommit sets the function told about every newly committed message, as
// Get would load it: the scheduler need not read back what it was just
// told.
func (s *Spool) OnCommit(fn func(e *Entry)) { s.onCommit.Store(&fn) }

// Incoming is a message being received. Write the raw message to it, then
// Commit or Abort exactly once.
type Incoming struct {
	spool    *Spool
	id       string
	env      *envelope.Envelope
	file     *os.File
	reused   bool // file is a spare, holding an older message past size
	buf      *bufio.Writer
	rawStart int64 // where the raw message starts in the file
	rawSize  int64 // set by Commit
	err      error // first write error; Commit returns it
	// minFree is the free space its writes keep (0: none). It claims disk
	// space ahead of its writes, and gives each claimed byte back once the
	// file holds it, when the file system's free space counts it instead.
	minFree  int64
	size     int64 // bytes written, the header and envelope line included
	claimed  int64
	released int64
}

// Create starts receiving a message with the given envelope and sets its ID.
func (s *Spool) Create(env *envelope.Envelope) (*Incoming, error) {
	return s.CreateKeepingFree(env, 0)
}

// CreateKeepingFree is Create for a message whose writes fail with
// ErrNoRoom rather than leave less than minFree bytes free on the spool's
// file system, counting what other messages being received have claimed.
// Its client is then told to try again later, and the message is aborted.
func (s *Spool) CreateKeepingFree(env *envelope.Envelope, minFree int64) (*Incoming, error) {
	id := newID(env.Received)
	env.ID = id
	header, err := json.Marshal(env)
	if err != nil {
		return nil, fmt.Errorf("spool: encode envelope: %w", err)
	}
	f, reused, err := s.createTemp(id)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	// The entry OnCommit is told of keeps the envelope as spooled, whatever
	// the caller does with its own afterwards.
	spooled := *env
	buf := writers.Get().(*bufio.Writer)
	buf.Reset(f)
	in := &Incoming{spool: s, id: id, env: &spooled, file: f, reused: reused, buf: buf, minFree: max(minFree, 0)}
	// The header's size is written at Commit; until then it says 0.
	in.buf.Write(encodeHeader(0))
	in.buf.Write(header)
	in.buf.WriteByte('\n')
	in.rawStart = int64(headerLen + len(header) + 1)
	in.size = in.rawStart
	return in, nil
}

// ID is the queue ID the message will have once committed.
func (in *Incoming) ID() string { return in.id }

// Write appends raw message bytes.
func (in *Incoming) Write(p []byte) (int, error) {
	if in.err != nil {
		return 0, in.err
	}
	if in.minFree > 0 && in.size+int64(len(p)) > in.claimed {
		need := max(claimChunk, in.size+int64(len(p))-in.claimed)
		if err := in.spool.claim(need, in.minFree); err != nil {
			in.err = err
			return 0, err
		}
		in.claimed += need
	}
	n, err := in.buf.Write(p)
	in.size += int64(n)
	if in.minFree > 0 {
		inFile := in.size - int64(in.buf.Buffered())
		in.spool.release(inFile - in.released)
		in.released = inFile
	}
	if err != nil {
		in.err = fmt.Errorf("spool: %w", err)
	}
	return n, in.err
}

// releaseClaim gives back what is still claimed: the message is in its
// file, or abandoned.
func (in *Incoming) releaseClaim() {
	in.spool.release(in.claimed - in.released)
	in.released = in.claimed
}

// Commit makes the message durable: flush, fsync, rename into the queue and
// fsync the queue folder. Only after it returns nil may the client be told
// 250. On error the message is removed and the caller answers 4xx.
func (in *Incoming) Commit() (string, error) {
	defer in.releaseClaim()
	err := in.err
	if err == nil {
		err = in.buf.Flush()
	}
	in.releaseBuffer()
	if err == nil {
		err = in.writeSize()
	}
	dst := in.spool.path(queueDir, in.id, msgExt)
	if err == nil {
		err = commitFile(in.file, dst, &in.spool.queueSync)
	} else {
		in.Abort()
	}
	if err != nil {
		return "", fmt.Errorf("spool: commit %s: %w", in.id, err)
	}
	if fn := in.spool.onCommit.Load(); fn != nil {
		(*fn)(&Entry{Envelope: in.env, Size: in.rawSize, path: dst, offset: in.rawStart, fileSize: in.size})
	}
	return in.id, nil
}

// writeSize puts the raw message's size, now known, into the header, and
// cuts a spare to the message's length.
func (in *Incoming) writeSize() error {
	in.rawSize = in.size - in.rawStart
	if in.reused {
		if err := in.file.Truncate(in.size); err != nil {
			return err
		}
	}
	_, err := in.file.WriteAt(encodeHeader(in.rawSize), 0)
	return err
}

// writers are the write buffers of messages being received: a new 64 KiB
// buffer for each message was a good part of the garbage collector's work.
var writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 64<<10) }}

// releaseBuffer returns the write buffer, once nothing more is written.
func (in *Incoming) releaseBuffer() {
	if in.buf != nil {
		in.buf.Reset(nil)
		writers.Put(in.buf)
		in.buf = nil
	}
	if in.err == nil {
		in.err = errFinished
	}
}

// errFinished refuses writes to a message committed or aborted.
var errFinished = errors.New("spool: the message is already committed or aborted")

// Abort discards a message that will not be acknowledged.
func (in *Incoming) Abort() {
	in.releaseClaim()
	in.releaseBuffer()
	in.file.Close()
	os.Remove(in.file.Name())
}

func (s *Spool) path(folder, id, ext string) string {
	return filepath.Join(s.dir, folder, id+ext)
}

// newID returns a queue ID that sorts by reception time and is unique
// without coordination: 13 base-36 digits of nanoseconds, then 6 random hex.
func newID(t time.Time) string {
	var r [3]byte
	rand.Read(r[:])
	return fmt.Sprintf("%013s%s", strconv.FormatInt(t.UnixNano(), 36), hex.EncodeToString(r[:]))
}

// readEnvelope reads the envelope line of a spooled message and returns it
// with the offset at which the raw message starts.
func readEnvelope(r io.Reader) (*envelope.Envelope, int64, error) {
	br := bufio.NewReader(r)
	line, err := br.ReadBytes('\n')
	if err == io.EOF {
		return nil, 0, fmt.Errorf("%w: no envelope line", ErrCorrupt)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("spool: read envelope: %w", err)
	}
	var env envelope.Envelope
	if err := json.Unmarshal(line, &env); err != nil {
		return nil, 0, fmt.Errorf("%w: envelope: %v", ErrCorrupt, err)
	}
	return &env, int64(len(line)), nil
}
