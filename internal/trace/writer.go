package trace

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Dir is the trace folder inside the spool directory.
func Dir(spoolDir string) string { return filepath.Join(spoolDir, "trace") }

// flushEvery is how much trace a crash may lose.
const flushEvery = time.Second

// RecentEvents is how many of the latest events the writer keeps in memory
// for the status page.
const RecentEvents = 50

// Writer appends events to the day's file through a buffer that a
// background goroutine flushes every second, so that recording costs the
// intake a memory copy, not a disk write. It is safe for concurrent use. A
// nil *Writer records nothing.
type Writer struct {
	dir  string
	days int // files older than this many days are deleted
	log  *slog.Logger
	now  func() time.Time

	mu     sync.Mutex
	dayEnd time.Time // the end of the file's day, and of the last deletion of expired files
	file   *os.File
	buf    *bufio.Writer
	failed bool // the last write failed: logged once until one succeeds
	recent [RecentEvents]Event
	next   int // index in recent of the next event
	count  int // events in recent

	stop chan struct{}
	done chan struct{}
}

// Open starts a writer into dir (created if needed), deleting files older
// than days days. Close it to flush what is buffered.
func Open(dir string, days int, logger *slog.Logger) (*Writer, error) {
	return open(dir, days, logger, time.Now)
}

func open(dir string, days int, logger *slog.Logger, now func() time.Time) (*Writer, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("trace: %w", err)
	}
	w := &Writer{dir: dir, days: days, log: logger, now: now, stop: make(chan struct{}), done: make(chan struct{})}
	w.prune(now())
	w.dayEnd = endOfDay(now())
	w.loadRecent()
	go w.flushLoop()
	return w, nil
}

// recentTail is how much of the latest file loadRecent reads: enough for
// RecentEvents events of any usual size.
const recentTail = 64 << 10

// loadRecent fills the recent events from the end of the latest file, so
// that the status page shows them after a restart too.
func (w *Writer) loadRecent() {
	names, err := files(w.dir, time.Time{})
	if err != nil || len(names) == 0 {
		return
	}
	f, err := os.Open(filepath.Join(w.dir, names[len(names)-1]))
	if err != nil {
		return
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return
	}
	start := max(info.Size()-recentTail, 0)
	tail := make([]byte, info.Size()-start)
	if _, err := f.ReadAt(tail, start); err != nil {
		return
	}
	if start > 0 {
		// The first line is cut: skip it.
		_, tail, _ = bytes.Cut(tail, []byte("\n"))
	}
	for line := range bytes.Lines(tail) {
		if e, err := unmarshal(line); err == nil {
			w.remember(e)
		}
	}
}

// remember keeps e among the recent events; w.mu is held or w unshared.
func (w *Writer) remember(e Event) {
	w.recent[w.next] = e
	w.next = (w.next + 1) % RecentEvents
	w.count = min(w.count+1, RecentEvents)
}

// Record appends e; a zero e.Time is now. Failures are logged, never
// returned: the trace must not stop mail.
func (w *Writer) Record(e Event) {
	if w == nil {
		return
	}
	if e.Time.IsZero() {
		e.Time = w.now()
	}
	line, err := marshal(e)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.remember(e)
	if err == nil {
		err = w.rotate(e.Time)
	}
	if err == nil {
		_, err = w.buf.Write(line)
	}
	w.noteError(err)
}

// Recent returns the latest events, newest first.
func (w *Writer) Recent() []Event {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]Event, 0, w.count)
	for i := 1; i <= w.count; i++ {
		out = append(out, w.recent[(w.next-i+RecentEvents)%RecentEvents])
	}
	return out
}

// Close flushes the buffer and closes the file.
func (w *Writer) Close() error {
	if w == nil {
		return nil
	}
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.closeFile()
}

// rotate makes the file of day t the one written, deleting expired files
// when the day changes (Open deleted them for its own day). Events are
// recorded in about the order they happen, so an event a moment before
// midnight may land in the next day's file.
func (w *Writer) rotate(t time.Time) error {
	if w.file != nil && t.Before(w.dayEnd) {
		return nil
	}
	if err := w.closeFile(); err != nil {
		w.noteError(err)
	}
	f, err := os.OpenFile(filepath.Join(w.dir, fileName(t)), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	if !t.Before(w.dayEnd) {
		w.prune(t)
	}
	w.file, w.dayEnd = f, endOfDay(t)
	w.buf = bufio.NewWriterSize(f, 64<<10)
	return nil
}

// endOfDay is the end of t's day, as the files' names count days: UTC's.
func endOfDay(t time.Time) time.Time {
	return t.UTC().Truncate(24 * time.Hour).Add(24 * time.Hour)
}

func (w *Writer) closeFile() error {
	if w.file == nil {
		return nil
	}
	err := errors.Join(w.buf.Flush(), w.file.Close())
	w.file, w.buf = nil, nil
	return err
}

func (w *Writer) flushLoop() {
	defer close(w.done)
	tick := time.NewTicker(flushEvery)
	defer tick.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-tick.C:
			w.mu.Lock()
			if w.buf != nil {
				w.noteError(w.buf.Flush())
			}
			w.mu.Unlock()
		}
	}
}

// noteError logs the first of a series of write failures (a full disk
// would otherwise log one line per message) and the recovery.
func (w *Writer) noteError(err error) {
	switch {
	case err != nil && !w.failed:
		w.failed = true
		w.log.Error("cannot write the message trace; mail still flows", "dir", w.dir, "error", err)
	case err == nil && w.failed:
		w.failed = false
		w.log.Info("message trace written again", "dir", w.dir)
	}
}

// prune deletes the files of days before the retention, counted from now.
func (w *Writer) prune(now time.Time) {
	entries, err := os.ReadDir(w.dir)
	if err != nil {
		w.log.Error("cannot list the message trace", "dir", w.dir, "error", err)
		return
	}
	oldest := fileName(now.AddDate(0, 0, -w.days))
	for _, e := range entries {
		name := e.Name()
		if !isTraceFile(name) || name >= oldest {
			continue
		}
		if err := os.Remove(filepath.Join(w.dir, name)); err != nil {
			w.log.Error("cannot delete expired message trace", "file", name, "error", err)
		}
	}
}

// isTraceFile reports whether name is a day's file.
func isTraceFile(name string) bool {
	day, ok := strings.CutSuffix(name, fileExt)
	if !ok {
		return false
	}
	_, err := time.Parse(dayLayout, day)
	return err == nil
}
