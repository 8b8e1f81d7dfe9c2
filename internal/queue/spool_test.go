package queue

import (
	"bytes"
	"errors"
	"io"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smtpgw/smtpgw/internal/envelope"
)

const testRaw = "From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nbody\r\n"

func testEnvelope() *envelope.Envelope {
	return &envelope.Envelope{
		Identity:   "user:mfp",
		Mailbox:    "scanner@example.com",
		MailFrom:   "a@example.com",
		Recipients: []string{"b@example.com"},
		ClientAddr: "127.0.0.1:1234",
		Received:   time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC),
	}
}

// commit spools one message and returns its ID.
func commit(t testing.TB, s *Spool, env *envelope.Envelope, raw string) string {
	t.Helper()
	in, err := s.Create(env)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(in, raw); err != nil {
		t.Fatal(err)
	}
	id, err := in.Commit()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// get loads a queued message.
func get(t testing.TB, s *Spool, id string) *Entry {
	t.Helper()
	e, err := s.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func openSpool(t testing.TB) *Spool {
	t.Helper()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// files lists the names in one spool folder.
func files(t *testing.T, s *Spool, folder string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(s.Dir(), folder))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func readAll(t *testing.T, e *Entry) string {
	t.Helper()
	r, err := e.Raw()()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestCommitAndGet(t *testing.T) {
	s := openSpool(t)
	var told []*Entry
	s.OnCommit(func(e *Entry) { told = append(told, e) })
	env := testEnvelope()
	id := commit(t, s, env, testRaw)
	if env.ID != id {
		t.Errorf("env.ID = %q, want %q", env.ID, id)
	}
	// OnCommit is told the message as Get would load it.
	if len(told) != 1 || told[0].Envelope.ID != id || !reflect.DeepEqual(told[0].State, State{}) || told[0].Size != int64(len(testRaw)) {
		t.Fatalf("OnCommit told %+v, want [%s]", told, id)
	}
	if got := readAll(t, told[0]); got != testRaw {
		t.Errorf("raw of the entry OnCommit was told = %q, want %q", got, testRaw)
	}
	// The envelope it was told of is its own: spooling another message
	// with the same one does not change it.
	if other := commit(t, s, env, testRaw); told[0].Envelope.ID != id || told[1].Envelope.ID != other {
		t.Errorf("OnCommit told IDs %s and %s, want %s and %s", told[0].Envelope.ID, told[1].Envelope.ID, id, other)
	}

	// A restart finds the message with its original reception time.
	s, err := Open(s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	ids, err := s.Queued()
	if err != nil || len(ids) != 2 || !slices.Contains(ids, id) {
		t.Fatalf("Queued = %v, %v; want %s and another", ids, err, id)
	}
	e, err := s.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if !e.Envelope.Received.Equal(env.Received) || e.Envelope.Mailbox != env.Mailbox || e.Envelope.ID != id {
		t.Errorf("envelope = %+v, want %+v", e.Envelope, env)
	}
	if !reflect.DeepEqual(e.State, State{}) {
		t.Errorf("state of a fresh message = %+v, want zero", e.State)
	}
	if e.Size != int64(len(testRaw)) {
		t.Errorf("Size = %d, want %d", e.Size, len(testRaw))
	}
	// The opener streams the raw message, each time from the start.
	for range 2 {
		if got := readAll(t, e); got != testRaw {
			t.Errorf("raw = %q, want %q", got, testRaw)
		}
	}
}

func TestQueuedOldestFirst(t *testing.T) {
	s := openSpool(t)
	var want []string
	for i := range 5 {
		env := testEnvelope()
		env.Received = env.Received.Add(time.Duration(i) * time.Millisecond)
		want = append(want, commit(t, s, env, testRaw))
	}
	got, err := s.Queued()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("Queued = %v, want %v", got, want)
	}
}

func TestOpenRemovesLeftovers(t *testing.T) {
	s := openSpool(t)
	id := commit(t, s, testEnvelope(), testRaw)
	in, err := s.Create(testEnvelope()) // interrupted reception
	if err != nil {
		t.Fatal(err)
	}
	in.Write([]byte(testRaw))
	orphan := filepath.Join(s.Dir(), queueDir, "zzzz"+stateExt) // interrupted removal
	os.WriteFile(orphan, []byte(`{"attempts":1}`), 0o640)

	s, err = Open(s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if left := files(t, s, tmpDir); len(left) != 0 {
		t.Errorf("tmp not cleaned: %v", left)
	}
	if got := files(t, s, queueDir); len(got) != 1 || got[0] != id+msgExt {
		t.Errorf("queue = %v, want only %s", got, id+msgExt)
	}
}

// The attempt is on disk before the call is made: a crash right after
// SaveState and before Done leaves the message queued with its attempt
// counted and its next attempt in the future.
func TestStateSurvivesCrash(t *testing.T) {
	s := openSpool(t)
	id := commit(t, s, testEnvelope(), testRaw)
	now := time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)
	st := State{Attempts: 1, LastAttempt: now, NextAttempt: now.Add(time.Minute)}
	if err := s.SaveState(id, st); err != nil {
		t.Fatal(err)
	}

	s, err := Open(s.Dir()) // the restart after the crash
	if err != nil {
		t.Fatal(err)
	}
	e, err := s.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if !e.State.NextAttempt.Equal(st.NextAttempt) || e.State.Attempts != 1 {
		t.Errorf("state after restart = %+v, want %+v", e.State, st)
	}
	if left := files(t, s, tmpDir); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestDone(t *testing.T) {
	s := openSpool(t)
	id := commit(t, s, testEnvelope(), testRaw)
	if err := s.SaveState(id, State{Attempts: 1}); err != nil {
		t.Fatal(err)
	}
	e := get(t, s, id)
	if err := s.Done(e); err != nil {
		t.Fatal(err)
	}
	if left := files(t, s, queueDir); len(left) != 0 {
		t.Errorf("queue after Done: %v", left)
	}
	if err := s.Done(e); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Done = %v, want ErrNotFound", err)
	}
	if _, err := s.Get(id); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Done = %v, want ErrNotFound", err)
	}
}

func TestSaveStateOfVanishedMessage(t *testing.T) {
	s := openSpool(t)
	id := commit(t, s, testEnvelope(), testRaw)
	e, err := s.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(id); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveState(id, State{Attempts: 1}); !errors.Is(err, ErrNotFound) {
		t.Errorf("SaveState = %v, want ErrNotFound", err)
	}
	if left := files(t, s, queueDir); len(left) != 0 {
		t.Errorf("queue = %v, want empty", left)
	}
	if _, err := e.Raw()(); !errors.Is(err, ErrNotFound) {
		t.Errorf("opening a deleted message = %v, want ErrNotFound", err)
	}
	if err := s.Fail(id, State{}, "x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Fail = %v, want ErrNotFound", err)
	}
	if left := files(t, s, failedDir); len(left) != 0 {
		t.Errorf("failed = %v, want empty", left)
	}
}

func TestFail(t *testing.T) {
	s := openSpool(t)
	id := commit(t, s, testEnvelope(), testRaw)
	const reason = "graph permanent failure: HTTP 403 ErrorAccessDenied"
	if err := s.Fail(id, State{Attempts: 3}, reason); err != nil {
		t.Fatal(err)
	}
	if left := files(t, s, queueDir); len(left) != 0 {
		t.Errorf("queue after Fail: %v", left)
	}
	if ids, _ := s.Queued(); len(ids) != 0 {
		t.Errorf("Queued after Fail = %v", ids)
	}
	d, err := s.Show(id)
	if err != nil {
		t.Fatal(err)
	}
	if d.State != StateFailed || d.LastError != reason || d.Attempts != 3 {
		t.Errorf("failed message = %+v", d.Info)
	}
	if string(d.Header) != "From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\n\r\n" {
		t.Errorf("Header = %q", d.Header)
	}
	if d.Envelope.Mailbox != "scanner@example.com" {
		t.Errorf("Envelope = %+v", d.Envelope)
	}
}

func TestAdmin(t *testing.T) {
	s := openSpool(t)
	fresh := commit(t, s, testEnvelope(), testRaw)
	deferred := commit(t, s, testEnvelope(), testRaw)
	dead := commit(t, s, testEnvelope(), testRaw)
	held := commit(t, s, testEnvelope(), testRaw)
	later := time.Now().Add(time.Hour)
	s.SaveState(deferred, State{Attempts: 2, NextAttempt: later, LastError: "HTTP 503"})
	s.Fail(dead, State{}, "HTTP 404 ErrorInvalidUser")
	s.SaveState(held, State{NextAttempt: later, Held: "mailbox guard: identity user:erp would pass its share"})

	admin, err := OpenExisting(s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	list, err := admin.List()
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]string{}
	for _, info := range list {
		states[info.ID] = info.State
		if info.Mailbox != "scanner@example.com" || info.Size != int64(len(testRaw)) || len(info.Recipients) != 1 {
			t.Errorf("info = %+v", info)
		}
	}
	want := map[string]string{fresh: StateQueued, deferred: StateDeferred, dead: StateFailed, held: StateHeld}
	if !maps.Equal(states, want) {
		t.Errorf("states = %v, want %v", states, want)
	}
	if d, err := admin.Show(held); err != nil || !strings.Contains(d.Held, "user:erp") {
		t.Errorf("Show(held) = %+v, %v", d, err)
	}
	s.Done(get(t, s, held)) // the rest of the test counts the other three

	if s.TakePoke() {
		t.Error("poked before any admin change")
	}
	// Retry of a deferred message: due now, attempts kept.
	if err := admin.Retry(deferred); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.State(deferred); st.NextAttempt.After(time.Now()) || st.Attempts != 2 {
		t.Errorf("state after Retry = %+v", st)
	}
	if !s.TakePoke() || s.TakePoke() {
		t.Error("Retry did not poke exactly once")
	}
	// Retry of a dead letter: back in the queue, attempts reset.
	if err := admin.Retry(dead); err != nil {
		t.Fatal(err)
	}
	e, err := s.Get(dead)
	if err != nil {
		t.Fatal(err)
	}
	if e.State.Attempts != 0 || e.State.Requeued.IsZero() || !e.State.Failed.IsZero() {
		t.Errorf("requeued state = %+v", e.State)
	}
	if left := files(t, s, failedDir); len(left) != 0 {
		t.Errorf("failed/ after Retry: %v", left)
	}

	// RetryFailed moves every dead letter back.
	s.Fail(fresh, State{}, "x")
	s.Fail(dead, State{}, "y")
	if n, err := admin.RetryFailed(); n != 2 || err != nil {
		t.Errorf("RetryFailed = %d, %v; want 2, nil", n, err)
	}
	if ids, _ := s.Queued(); len(ids) != 3 {
		t.Errorf("Queued after RetryFailed = %v", ids)
	}
	s.SaveState(fresh, State{Attempts: 1, NextAttempt: later})
	if n, err := admin.RetryAll(); n != 3 || err != nil {
		t.Errorf("RetryAll = %d, %v; want 3, nil", n, err)
	}
	if st, _ := s.State(fresh); st.NextAttempt.After(time.Now()) {
		t.Errorf("state after RetryAll = %+v", st)
	}

	// Delete works on queued and failed messages alike.
	s.Fail(dead, State{}, "z")
	for _, id := range []string{dead, fresh} {
		if err := admin.Delete(id); err != nil {
			t.Errorf("Delete(%s) = %v", id, err)
		}
	}
	if ids, _ := s.Queued(); len(ids) != 1 || ids[0] != deferred {
		t.Errorf("Queued after Delete = %v", ids)
	}
	for _, id := range []string{dead, "../../etc/passwd", ""} {
		if err := admin.Delete(id); !errors.Is(err, ErrNotFound) {
			t.Errorf("Delete(%q) = %v, want ErrNotFound", id, err)
		}
		if _, err := admin.Show(id); !errors.Is(err, ErrNotFound) {
			t.Errorf("Show(%q) = %v, want ErrNotFound", id, err)
		}
	}
}

func TestOpenExistingNeedsSpool(t *testing.T) {
	if _, err := OpenExisting(t.TempDir()); err == nil {
		t.Error("OpenExisting of an empty folder succeeded")
	}
}

// A spool that cannot store a message reports it and keeps nothing, so
// the SMTP server can answer 452 and never acknowledge it.
func TestCommitFailureLeavesNothing(t *testing.T) {
	tests := []struct {
		name       string
		breakSpool func(s *Spool)
	}{
		{"queue folder gone", func(s *Spool) { os.RemoveAll(filepath.Join(s.Dir(), queueDir)) }},
		{"queue path not a folder", func(s *Spool) {
			os.RemoveAll(filepath.Join(s.Dir(), queueDir))
			os.WriteFile(filepath.Join(s.Dir(), queueDir), nil, 0o640)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openSpool(t)
			called := false
			s.OnCommit(func(*Entry) { called = true })
			in, err := s.Create(testEnvelope())
			if err != nil {
				t.Fatal(err)
			}
			in.Write(bytes.Repeat([]byte("x"), 100<<10))
			tt.breakSpool(s)
			if _, err := in.Commit(); err == nil {
				t.Fatal("Commit succeeded")
			}
			if called {
				t.Error("OnCommit told of a message that was not stored")
			}
			if left := files(t, s, tmpDir); len(left) != 0 {
				t.Errorf("temporary files left: %v", left)
			}
		})
	}
}

// A write error (a full disk) is returned by Write and again by Commit,
// which removes the partial file.
func TestWriteErrorRemovesTemp(t *testing.T) {
	s := openSpool(t)
	in, err := s.Create(testEnvelope())
	if err != nil {
		t.Fatal(err)
	}
	in.file.Close() // every later write fails, as on a full disk
	if _, err := in.Write(bytes.Repeat([]byte("x"), 100<<10)); err == nil {
		t.Fatal("Write to a failing file succeeded")
	}
	if _, err := in.Commit(); err == nil {
		t.Fatal("Commit after a write error succeeded")
	}
	if left := files(t, s, tmpDir); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestConcurrentCommits(t *testing.T) {
	s := openSpool(t)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 10 {
				commit(t, s, testEnvelope(), testRaw)
			}
		})
	}
	wg.Wait()
	if ids, _ := s.Queued(); len(ids) != 80 {
		t.Errorf("Queued = %d messages, want 80", len(ids))
	}
}

// BenchmarkCommit measures durable intake: 10 KB messages, each fsynced
// with its folder, from parallel sessions.
func BenchmarkCommit(b *testing.B) {
	s := openSpool(b)
	raw := strings.Repeat(strings.Repeat("x", 78)+"\r\n", 10<<10/80)
	b.SetBytes(int64(len(raw)))
	b.SetParallelism(max(1, 20/runtime.GOMAXPROCS(0))) // about 20 sessions
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			env := testEnvelope()
			env.Received = time.Now()
			commit(b, s, env, raw)
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
