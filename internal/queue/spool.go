// Package queue is the durable spool: a message is acknowledged to its
// client only once it and its envelope are on disk and fsynced, and it stays
// on disk until it is delivered or moved to the dead-letter folder.
//
// Layout under the spool directory:
//
//	tmp/          messages being received; leftovers are removed at start
//	queue/ID.msg  one line of envelope JSON, then the raw message, unchanged
//	failed/       dead letters, same layout
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

// Folder names inside the spool directory.
const (
	tmpDir    = "tmp"
	queueDir  = "queue"
	failedDir = "failed"
	msgExt    = ".msg"
)

// Spool is the on-disk queue. It is safe for concurrent use.
type Spool struct {
	dir       string
	queueSync dirSync
	// onCommit, when set, is told the ID of every newly committed message.
	onCommit atomic.Pointer[func(id string)]
}

// Open creates the spool folders under dir if needed and removes leftovers
// of interrupted receptions (never acknowledged, so nothing is lost).
func Open(dir string) (*Spool, error) {
	for _, sub := range []string{tmpDir, queueDir, failedDir} {
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
	s := &Spool{dir: dir}
	s.queueSync.path = filepath.Join(dir, queueDir)
	return s, nil
}

// Dir returns the spool directory.
func (s *Spool) Dir() string { return s.dir }

// OnCommit sets the function told about every newly committed message.
func (s *Spool) OnCommit(fn func(id string)) { s.onCommit.Store(&fn) }

// Incoming is a message being received. Write the raw message to it, then
// Commit or Abort exactly once.
type Incoming struct {
	spool *Spool
	id    string
	file  *os.File
	buf   *bufio.Writer
	err   error // first write error; Commit returns it
}

// Create starts receiving a message with the given envelope and sets its ID.
func (s *Spool) Create(env *envelope.Envelope) (*Incoming, error) {
	id := newID(env.Received)
	env.ID = id
	header, err := json.Marshal(env)
	if err != nil {
		return nil, fmt.Errorf("spool: encode envelope: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(s.dir, tmpDir, id+msgExt), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	in := &Incoming{spool: s, id: id, file: f, buf: bufio.NewWriterSize(f, 64<<10)}
	in.buf.Write(header)
	in.buf.WriteByte('\n')
	return in, nil
}

// ID is the queue ID the message will have once committed.
func (in *Incoming) ID() string { return in.id }

// Write appends raw message bytes.
func (in *Incoming) Write(p []byte) (int, error) {
	if in.err != nil {
		return 0, in.err
	}
	n, err := in.buf.Write(p)
	if err != nil {
		in.err = fmt.Errorf("spool: %w", err)
	}
	return n, in.err
}

// Commit makes the message durable: flush, fsync, rename into the queue and
// fsync the queue folder. Only after it returns nil may the client be told
// 250. On error the message is removed and the caller answers 4xx.
func (in *Incoming) Commit() (string, error) {
	err := in.err
	if err == nil {
		err = in.buf.Flush()
	}
	if err == nil {
		err = in.file.Sync()
	}
	if cerr := in.file.Close(); err == nil {
		err = cerr
	}
	tmp := in.file.Name()
	if err == nil {
		err = os.Rename(tmp, in.spool.path(queueDir, in.id))
	}
	if err == nil {
		err = in.spool.queueSync.sync()
	}
	if err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("spool: commit %s: %w", in.id, err)
	}
	if fn := in.spool.onCommit.Load(); fn != nil {
		(*fn)(in.id)
	}
	return in.id, nil
}

// Abort discards a message that will not be acknowledged.
func (in *Incoming) Abort() {
	in.file.Close()
	os.Remove(in.file.Name())
}

func (s *Spool) path(folder, id string) string {
	return filepath.Join(s.dir, folder, id+msgExt)
}

// newID returns a queue ID that sorts by reception time and is unique
// without coordination: 13 base-36 digits of nanoseconds, then 6 random hex.
func newID(t time.Time) string {
	var r [3]byte
	rand.Read(r[:])
	return fmt.Sprintf("%013s%s", strconv.FormatInt(t.UnixNano(), 36), hex.EncodeToString(r[:]))
}

// dirSync fsyncs a folder so that renames into it survive a crash. Callers
// that renamed before a sync started share that sync, so a burst of
// commits costs one folder fsync rather than one each.
type dirSync struct {
	path    string
	tickets atomic.Uint64 // taken by callers after their rename

	mu      sync.Mutex // held while a sync runs
	covered uint64     // every ticket up to this one is synced
	lastErr error
}

func (d *dirSync) sync() error {
	ticket := d.tickets.Add(1)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.covered >= ticket {
		return d.lastErr
	}
	// Every ticket taken by now belongs to a rename that is already done,
	// so the fsync below covers it.
	covered := d.tickets.Load()
	f, err := os.Open(d.path)
	if err == nil {
		err = f.Sync()
		f.Close()
	}
	d.covered, d.lastErr = covered, err
	return err
}

// errNotFound is returned for a queue ID that is not in the spool.
var errNotFound = errors.New("no such message")

// readEnvelope reads the envelope line of a spooled message and returns it
// with the offset at which the raw message starts.
func readEnvelope(r io.Reader) (*envelope.Envelope, int64, error) {
	br := bufio.NewReader(r)
	line, err := br.ReadBytes('\n')
	if err != nil {
		return nil, 0, fmt.Errorf("spool: read envelope: %w", err)
	}
	var env envelope.Envelope
	if err := json.Unmarshal(line, &env); err != nil {
		return nil, 0, fmt.Errorf("spool: decode envelope: %w", err)
	}
	return &env, int64(len(line)), nil
}
