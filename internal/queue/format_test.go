package queue

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Each SaveState appends a record; the last whole one is the state, and a
// record torn by a crash is skipped, even with another appended after it.
func TestStateRecordsAppended(t *testing.T) {
	s := openSpool(t)
	id := commit(t, s, testEnvelope(), testRaw)
	path := s.path(queueDir, id, msgExt)
	now := time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)
	for attempt := 1; attempt <= 3; attempt++ {
		st := State{Attempts: attempt, NextAttempt: now.Add(time.Duration(attempt) * time.Minute), LastError: "HTTP 503"}
		if err := s.SaveState(id, st); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.State(id); !reflect.DeepEqual(got, st) {
			t.Errorf("state after attempt %d = %+v, want %+v", attempt, got, st)
		}
	}

	// A crash in the middle of the fourth record.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("\n{\"attempts\":4,\"last_att")
	f.Close()
	s, err = Open(s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	e, err := s.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if e.State.Attempts != 3 {
		t.Errorf("state after a torn record = %+v, want attempt 3", e.State)
	}
	if got := readAll(t, e); got != testRaw {
		t.Errorf("raw = %q, want %q", got, testRaw)
	}
	if err := s.SaveState(id, State{Attempts: 4}); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.State(id); st.Attempts != 4 {
		t.Errorf("state after a record past the torn one = %+v, want attempt 4", st)
	}
}

// writeVersion1 writes a message as the previous version spooled it: the
// envelope line and the raw message in ID.msg, the state (if any) in
// ID.state.
func writeVersion1(t *testing.T, dir, folder, id string, st *State) {
	t.Helper()
	env := testEnvelope()
	env.ID = id
	line, _ := json.Marshal(env)
	if err := os.WriteFile(filepath.Join(dir, folder, id+msgExt), []byte(string(line)+"\n"+testRaw), 0o640); err != nil {
		t.Fatal(err)
	}
	if st != nil {
		data, _ := json.Marshal(st)
		if err := os.WriteFile(filepath.Join(dir, folder, id+stateExt), data, 0o640); err != nil {
			t.Fatal(err)
		}
	}
}

// A spool left by the previous version is converted at start, envelope,
// raw message and state intact, in the queue and the dead letters alike.
func TestOpenConvertsVersion1(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(dir); err != nil {
		t.Fatal(err)
	}
	next := time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)
	tried := State{Attempts: 2, NextAttempt: next, LastError: "HTTP 503", RequestID: "r-1"}
	dead := State{Attempts: 5, LastError: "HTTP 404 ErrorInvalidUser", Failed: next}
	writeVersion1(t, dir, queueDir, "0000000000001aaaaaa", nil)
	writeVersion1(t, dir, queueDir, "0000000000002bbbbbb", &tried)
	writeVersion1(t, dir, failedDir, "0000000000003cccccc", &dead)
	os.WriteFile(filepath.Join(dir, queueDir, "0000000000004dddddd"+msgExt), []byte("not an envelope\n"), 0o640)

	// Admin commands read the old layout, but never write to it.
	admin, err := OpenExisting(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := admin.State("0000000000002bbbbbb"); err != nil || !reflect.DeepEqual(st, tried) {
		t.Errorf("old state read as %+v, %v; want %+v", st, err, tried)
	}
	before, _ := os.ReadFile(filepath.Join(dir, queueDir, "0000000000002bbbbbb"+msgExt))
	if err := admin.Retry("0000000000002bbbbbb"); !errors.Is(err, errNoHeader) {
		t.Errorf("Retry of an old message = %v, want %v", err, errNoHeader)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, queueDir, "0000000000002bbbbbb"+msgExt)); string(after) != string(before) {
		t.Error("Retry changed an old message")
	}
	if e, err := admin.Get("0000000000002bbbbbb"); err != nil {
		t.Fatal(err)
	} else if err := e.SaveState(State{Attempts: 3}); !errors.Is(err, errNoHeader) {
		t.Errorf("SaveState of an old message's entry = %v, want %v", err, errNoHeader)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, queueDir, "0000000000002bbbbbb"+msgExt)); string(after) != string(before) {
		t.Error("SaveState of an entry changed an old message")
	}

	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		folder, id string
		want       State
	}{
		{queueDir, "0000000000001aaaaaa", State{}},
		{queueDir, "0000000000002bbbbbb", tried},
		{failedDir, "0000000000003cccccc", dead},
	} {
		e, err := s.load(c.folder, c.id)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(e.State, c.want) || e.Envelope.ID != c.id || e.Envelope.Mailbox != testEnvelope().Mailbox {
			t.Errorf("%s: state %+v, envelope %+v; want state %+v", c.id, e.State, e.Envelope, c.want)
		}
		if got := readAll(t, e); got != testRaw {
			t.Errorf("%s: raw = %q", c.id, got)
		}
		data, _ := os.ReadFile(e.path)
		if !strings.HasPrefix(string(data), headerPrefix) {
			t.Errorf("%s not converted: %q", c.id, data[:20])
		}
	}
	// The unreadable file is left for the engine to move to the dead
	// letters; no .state file is left anywhere.
	if _, err := s.Get("0000000000004dddddd"); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Get of the unreadable file = %v, want ErrCorrupt", err)
	}
	for _, folder := range []string{queueDir, failedDir} {
		for _, name := range files(t, s, folder) {
			if strings.HasSuffix(name, stateExt) {
				t.Errorf("%s left in %s", name, folder)
			}
		}
	}
	// The converted messages take new state records.
	if err := s.SaveState("0000000000002bbbbbb", State{Attempts: 3}); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.State("0000000000002bbbbbb"); st.Attempts != 3 {
		t.Errorf("state after conversion and SaveState = %+v", st)
	}
}

// A delivered message's file is reused for the next message, written over
// and cut to its length, so nothing of the older message or of its state
// records shows; a large one is removed rather than kept. Open makes the
// spares a burst right after a start writes into, and replaces old ones.
func TestDoneKeepsSpareFiles(t *testing.T) {
	s := openSpool(t)
	spareSizes := func() map[string]int64 {
		t.Helper()
		sizes := map[string]int64{}
		for _, name := range files(t, s, spareDir) {
			fi, err := os.Stat(filepath.Join(s.Dir(), spareDir, name))
			if err != nil {
				t.Fatal(err)
			}
			sizes[name] = fi.Size()
		}
		return sizes
	}
	if got := spareSizes(); len(got) != maxSpares {
		t.Fatalf("%d spares after Open, want %d", len(got), maxSpares)
	}
	long := testRaw + strings.Repeat("longer than the next message\r\n", 100)
	first := commit(t, s, testEnvelope(), long)
	if got := spareSizes(); len(got) != maxSpares-1 {
		t.Fatalf("%d spares once a message took one, want %d", len(got), maxSpares-1)
	}
	if err := s.SaveState(first, State{Attempts: 7}); err != nil {
		t.Fatal(err)
	}
	if err := s.Done(get(t, s, first)); err != nil {
		t.Fatal(err)
	}
	if got := spareSizes(); len(got) != maxSpares || got[first+spareExt] == 0 {
		t.Fatalf("spares after Done = %v, want %d with %s", got, maxSpares, first+spareExt)
	}
	second := commit(t, s, testEnvelope(), testRaw)
	if _, kept := spareSizes()[first+spareExt]; kept {
		t.Errorf("the delivered message's spare was not the one reused")
	}
	e, err := s.Get(second)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, e); got != testRaw || !reflect.DeepEqual(e.State, State{}) {
		t.Errorf("message written into a spare: raw %q, state %+v", got, e.State)
	}
	if err := s.SaveState(second, State{Attempts: 1}); err != nil {
		t.Fatal(err)
	}
	if e, err = s.Get(second); err != nil || e.State.Attempts != 1 || readAll(t, e) != testRaw {
		t.Errorf("message in a spare after SaveState: %+v, %v", e, err)
	}

	large := commit(t, s, testEnvelope(), strings.Repeat("x", maxSpareSize+1))
	if err := s.Done(get(t, s, large)); err != nil {
		t.Fatal(err)
	}
	if _, kept := spareSizes()[large+spareExt]; kept {
		t.Errorf("a large delivered message was kept as a spare")
	}
	// A message small itself, made large by the state records of its
	// attempts: Done counts what the entry appended.
	grown := commit(t, s, testEnvelope(), strings.Repeat("x", maxSpareSize-1000))
	e = get(t, s, grown)
	if err := e.SaveState(State{LastError: strings.Repeat("HTTP 503 ", 200)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Done(e); err != nil {
		t.Fatal(err)
	}
	if _, kept := spareSizes()[grown+spareExt]; kept {
		t.Errorf("a delivered message grown large by its state records was kept as a spare")
	}
	if err := s.Done(get(t, s, second)); err != nil {
		t.Fatal(err)
	}
	before := spareSizes()
	if s, err = Open(s.Dir()); err != nil {
		t.Fatal(err)
	}
	got := spareSizes()
	for name, size := range got {
		if _, old := before[name]; old || size != 0 {
			t.Errorf("spare %s (%d bytes) after a restart, want only new empty ones", name, size)
		}
	}
	if len(got) != maxSpares || len(files(t, s, tmpDir)) != 0 {
		t.Errorf("after a restart: %d spares, tmp %v; want %d and nothing", len(got), files(t, s, tmpDir), maxSpares)
	}
}

// Changes passed to syncSoon are fsynced within syncDelay.
func TestSyncSoon(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("Windows cannot fsync a folder")
	}
	d := &dirSync{path: t.TempDir()}
	for range 3 {
		d.tickets.Add(1) // three changes made
		d.syncSoon()
	}
	deadline := time.Now().Add(10 * syncDelay)
	for {
		d.mu.Lock()
		covered := d.covered
		d.mu.Unlock()
		if covered >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("changes covered after %s: %d of 3", 10*syncDelay, covered)
		}
		time.Sleep(syncDelay / 10)
	}
	if d.scheduled.Load() {
		t.Error("a sync is still scheduled after the changes were covered")
	}
}

// State skips the envelope line without decoding it, however long it is.
func TestStateSkipsLongEnvelope(t *testing.T) {
	s := openSpool(t)
	env := testEnvelope()
	for i := range 300 {
		env.Recipients = append(env.Recipients, fmt.Sprintf("recipient%d@example.com", i))
	}
	id := commit(t, s, env, testRaw)
	if st, err := s.State(id); err != nil || !reflect.DeepEqual(st, State{}) {
		t.Errorf("state of a message never tried = %+v, %v", st, err)
	}
	want := State{Attempts: 2, LastError: "HTTP 503"}
	if err := s.SaveState(id, want); err != nil {
		t.Fatal(err)
	}
	if st, err := s.State(id); err != nil || !reflect.DeepEqual(st, want) {
		t.Errorf("state = %+v, %v; want %+v", st, err, want)
	}
}
