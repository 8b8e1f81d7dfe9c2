package trace

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/smtpgw/smtpgw/internal/envelope"
)

// Query selects messages by what their Accepted event says. Empty fields
// match every message.
type Query struct {
	From      string       // envelope sender: an address or "*@domain", as allowed_senders
	To        string       // one of the recipients, the same way
	Client    netip.Prefix // the client's address falls in it
	ID        string       // the queue ID
	MessageID string       // the Message-ID header, with or without <>
	Since     time.Time    // accepted at or after
	Until     time.Time    // accepted before
	State     string       // the message's state now: see Message.State
	Limit     int          // keep at most this many, the latest accepted; 0: no limit
}

// States a message can be in, after its latest event.
var States = []string{"queued", Deferred, Held, Delivered, Failed}

// Message is one message as the trace tells it.
type Message struct {
	Accepted  Event   `json:"-"`
	State     string  `json:"state"`     // queued (no outcome yet), deferred, held, delivered, failed
	Updated   Event   `json:"-"`         // the latest outcome, zero while queued
	Events    []Event `json:"-"`         // every event, oldest first
	Reference string  `json:"reference"` // the upstream's reference of the latest outcome that had one
	Bounce    string  `json:"bounce_id"` // queue ID of the bounce, if one was sent
	Attempts  int     `json:"attempts"`  // as of the latest outcome
	Reason    string  `json:"reason"`    // of the latest deferral, hold or failure
	Finished  string  `json:"finished"`  // when it was delivered or failed, RFC 3339; empty before
}

// Result is what Search found.
type Result struct {
	Messages []*Message // in order of acceptance
	Dropped  int        // matching messages left out by Query.Limit (the oldest)
}

// Search reads the trace files in dir, oldest first, and returns the
// messages q selects with all their events. Files of days before q.Since
// are not read; other lines are skipped without decoding unless they can
// match, so a search is about as fast as reading the files.
func Search(dir string, q Query) (*Result, error) {
	names, err := files(dir, q.Since)
	if err != nil {
		return nil, err
	}
	s := newSearch(q)
	for _, name := range names {
		if err := s.file(filepath.Join(dir, name)); err != nil {
			return nil, err
		}
	}
	return s.result(), nil
}

// files lists the trace files of dir holding days at or after since.
func files(dir string, since time.Time) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("trace: %w", err)
	}
	var first string
	if !since.IsZero() {
		first = fileName(since)
	}
	var names []string
	for _, e := range entries {
		if isTraceFile(e.Name()) && e.Name() >= first {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	return names, nil
}

// search is one Search in progress.
type search struct {
	q       Query
	needles [][]byte // lower-case texts an Accepted line must contain to match
	found   map[string]*Message
	order   []string // IDs matched, in order of acceptance; some no longer in found
	head    int      // order[:head] were evicted by the limit
	dropped int
	lower   []byte // scratch for case-insensitive matching
}

func newSearch(q Query) *search {
	s := &search{q: q, found: make(map[string]*Message)}
	for _, text := range []string{q.From, q.To, q.ID, strings.Trim(q.MessageID, "<>")} {
		text = strings.TrimPrefix(strings.ToLower(text), "*")
		if text != "" {
			s.needles = append(s.needles, []byte(text))
		}
	}
	return s
}

func (s *search) file(path string) error {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil // deleted by the retention meanwhile
		}
		return fmt.Errorf("trace: %w", err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	for {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// No event is this long: skip the rest of the line.
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = r.ReadSlice('\n')
			}
			continue
		}
		if err != nil {
			// A last line without its newline is being written now.
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("trace: %w", err)
		}
		s.line(line)
	}
}

// acceptedMark is how an Accepted line reads right after its time.
var acceptedMark = []byte(`,"ev":"` + Accepted + `"`)

// line takes one line of a file.
func (s *search) line(line []byte) {
	id, rest, ok := lineID(line)
	if !ok {
		return
	}
	if !bytes.HasPrefix(rest, acceptedMark) {
		if m := s.found[string(id)]; m != nil {
			if e, err := unmarshal(line); err == nil {
				m.add(e)
				s.forgetUnwanted(m)
			}
		}
		return
	}
	if !s.mayMatch(line) {
		return
	}
	e, err := unmarshal(line)
	if err != nil || !s.matches(e) {
		return
	}
	m := &Message{Accepted: e, State: "queued"}
	m.Events = append(m.Events, e)
	s.found[e.ID] = m
	s.order = append(s.order, e.ID)
	for s.q.Limit > 0 && len(s.found) > s.q.Limit {
		id := s.order[s.head]
		s.head++
		if s.found[id] != nil {
			delete(s.found, id)
			s.dropped++
		}
	}
}

// forgetUnwanted drops a message that reached a final state other than
// the one asked for, so that memory holds only what may still match.
func (s *search) forgetUnwanted(m *Message) {
	if s.q.State != "" && m.State != s.q.State && (m.State == Delivered || m.State == Failed) {
		delete(s.found, m.Accepted.ID)
	}
}

// lineID returns the queue ID of a line and what follows its time.
func lineID(line []byte) (id, rest []byte, ok bool) {
	rest, ok = bytes.CutPrefix(line, []byte(`{"id":"`))
	if !ok {
		return nil, nil, false
	}
	id, rest, ok = bytes.Cut(rest, []byte(`","t":`))
	if !ok {
		return nil, nil, false
	}
	i := 0
	for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
		i++
	}
	return id, rest[i:], true
}

// mayMatch is the cheap test of an Accepted line: its time, then the texts
// it must contain, before it is decoded.
func (s *search) mayMatch(line []byte) bool {
	if !s.q.Since.IsZero() || !s.q.Until.IsZero() {
		_, rest, _ := bytes.Cut(line, []byte(`"t":`))
		end := bytes.IndexByte(rest, ',')
		ms, err := strconv.ParseInt(string(rest[:max(end, 0)]), 10, 64)
		if err != nil {
			return false
		}
		t := time.UnixMilli(ms)
		if !s.q.Since.IsZero() && t.Before(s.q.Since) || !s.q.Until.IsZero() && !t.Before(s.q.Until) {
			return false
		}
	}
	if len(s.needles) == 0 {
		return true
	}
	s.lower = append(s.lower[:0], line...)
	for i, c := range s.lower {
		if 'A' <= c && c <= 'Z' {
			s.lower[i] = c + 'a' - 'A'
		}
	}
	for _, n := range s.needles {
		if !bytes.Contains(s.lower, n) {
			return false
		}
	}
	return true
}

// matches is the exact test of a decoded Accepted event.
func (s *search) matches(e Event) bool {
	q := s.q
	if q.ID != "" && e.ID != q.ID {
		return false
	}
	if q.From != "" && !envelope.SenderAllowed([]string{q.From}, e.From) {
		return false
	}
	if q.To != "" && !slices.ContainsFunc(e.To, func(r string) bool { return envelope.SenderAllowed([]string{q.To}, r) }) {
		return false
	}
	if q.MessageID != "" && !strings.EqualFold(strings.Trim(e.MessageID, "<>"), strings.Trim(q.MessageID, "<>")) {
		return false
	}
	if q.Client.IsValid() {
		ap, err := netip.ParseAddrPort(e.Client)
		if err != nil || !q.Client.Contains(ap.Addr().Unmap()) {
			return false
		}
	}
	return true
}

// add applies a later event to m.
func (m *Message) add(e Event) {
	m.Events = append(m.Events, e)
	if e.Reference != "" && e.Kind != Bounced {
		m.Reference = e.Reference
	}
	if e.Attempts > 0 {
		m.Attempts = e.Attempts
	}
	switch e.Kind {
	case Bounced:
		m.Bounce = e.Reference
		return
	case Deferred, Held, Failed:
		m.Reason = e.Reason
	case Delivered:
		m.Reason = ""
	}
	m.State, m.Updated = e.Kind, e
	if e.Kind == Delivered || e.Kind == Failed {
		m.Finished = e.Time.UTC().Format(time.RFC3339)
	}
}

func (s *search) result() *Result {
	r := &Result{Dropped: s.dropped}
	for _, id := range s.order[s.head:] {
		m := s.found[id]
		if m != nil && (s.q.State == "" || m.State == s.q.State) {
			r.Messages = append(r.Messages, m)
		}
	}
	return r
}
