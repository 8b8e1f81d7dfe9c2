package queue

import (
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// commitFile makes the finished temporary file f durable as dst: fsync,
// close, rename, and fsync the folder dst lives in (dir). It is the one way
// a file appears in the spool, so a reader never sees a partial file. On
// error the temporary file is removed, so a full disk leaves nothing behind.
func commitFile(f *os.File, dst string, dir *dirSync) error {
	err := f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = rename(f.Name(), dst)
	}
	if err != nil {
		os.Remove(f.Name())
		return err
	}
	return dir.sync()
}

// dirSync fsyncs a folder so that renames into it (and removals from it)
// survive a crash. Callers that changed the folder before a sync started
// share that sync, so a burst of commits costs one folder fsync rather than
// one each.
type dirSync struct {
	path      string
	tickets   atomic.Uint64 // taken by callers after their change
	scheduled atomic.Bool   // a syncSoon is waiting to run

	mu      sync.Mutex // held while a sync runs
	covered uint64     // every ticket up to this one is synced
	lastErr error
}

func (d *dirSync) sync() error {
	if runtime.GOOS == "windows" {
		// Windows cannot fsync a folder; NTFS journals renames itself.
		return nil
	}
	ticket := d.tickets.Add(1)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.covered >= ticket {
		return d.lastErr
	}
	// Every ticket taken by now belongs to a change that is already done,
	// so the fsync below covers it.
	covered := d.tickets.Load()
	f, err := os.Open(d.path)
	if err == nil {
		err = f.Sync()
		f.Close()
	}
	if err != nil {
		err = fmt.Errorf("sync folder: %w", err)
	}
	d.covered, d.lastErr = covered, err
	return err
}

// syncDelay bounds how long a change passed to syncSoon waits for its
// folder's fsync.
const syncDelay = 100 * time.Millisecond

// syncSoon makes the changes made to the folder so far durable within
// syncDelay, without waiting for it: for changes whose loss in a power cut
// costs a message sent twice, never a message lost. The fsync is shared
// with every other change meanwhile, the commits' included, so a stream of
// deliveries costs a few folder fsyncs a second rather than one each.
func (d *dirSync) syncSoon() {
	if d.scheduled.CompareAndSwap(false, true) {
		time.AfterFunc(syncDelay, func() {
			// Cleared first, so that a change made after this sync began
			// schedules its own.
			d.scheduled.Store(false)
			d.sync()
		})
	}
}
