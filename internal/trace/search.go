package trace

import (
	"bufio"
	"bytes"
	"encoding/json"
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
	"unicode/utf8"

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
	Accepted  Event
	State     string  // queued (no outcome yet), deferred, held, delivered, failed
	Updated   Event   // the latest outcome, zero while queued
	Events    []Event // every event, oldest first
	Reference string  // the upstream's reference of the latest outcome that had one
	Bounce    string  // queue ID of the bounce, if one was sent
	Attempts  int     // as of the latest outcome
	Reason    string  // of the latest deferral, hold or failure
}

// Result is what Search found.
type Result struct {
	Messages []*Message // in order of acceptance
	Older    bool       // older matching messages were left out by Query.Limit
}

// Search reads the trace files in dir, oldest first, and returns the
// messages q selects with all their events. Files of days before q.Since
// are not read; other lines are skipped without decoding unless they can
// match, only the fields a query tests are decoded, and a message's
// events only once it is kept, so that a search costs about one read of
// the files.
//
// With a limit, the newest files are counted first: when they alone hold
// more matches than the limit, older files are not read at all.
func Search(dir string, q Query) (*Result, error) {
	names, err := files(dir, q.Since)
	if err != nil {
		return nil, err
	}
	s := newSearch(q)
	first, err := s.firstNeeded(dir, names)
	if err != nil {
		return nil, err
	}
	for _, name := range names[first:] {
		if err := eachLine(filepath.Join(dir, name), s.line); err != nil {
			return nil, err
		}
	}
	return s.result(), nil
}

// recentShare bounds what firstNeeded reads: at most this share of the
// trace's bytes, so that a narrow search, which must read every file,
// pays little for the attempt.
const recentShare = 8

// firstNeeded is the index in names of the oldest file the search must
// read. With a limit and no state to select (only later events decide a
// state), it counts the matches of the newest files, newest first: once
// they hold more than the limit, older matches could only be left out.
func (s *search) firstNeeded(dir string, names []string) (int, error) {
	if s.q.Limit <= 0 || s.q.State != "" {
		return 0, nil
	}
	sizes := make([]int64, len(names))
	var budget int64
	for i, name := range names {
		if info, err := os.Stat(filepath.Join(dir, name)); err == nil {
			sizes[i] = info.Size()
			budget += info.Size() / recentShare
		}
	}
	matched := 0
	count := func(line []byte) {
		if id, rest, ok := lineID(line); ok && bytes.HasPrefix(rest, acceptedMark) && s.mayMatch(line) && s.matches(id, line) {
			matched++
		}
	}
	for i := len(names) - 1; i > 0 && sizes[i] <= budget; i-- {
		budget -= sizes[i]
		if err := eachLine(filepath.Join(dir, names[i]), count); err != nil {
			return 0, err
		}
		if matched > s.q.Limit {
			return i, nil
		}
	}
	return 0, nil
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
	needles [][]byte // lower-case texts, as written, that an Accepted line must contain to match
	found   map[string]*candidate
	order   []string // IDs matched, in order of acceptance; some no longer in found
	head    int      // order[:head] were evicted by the limit
	older   bool     // a matching message was evicted
	lower   []byte   // scratch for case-insensitive matching
}

func newSearch(q Query) *search {
	s := &search{q: q, found: make(map[string]*candidate)}
	for _, text := range []string{q.From, q.To, q.ID, strings.Trim(q.MessageID, "<>")} {
		if n := needle(strings.TrimPrefix(strings.ToLower(text), "*")); n != nil {
			s.needles = append(s.needles, n)
		}
	}
	return s
}

// needle is text as marshal writes it inside a string (quotes, backslashes
// and <>& escaped), or nil when it cannot serve: empty, or not ASCII,
// which mayMatch does not fold to lower case.
func needle(text string) []byte {
	encoded, err := json.Marshal(text)
	if err != nil || text == "" || slices.ContainsFunc(encoded, func(c byte) bool { return c >= utf8.RuneSelf }) {
		return nil
	}
	return encoded[1 : len(encoded)-1]
}

// eachLine hands each whole line of the file at path to take; the slice
// is valid only during the call.
func eachLine(path string, take func(line []byte)) error {
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
		take(line)
	}
}

// acceptedMark is how an Accepted line reads right after its time.
var acceptedMark = []byte(`,"ev":"` + Accepted + `"`)

// candidate is a message the search may show: its state so far, and its
// lines, decoded only once the search keeps it.
type candidate struct {
	state string
	lines [][]byte
}

// line takes one line of a file.
func (s *search) line(line []byte) {
	id, rest, ok := lineID(line)
	if !ok {
		return
	}
	if !bytes.HasPrefix(rest, acceptedMark) {
		if c := s.found[string(id)]; c != nil {
			c.lines = append(c.lines, bytes.Clone(line))
			if kind := lineKind(rest); kind != "" && kind != Bounced {
				c.state = kind
			}
			s.forgetUnwanted(id, c)
		}
		return
	}
	if !s.mayMatch(line) || !s.matches(id, line) {
		return
	}
	key := string(id)
	s.found[key] = &candidate{state: "queued", lines: [][]byte{bytes.Clone(line)}}
	s.order = append(s.order, key)
	for s.q.Limit > 0 && len(s.found) > s.q.Limit {
		id := s.order[s.head]
		s.head++
		if s.found[id] != nil {
			delete(s.found, id)
			s.older = true
		}
	}
	// Let go of the evicted IDs once they are most of the list.
	if s.head > 1024 && s.head > len(s.order)/2 {
		s.order = append(s.order[:0], s.order[s.head:]...)
		s.head = 0
	}
}

// kinds are the event kinds a line can have.
var kinds = []string{Accepted, Deferred, Held, Delivered, Failed, Bounced}

// lineKind is the event kind of a line, from what follows its time; ""
// when it is none of kinds.
func lineKind(rest []byte) string {
	kind, _ := bytes.CutPrefix(rest, []byte(`,"ev":"`))
	kind, _, _ = bytes.Cut(kind, []byte(`"`))
	for _, k := range kinds {
		if string(kind) == k {
			return k
		}
	}
	return ""
}

// forgetUnwanted drops a message that reached a final state other than
// the one asked for, so that memory holds only what may still match.
func (s *search) forgetUnwanted(id []byte, c *candidate) {
	if s.q.State != "" && c.state != s.q.State && (c.state == Delivered || c.state == Failed) {
		delete(s.found, string(id))
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

// matches is the exact test of an Accepted line that mayMatch let
// through. It decodes only the fields the query tests.
func (s *search) matches(id, line []byte) bool {
	q := s.q
	if q.ID != "" && string(id) != q.ID {
		return false
	}
	if q.From != "" {
		from, ok := fieldStrings(line, fromKey)
		if !ok || !slices.ContainsFunc(from, func(f string) bool { return envelope.SenderAllowed([]string{q.From}, f) }) {
			return false
		}
	}
	if q.To != "" {
		to, ok := fieldStrings(line, toKey)
		if !ok || !slices.ContainsFunc(to, func(r string) bool { return envelope.SenderAllowed([]string{q.To}, r) }) {
			return false
		}
	}
	if q.MessageID != "" {
		mid, ok := fieldStrings(line, messageIDKey)
		if !ok || len(mid) != 1 || !strings.EqualFold(strings.Trim(mid[0], "<>"), strings.Trim(q.MessageID, "<>")) {
			return false
		}
	}
	if q.Client.IsValid() {
		client, ok := fieldStrings(line, clientKey)
		if !ok || len(client) != 1 {
			return false
		}
		ap, err := netip.ParseAddrPort(client[0])
		if err != nil || !q.Client.Contains(ap.Addr().Unmap()) {
			return false
		}
	}
	return true
}

// The keys of an Accepted line that a query tests, as they are written.
var (
	clientKey    = []byte(`"c":`)
	fromKey      = []byte(`"f":`)
	toKey        = []byte(`"to":`)
	messageIDKey = []byte(`"mid":`)
)

// fieldStrings returns the string, or the strings, that key holds in line:
// none when the line leaves the key out (it was empty).
func fieldStrings(line, key []byte) ([]string, bool) {
	_, value, found := bytes.Cut(line, key)
	if !found {
		return nil, true
	}
	value, ok := stringOrStrings(value)
	if !ok {
		return nil, false
	}
	if bytes.IndexByte(value, '\\') >= 0 {
		var list []string
		if value[0] == '"' {
			value = slices.Concat([]byte("["), value, []byte("]"))
		}
		return list, json.Unmarshal(value, &list) == nil
	}
	// Nothing is escaped: the quotes delimit the strings as they are.
	if value[0] == '[' {
		value = value[1 : len(value)-1]
	}
	if len(value) < 2 {
		return nil, true
	}
	return strings.Split(string(value[1:len(value)-1]), `","`), true
}

// stringOrStrings cuts the JSON string or array of strings at the start
// of b from what follows. A line is a flat object of keys that marshal
// wrote, and marshal escapes every quote inside a string, so a key found
// as `"key":` is that key, never text inside a value.
func stringOrStrings(b []byte) ([]byte, bool) {
	if len(b) == 0 || b[0] != '"' && b[0] != '[' {
		return nil, false
	}
	inString, escaped := false, false
	for i, c := range b {
		switch {
		case escaped:
			escaped = false
		case c == '\\':
			escaped = true
		case c == '"' && inString && b[0] == '"':
			return b[:i+1], true
		case c == '"':
			inString = !inString
		case c == ']' && !inString:
			return b[:i+1], true
		}
	}
	return nil, false
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
}

// result decodes the messages kept, replaying their events.
func (s *search) result() *Result {
	r := &Result{Older: s.older}
	for _, id := range s.order[s.head:] {
		c := s.found[id]
		if c == nil {
			continue
		}
		if m := c.decode(); m != nil && (s.q.State == "" || m.State == s.q.State) {
			r.Messages = append(r.Messages, m)
		}
	}
	return r
}

// decode is the message c's lines tell, the Accepted one first; nil when
// that one does not decode.
func (c *candidate) decode() *Message {
	a, err := unmarshal(c.lines[0])
	if err != nil {
		return nil
	}
	m := &Message{Accepted: a, State: "queued", Events: []Event{a}}
	for _, line := range c.lines[1:] {
		if e, err := unmarshal(line); err == nil {
			m.add(e)
		}
	}
	return m
}
