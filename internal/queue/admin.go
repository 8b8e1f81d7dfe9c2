package queue

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/smtpgw/smtpgw/internal/envelope"
)

// The state of a message as admins see it.
const (
	StateQueued   = "queued"   // waiting for its first or next try, due now
	StateDeferred = "deferred" // its next try is in the future
	StateHeld     = "held"     // held, untried, by a limit of the gateway (Info.Held says which)
	StateFailed   = "failed"   // a dead letter
)

// Info describes one spooled message for `smtpgw queue list`.
// Its JSON form is what `smtpgw queue list -json` prints.
type Info struct {
	ID          string    `json:"id"`
	State       string    `json:"state"` // StateQueued, StateDeferred, StateHeld or StateFailed
	Mailbox     string    `json:"mailbox"`
	MailFrom    string    `json:"mail_from"` // empty for a null sender
	Recipients  []string  `json:"recipients"`
	Attempts    int       `json:"attempts"`
	Received    time.Time `json:"received"`
	NextAttempt time.Time `json:"next_attempt,omitzero"` // zero: due now
	LastError   string    `json:"last_error,omitempty"`  // for a dead letter, the reason it failed
	Held        string    `json:"held,omitempty"`        // why a held message waits
	Size        int64     `json:"size"`                  // bytes of the raw message
}

// Detail is Info plus what `smtpgw queue show` prints.
type Detail struct {
	Info
	Envelope *envelope.Envelope
	// Header is the header section of the raw message as received, at
	// most maxHeader bytes.
	Header []byte
	// What Graph or Entra ID said of the last failure, for support cases.
	LastErrorCode, RequestID, ClientRequestID string
}

const maxHeader = 64 << 10

// List describes every message in the spool: the queue oldest first, then
// the dead letters oldest first. A message that cannot be read is listed
// with the reason in LastError, so that the admin sees it.
func (s *Spool) List() ([]Info, error) {
	now := time.Now()
	var list []Info
	for _, folder := range []string{queueDir, failedDir} {
		ids, err := s.ids(folder)
		if err != nil {
			return nil, err
		}
		for _, id := range ids {
			e, err := s.load(folder, id)
			switch {
			case errors.Is(err, ErrNotFound):
				continue // delivered or moved while we listed
			case err != nil:
				// Show the admin the file, and why it cannot be read.
				list = append(list, Info{ID: id, State: folderState(folder), LastError: err.Error()})
			default:
				list = append(list, e.info(folder, now))
			}
		}
	}
	return list, nil
}

func folderState(folder string) string {
	if folder == failedDir {
		return StateFailed
	}
	return StateQueued
}

func (e *Entry) info(folder string, now time.Time) Info {
	state := folderState(folder)
	switch {
	case state != StateQueued || !e.State.NextAttempt.After(now):
	case e.State.Held != "":
		state = StateHeld
	default:
		state = StateDeferred
	}
	return Info{
		ID:          e.Envelope.ID,
		State:       state,
		Mailbox:     e.Envelope.Mailbox,
		MailFrom:    e.Envelope.MailFrom,
		Recipients:  e.Envelope.Recipients,
		Attempts:    e.State.Attempts,
		Received:    e.Envelope.Received,
		NextAttempt: e.State.NextAttempt,
		LastError:   e.State.LastError,
		Held:        e.State.Held,
		Size:        e.Size,
	}
}

// Show describes one message, queued or failed, with its envelope and the
// header section of the raw message.
func (s *Spool) Show(id string) (*Detail, error) {
	folder, e, err := s.find(id)
	if err != nil {
		return nil, err
	}
	r, err := e.Raw()()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	header, err := readHeader(r)
	if err != nil {
		return nil, fmt.Errorf("spool: %s: %w", id, err)
	}
	return &Detail{Info: e.info(folder, time.Now()), Envelope: e.Envelope, Header: header,
		LastErrorCode: e.State.LastErrorCode, RequestID: e.State.RequestID, ClientRequestID: e.State.ClientRequestID}, nil
}

// find loads a message from the queue or, failing that, the dead letters.
func (s *Spool) find(id string) (string, *Entry, error) {
	e, err := s.load(queueDir, id)
	if errors.Is(err, ErrNotFound) {
		e, err = s.load(failedDir, id)
		return failedDir, e, err
	}
	return queueDir, e, err
}

// readHeader returns the header section of a message, up to and including
// the blank line that ends it (or at most maxHeader bytes).
func readHeader(r io.Reader) ([]byte, error) {
	br := bufio.NewReader(io.LimitReader(r, maxHeader))
	var header []byte
	for {
		line, err := br.ReadBytes('\n')
		header = append(header, line...)
		if err == io.EOF {
			return header, nil
		}
		if err != nil {
			return nil, err
		}
		if len(line) <= 2 && (string(line) == "\n" || string(line) == "\r\n") {
			return header, nil
		}
	}
}

// Retry makes a queued message due now; a dead letter moves back to the
// queue with its attempts reset and a fresh maximum age.
func (s *Spool) Retry(id string) error {
	err := s.retryQueued(id)
	if errors.Is(err, ErrNotFound) {
		err = s.requeue(id)
	}
	if err != nil {
		return err
	}
	return s.Poke()
}

func (s *Spool) retryQueued(id string) error {
	if !validID(id) {
		return notFound(id, nil)
	}
	if _, err := os.Stat(s.path(queueDir, id, msgExt)); err != nil {
		return notFound(id, err)
	}
	st, err := s.State(id)
	if err != nil {
		st = State{}
	}
	// Zero means due now, whatever the clock of the process delivering.
	st.NextAttempt = time.Time{}
	return s.SaveState(id, st)
}

func (s *Spool) requeue(id string) error {
	if !validID(id) {
		return notFound(id, nil)
	}
	old, err := s.readState(failedDir, id)
	if err != nil {
		old = State{}
	}
	return s.move(failedDir, queueDir, id, State{Requeued: time.Now(), LastError: old.LastError})
}

// RetryAll makes every queued message due now and returns how many.
func (s *Spool) RetryAll() (int, error) {
	return s.forEach(queueDir, s.retryQueued)
}

// RetryFailed moves every dead letter back to the queue, attempts reset,
// and returns how many.
func (s *Spool) RetryFailed() (int, error) {
	return s.forEach(failedDir, s.requeue)
}

// PurgeFailed deletes the dead letters that failed more than olderThan
// ago, and returns how many.
func (s *Spool) PurgeFailed(olderThan time.Duration) (int, error) {
	cutoff := time.Now().Add(-olderThan)
	return s.forEach(failedDir, func(id string) error {
		e, err := s.load(failedDir, id)
		if err != nil {
			return err
		}
		failed := e.State.Failed
		if failed.IsZero() {
			failed = e.Envelope.Received
		}
		if failed.After(cutoff) {
			return errLeft
		}
		return s.remove(failedDir, id)
	})
}

// errLeft is what a forEach function returns for a message it leaves alone.
var errLeft = errors.New("left alone")

// forEach calls fn for each message in folder and returns how many it
// handled. Messages gone meanwhile, and those fn leaves alone, are not
// errors.
func (s *Spool) forEach(folder string, fn func(id string) error) (int, error) {
	ids, err := s.ids(folder)
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, id := range ids {
		switch err := fn(id); {
		case err == nil:
			n++
		case !errors.Is(err, ErrNotFound) && !errors.Is(err, errLeft):
			errs = append(errs, err)
		}
	}
	if n > 0 {
		errs = append(errs, s.Poke())
	}
	return n, errors.Join(errs...)
}

// Delete removes a message, queued or failed, for good.
func (s *Spool) Delete(id string) error {
	err := s.remove(queueDir, id)
	if errors.Is(err, ErrNotFound) {
		err = s.remove(failedDir, id)
	}
	if err != nil {
		return err
	}
	return s.Poke()
}

// Poke tells a server running on this spool that an admin changed it, so
// that it rescans now rather than at its next periodic rescan.
func (s *Spool) Poke() error {
	f, err := os.Create(filepath.Join(s.dir, pokeFile))
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	return f.Close()
}

// TakePoke reports whether the spool was poked since the last call, and
// clears the poke. A poke made while the caller rescans is not lost: it
// either was taken before the rescan began or stays for the next call.
func (s *Spool) TakePoke() bool {
	return os.Remove(filepath.Join(s.dir, pokeFile)) == nil
}
