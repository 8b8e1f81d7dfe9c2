package queue

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/smtpgw/smtpgw/internal/convert"
	"github.com/smtpgw/smtpgw/internal/envelope"
)

// State is the mutable delivery state of a message, appended to its file
// at each change. The zero State is a message never tried.
type State struct {
	Attempts    int       `json:"attempts"`
	LastAttempt time.Time `json:"last_attempt,omitzero"`
	// NextAttempt is the earliest time of the next try. It is written
	// before each try, so a crash during one does not cause a tight loop.
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	// Held says why NextAttempt is later than any backoff: a limit of the
	// gateway holds the message, unattempted. Empty once it is tried.
	Held string `json:"held,omitempty"`
	// What Graph or Entra ID said of the last failure, for support cases.
	LastErrorCode   string `json:"last_error_code,omitempty"` // ErrorSendAsDenied, AADSTS7000215, …
	RequestID       string `json:"request_id,omitempty"`
	ClientRequestID string `json:"client_request_id,omitempty"`
	// Requeued is when an admin moved the message back from failed/; the
	// maximum age counts from then rather than from reception.
	Requeued time.Time `json:"requeued,omitzero"`
	// Failed is when the message became a dead letter.
	Failed time.Time `json:"failed,omitzero"`
	// Delivered are the recipients that already received the message
	// when a way out that takes them in several transactions (Exchange's
	// SMTP) failed part way: later tries skip them.
	Delivered []string `json:"delivered,omitempty"`
}

// Entry is a spooled message as loaded: envelope and state, with the raw
// message left on disk.
type Entry struct {
	Envelope *envelope.Envelope
	State    State
	Size     int64 // bytes of the raw message

	path   string // the .msg file
	offset int64  // where the raw message starts in it
	// fileSize is the file's length as loaded, plus the records SaveState
	// appended since: Done needs no stat to tell a small file.
	fileSize int64
	version1 bool // the file is in an earlier version's layout (see format.go)
}

// Raw returns an Opener streaming the raw message, exactly as received.
// Opening fails with ErrNotFound once the message has left the spool.
func (e *Entry) Raw() convert.Opener {
	return func() (io.ReadCloser, error) { return e.OpenRaw() }
}

// OpenRaw opens the raw message, exactly as received, for reading in order
// or at any offset (the converter reads each part where it lies). It fails
// with ErrNotFound once the message has left the spool. Close it before
// the message is moved or removed: Windows refuses to move an open file.
func (e *Entry) OpenRaw() (*RawMessage, error) {
	f, err := os.Open(e.path)
	if err != nil {
		return nil, notFound(e.Envelope.ID, err)
	}
	return &RawMessage{io.NewSectionReader(f, e.offset, e.Size), f}, nil
}

// RawMessage is an open raw message; Size tells its length.
type RawMessage struct {
	*io.SectionReader
	f *os.File
}

func (r *RawMessage) Close() error { return r.f.Close() }

// Queued returns the IDs of every message in the queue (not the dead
// letters), oldest first.
func (s *Spool) Queued() ([]string, error) { return s.ids(queueDir) }

// Failed returns the IDs of the dead letters, oldest first.
func (s *Spool) Failed() ([]string, error) { return s.ids(failedDir) }

func (s *Spool) ids(folder string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(s.dir, folder))
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	var ids []string
	for _, de := range entries {
		if id, ok := strings.CutSuffix(de.Name(), msgExt); ok && validID(id) {
			ids = append(ids, id)
		}
	}
	// IDs start with the reception time in fixed-width base 36.
	slices.Sort(ids)
	return ids, nil
}

// Get loads a queued message: its envelope (with its original received
// time) and its state.
func (s *Spool) Get(id string) (*Entry, error) { return s.load(queueDir, id) }

func (s *Spool) load(folder, id string) (*Entry, error) {
	f, size, err := s.openMessage(folder, id)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	l, err := readLayout(f, size)
	if err != nil {
		return nil, fmt.Errorf("%w (message %s)", err, id)
	}
	st, err := s.stateIn(folder, id, f, l, size)
	if err != nil {
		return nil, err
	}
	return &Entry{Envelope: l.env, State: st, Size: l.rawSize, path: f.Name(), offset: l.rawStart,
		fileSize: size, version1: l.version1}, nil
}

// State reads the current state of a queued message. A message never
// tried has the zero State.
func (s *Spool) State(id string) (State, error) { return s.readState(queueDir, id) }

// readState reads the state alone: the envelope is skipped, not decoded,
// since the engine reads the state of every queued message at each
// rescan.
func (s *Spool) readState(folder, id string) (State, error) {
	f, size, err := s.openMessage(folder, id)
	if err != nil {
		return State{}, err
	}
	defer f.Close()
	l, err := readStateStart(f, size)
	if err != nil {
		return State{}, fmt.Errorf("%w (message %s)", err, id)
	}
	return s.stateIn(folder, id, f, l, size)
}

// openMessage opens the .msg file of message id in folder, and returns it
// with its size.
func (s *Spool) openMessage(folder, id string) (*os.File, int64, error) {
	if !validID(id) {
		return nil, 0, notFound(id, nil)
	}
	f, err := os.Open(s.path(folder, id, msgExt))
	if err != nil {
		return nil, 0, notFound(id, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("spool: %s: %w", id, err)
	}
	return f, fi.Size(), nil
}

// stateIn reads the state of message id, whose file f of size bytes has
// layout l.
func (s *Spool) stateIn(folder, id string, f *os.File, l layout, size int64) (State, error) {
	var st State
	var err error
	if l.version1 {
		st, err = s.readVersion1State(folder, id)
	} else {
		st, err = readStateRecords(f, l.stateStart(), size)
	}
	if err != nil {
		return State{}, fmt.Errorf("%w (message %s)", err, id)
	}
	return st, nil
}

// readVersion1State reads the ID.state file that kept the state of a
// version 1 message.
func (s *Spool) readVersion1State(folder, id string) (State, error) {
	var st State
	data, err := os.ReadFile(s.path(folder, id, stateExt))
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return State{}, fmt.Errorf("spool: state of %s: %w", id, err)
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return State{}, fmt.Errorf("%w: state of %s: %v", ErrCorrupt, id, err)
	}
	return st, nil
}

// SaveState records the state of a queued message. Record each attempt
// with it before making the attempt. It returns ErrNotFound when the
// message has left the queue.
//
// The record is in the message's file when SaveState returns, so no crash
// of the gateway (a panic, SIGKILL, the OOM killer) loses it, and a message
// that crashes the gateway is not tried again at once, over and over. It
// is not fsynced: the message itself was, before its 250, and a power cut
// can at worst lose the record of the last attempt, which costs one try
// more. That fsync was the largest cost of delivering a message.
func (s *Spool) SaveState(id string, st State) error { return s.writeState(queueDir, id, st, false) }

// SaveState is Spool.SaveState for a message loaded from the queue. Its
// layout is known, so the file's header is not read again: the engine
// records each attempt of each message this way.
func (e *Entry) SaveState(st State) error {
	id := e.Envelope.ID
	if e.version1 {
		return stateError(id, errNoHeader)
	}
	n, err := appendState(e.path, st, false, false)
	if err == nil {
		e.fileSize += n
	}
	return stateError(id, err)
}

func (s *Spool) writeState(folder, id string, st State, durable bool) error {
	if !validID(id) {
		return notFound(id, nil)
	}
	_, err := appendState(s.path(folder, id, msgExt), st, durable, true)
	return stateError(id, err)
}

// stateError is the error of recording the state of message id.
func stateError(id string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return notFound(id, err)
	}
	if err != nil {
		return fmt.Errorf("spool: state of %s: %w", id, err)
	}
	return nil
}

func (s *Spool) folderSync(folder string) *dirSync {
	if folder == failedDir {
		return &s.failedSync
	}
	return &s.queueSync
}

// Done takes a delivered message, loaded from the queue, out of it; its
// file may become a spare for the next message (see spare.go). The removal
// is durable within syncDelay: a power cut sooner may have the message
// sent again, as any mail server would, but never loses one.
func (s *Spool) Done(e *Entry) error {
	id := e.Envelope.ID
	if err := s.spares.keep(e.path, e.fileSize, s.path(spareDir, id, spareExt)); err != nil {
		return notFound(id, err)
	}
	s.queueSync.syncSoon()
	return nil
}

func (s *Spool) remove(folder, id string) error {
	if !validID(id) {
		return notFound(id, nil)
	}
	if err := os.Remove(s.path(folder, id, msgExt)); err != nil {
		return notFound(id, err)
	}
	// Durable, so that a message deleted is not found again after a power
	// cut.
	if err := s.folderSync(folder).sync(); err != nil {
		return fmt.Errorf("spool: remove %s: %w", id, err)
	}
	return nil
}

// Fail moves a queued message to the dead letters, recording its state st
// (the one last recorded, as the caller knows it) with why and when it
// failed. Nothing is deleted.
func (s *Spool) Fail(id string, st State, reason string) error {
	st.LastError = reason
	st.Failed = time.Now()
	return s.move(queueDir, failedDir, id, st)
}

// move moves message id from one folder to another with the given state.
// The new state is recorded first, so a crash before the move leaves the
// message in its old folder with a state that only says why it was being
// moved.
func (s *Spool) move(from, to, id string, st State) error {
	// Fsynced: the reason a message is a dead letter must be with it.
	err := s.writeState(from, id, st, true)
	if errors.Is(err, errNoHeader) && to == failedDir {
		// The engine found the file unreadable: it becomes a dead letter
		// all the same, and reading it again shows the admin why.
		err = nil
	}
	if err != nil {
		return err
	}
	if err := rename(s.path(from, id, msgExt), s.path(to, id, msgExt)); err != nil {
		return notFound(id, err)
	}
	// The destination first, so the message is durably in its new folder
	// before its old entry is durably gone.
	err = s.folderSync(to).sync()
	if err == nil {
		err = s.folderSync(from).sync()
	}
	if err != nil {
		return fmt.Errorf("spool: move %s to %s: %w", id, to, err)
	}
	return nil
}

// notFound turns a missing file into ErrNotFound and passes other errors on.
func notFound(id string, err error) error {
	if err == nil || errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return fmt.Errorf("spool: %s: %w", id, err)
}

// validID reports whether id can be a queue ID, so that an ID typed by an
// admin can never name a path outside the spool.
func validID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z') {
			return false
		}
	}
	return true
}
