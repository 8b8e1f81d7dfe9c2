package trace

import (
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// clockAt returns a settable clock for open.
func clockAt(t time.Time) (func() time.Time, func(time.Time)) {
	now := t
	return func() time.Time { return now }, func(n time.Time) { now = n }
}

func accepted(id string, at time.Time, from string, to ...string) Event {
	return Event{ID: id, Time: at, Kind: Accepted, Client: "127.0.0.2:40000", Identity: "user:scanner",
		Mailbox: "scans@contoso.com", From: from, To: to, Size: 1234, MessageID: "<" + id + "@scanner>"}
}

func TestSearchFindsMessagesWithTheirEvents(t *testing.T) {
	dir := t.TempDir()
	day := time.Date(2026, 12, 6, 10, 2, 0, 0, time.UTC)
	w, err := open(dir, 30, quiet, func() time.Time { return day })
	if err != nil {
		t.Fatal(err)
	}
	w.Record(accepted("A1", day, "scanner@contoso.com", "Bob@Contoso.com"))
	w.Record(accepted("B2", day.Add(time.Second), "app@fabrikam.com", "carol@contoso.com", "dave@fabrikam.com"))
	w.Record(Event{ID: "A1", Time: day.Add(2 * time.Second), Kind: Deferred, Attempts: 1, Reason: "503 from Graph"})
	w.Record(Event{ID: "B2", Time: day.Add(3 * time.Second), Kind: Failed, Attempts: 1, Reference: "req-b", Reason: "ErrorInvalidUser"})
	w.Record(Event{ID: "B2", Time: day.Add(3 * time.Second), Kind: Bounced, Reference: "C3"})
	// Delivered the next day: found in the next day's file.
	w.Record(Event{ID: "A1", Time: day.Add(24 * time.Hour), Kind: Delivered, Attempts: 2, Reference: "req-a"})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	res, err := Search(dir, Query{To: "bob@contoso.com"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Messages) != 1 {
		t.Fatalf("-to bob@: %d messages, want 1", len(res.Messages))
	}
	m := res.Messages[0]
	if m.Accepted.ID != "A1" || m.State != Delivered || m.Reference != "req-a" || m.Attempts != 2 || len(m.Events) != 3 {
		t.Errorf("A1 = %+v", m)
	}
	if m.Accepted.Client != "127.0.0.2:40000" || m.Accepted.Identity != "user:scanner" || !m.Accepted.Time.Equal(day) {
		t.Errorf("A1 accepted = %+v", m.Accepted)
	}

	cases := []struct {
		name string
		q    Query
		want []string
	}{
		{"domain pattern", Query{To: "*@contoso.com"}, []string{"A1", "B2"}},
		{"sender", Query{From: "APP@fabrikam.com"}, []string{"B2"}},
		{"sender is not a recipient", Query{To: "app@fabrikam.com"}, nil},
		{"id", Query{ID: "B2"}, []string{"B2"}},
		{"message-id without brackets", Query{MessageID: "a1@scanner"}, []string{"A1"}},
		{"client", Query{Client: netip.MustParsePrefix("127.0.0.0/24")}, []string{"A1", "B2"}},
		{"other client", Query{Client: netip.MustParsePrefix("127.0.1.0/24")}, nil},
		{"state", Query{State: Failed}, []string{"B2"}},
		{"since", Query{Since: day.Add(time.Second)}, []string{"B2"}},
		{"until", Query{Until: day.Add(time.Second)}, []string{"A1"}},
		{"since a later day", Query{Since: day.Add(24 * time.Hour)}, nil},
		{"limit keeps the latest", Query{Limit: 1}, []string{"B2"}},
	}
	for _, c := range cases {
		if got := searchIDs(t, dir, c.q); !slices.Equal(got, c.want) {
			t.Errorf("%s: found %v, want %v", c.name, got, c.want)
		}
	}
	res, _ = Search(dir, Query{ID: "B2"})
	if b := res.Messages[0]; b.Bounce != "C3" || b.Reference != "req-b" || b.Reason != "ErrorInvalidUser" ||
		b.State != Failed || !b.Updated.Time.Equal(day.Add(3*time.Second)) {
		t.Errorf("B2 = %+v", b)
	}
}

// searchIDs returns the queue IDs of the messages Search finds.
func searchIDs(t *testing.T, dir string, q Query) []string {
	t.Helper()
	res, err := Search(dir, q)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range res.Messages {
		ids = append(ids, m.Accepted.ID)
	}
	return ids
}

func TestSearchSkipsALineBeingWritten(t *testing.T) {
	dir := t.TempDir()
	day := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	line, _ := marshal(accepted("A1", day, "a@contoso.com", "b@contoso.com"))
	partial, _ := marshal(accepted("B2", day, "a@contoso.com", "b@contoso.com"))
	data := append(append(line, "not json\n"...), partial[:len(partial)/2]...)
	if err := os.WriteFile(filepath.Join(dir, fileName(day)), data, 0o600); err != nil {
		t.Fatal(err)
	}
	res, err := Search(dir, Query{To: "b@contoso.com"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Messages) != 1 || res.Messages[0].Accepted.ID != "A1" {
		t.Fatalf("found %+v, want A1 only", res.Messages)
	}
}

func TestWriterDeletesFilesPastRetention(t *testing.T) {
	dir := t.TempDir()
	start := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for _, name := range []string{"2026-11-20.jsonl", "2026-11-21.jsonl", "2026-11-22.jsonl", "notes.txt"} {
		os.WriteFile(filepath.Join(dir, name), nil, 0o600)
	}
	now, set := clockAt(start)
	w, err := open(dir, 10, quiet, now) // keeps 2026-11-21 onwards
	if err != nil {
		t.Fatal(err)
	}
	assertFiles(t, dir, "2026-11-21.jsonl", "2026-11-22.jsonl", "notes.txt")
	set(start.Add(24 * time.Hour)) // a new day: 2026-11-21 expires
	w.Record(Event{ID: "A1", Kind: Accepted})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	assertFiles(t, dir, "2026-11-22.jsonl", "2026-12-02.jsonl", "notes.txt")
}

func assertFiles(t *testing.T, dir string, want ...string) {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if !slices.Equal(got, want) {
		t.Errorf("files %v, want %v", got, want)
	}
}

func TestWriterFlushesWithoutClose(t *testing.T) {
	dir := t.TempDir()
	w, err := Open(dir, 30, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.Record(Event{ID: "A1", Kind: Accepted, To: []string{"bob@contoso.com"}})
	for range 50 { // the flush runs every second
		res, err := Search(dir, Query{To: "bob@contoso.com"})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Messages) == 1 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("the event is not on disk after 5 seconds")
}

func TestRecentIsNewestFirstAndBounded(t *testing.T) {
	w, err := Open(t.TempDir(), 30, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i := range RecentEvents + 5 {
		w.Record(Event{ID: string(rune('A' + i%26)), Kind: Accepted, Size: int64(i)})
	}
	recent := w.Recent()
	if len(recent) != RecentEvents || recent[0].Size != RecentEvents+4 || recent[RecentEvents-1].Size != 5 {
		t.Errorf("recent: %d events, first size %d, last size %d", len(recent), recent[0].Size, recent[len(recent)-1].Size)
	}
	var none *Writer
	none.Record(Event{ID: "x"}) // a gateway without trace
	if none.Recent() != nil {
		t.Error("a nil writer has events")
	}
}

func TestRecentSurvivesARestart(t *testing.T) {
	dir := t.TempDir()
	w, err := Open(dir, 30, quiet)
	if err != nil {
		t.Fatal(err)
	}
	// About 120 KiB: more than the tail that is read again.
	const events = 200
	for i := range events {
		w.Record(Event{ID: "A1", Kind: Deferred, Attempts: i + 1, Reason: strings.Repeat("x", 600)})
	}
	w.Close()
	w, err = Open(dir, 30, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	recent := w.Recent()
	if len(recent) != RecentEvents || recent[0].Attempts != events || recent[RecentEvents-1].Attempts != events-RecentEvents+1 {
		t.Errorf("after a restart: %d recent events, the newest attempt %d", len(recent), recent[0].Attempts)
	}
}

// A search decodes only the fields it tests, cut from the line; values
// that look like other fields, or hold quotes, brackets, backslashes and
// characters JSON escapes, are still read whole and exactly.
func TestSearchReadsTrickyFieldsExactly(t *testing.T) {
	dir := t.TempDir()
	day := time.Date(2026, 12, 6, 10, 2, 0, 0, time.UTC)
	w, err := open(dir, 30, quiet, func() time.Time { return day })
	if err != nil {
		t.Fatal(err)
	}
	tricky := accepted("T1", day, `"f":"ceo@contoso.com","to":["ceo@contoso.com"]\"]@x`, `a]b"c\d@fabrikam.com`, "<&é>@fabrikam.com")
	tricky.MessageID = `<"mid":"x"\]@scanner>`
	tricky.Client = "[::1]:2525"
	w.Record(tricky)
	w.Record(accepted("T2", day.Add(time.Second), "ceo@contoso.com", "ceo@contoso.com"))
	w.Record(accepted("T3", day.Add(2*time.Second), "", "x@contoso.com", "y@Fabrikam.com", "z@contoso.com"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		q    Query
		want []string
	}{
		{Query{From: "ceo@contoso.com"}, []string{"T2"}},
		{Query{To: "ceo@contoso.com"}, []string{"T2"}},
		{Query{To: `a]b"c\d@fabrikam.com`}, []string{"T1"}},
		{Query{To: "<&É>@FABRIKAM.COM"}, []string{"T1"}},
		{Query{To: "*@fabrikam.com"}, []string{"T1", "T3"}},
		{Query{To: "y@fabrikam.com"}, []string{"T3"}},
		{Query{To: "z@contoso.com"}, []string{"T3"}},
		{Query{From: "*@contoso.com"}, []string{"T2"}},
		{Query{MessageID: `"mid":"x"\]@scanner`}, []string{"T1"}},
		{Query{MessageID: "x"}, nil},
		{Query{Client: netip.MustParsePrefix("::1/128")}, []string{"T1"}},
		{Query{Client: netip.MustParsePrefix("127.0.0.0/8")}, []string{"T2", "T3"}},
	} {
		if got := searchIDs(t, dir, tt.q); !slices.Equal(got, tt.want) {
			t.Errorf("%+v found %v, want %v", tt.q, got, tt.want)
		}
	}
}

// A search with a limit that the newest files fill reads only them, and
// finds what reading every file finds: the latest messages, with events
// written in a later file, and the note that older ones matched too.
func TestSearchWithALimitReadsTheNewestFiles(t *testing.T) {
	dir := t.TempDir()
	start := time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)
	w, err := open(dir, 30, quiet, func() time.Time { return start })
	if err != nil {
		t.Fatal(err)
	}
	for d := range 24 {
		day := start.AddDate(0, 0, d)
		for i := range 3 {
			id := fmt.Sprintf("D%02dM%d", d, i)
			w.Record(accepted(id, day.Add(time.Duration(i)*time.Hour), "scanner@contoso.com", fmt.Sprintf("user%d@contoso.com", i)))
			// Each day's last message is delivered the next day.
			w.Record(Event{ID: id, Time: day.Add(time.Duration(i)*time.Hour + time.Duration(i/2)*24*time.Hour), Kind: Delivered, Attempts: 1, Reference: "req-" + id})
		}
		w.Record(accepted(fmt.Sprintf("D%02dX", d), day, "app@fabrikam.com", "ext@fabrikam.com"))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	all, err := Search(dir, Query{To: "*@contoso.com"})
	if err != nil {
		t.Fatal(err)
	}
	if all.Older || len(all.Messages) != 24*3 {
		t.Fatalf("no limit: %d messages, older %v", len(all.Messages), all.Older)
	}
	// The newest file alone holds 3 matches: the one before is needed too.
	limited, err := Search(dir, Query{To: "*@contoso.com", Limit: 4})
	if err != nil {
		t.Fatal(err)
	}
	want := all.Messages[len(all.Messages)-4:]
	if len(limited.Messages) != 4 || !limited.Older {
		t.Fatalf("limit 4: %d messages, older %v", len(limited.Messages), limited.Older)
	}
	for i, m := range limited.Messages {
		if m.Accepted.ID != want[i].Accepted.ID || m.State != Delivered || m.Reference != "req-"+m.Accepted.ID || len(m.Events) != 2 {
			t.Errorf("message %d = %s %s %q %d events, want %s delivered", i, m.Accepted.ID, m.State, m.Reference, len(m.Events), want[i].Accepted.ID)
		}
	}
	oldest := filepath.Join(dir, fileName(start))
	if err := os.Remove(oldest); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(oldest, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := Search(dir, Query{To: "*@contoso.com"}); err == nil {
		t.Fatal("a search without a limit read a folder as the oldest file")
	}
	if _, err := Search(dir, Query{To: "*@contoso.com", Limit: 4}); err != nil {
		t.Errorf("the search with a limit read the oldest file: %v", err)
	}
}
