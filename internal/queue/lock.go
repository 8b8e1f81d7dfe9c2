package queue

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// lockName is the lock file in the spool directory. It holds the PID of
// the gateway that delivers from the spool; the operating system's lock on
// it (flock on Unix, LockFileEx on Windows) is what counts, so a lock file
// left behind by a crash does not block the next start.
const lockName = "smtpgw.lock"

// Lock is a held spool lock.
type Lock struct {
	f *os.File
}

// TakeLock makes sure this process is the only gateway on the spool in dir
// (creating dir if needed). It must be taken before Open, which removes
// files another gateway may be writing. When another process holds the
// lock, the error names that process.
func TakeLock(dir string) (*Lock, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	path := filepath.Join(dir, lockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("spool lock: %w", err)
	}
	if err := lockFile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("spool %s is in use by another smtpgw (%s, per %s): stop it, or give this gateway its own [queue] dir", dir, holder(path), path)
	}
	pid := []byte(strconv.Itoa(os.Getpid()) + "\n")
	if err := f.Truncate(0); err != nil {
		f.Close()
		return nil, fmt.Errorf("spool lock: %w", err)
	}
	if _, err := f.WriteAt(pid, 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("spool lock: %w", err)
	}
	return &Lock{f: f}, nil
}

// holder describes the process named in the lock file at path.
func holder(path string) string {
	data, err := os.ReadFile(path)
	pid := strings.TrimSpace(string(data))
	if err != nil || pid == "" {
		return "process ID unknown"
	}
	return "process " + pid
}

// Release gives the spool up, for a clean shutdown.
func (l *Lock) Release() error {
	l.f.Truncate(0)
	return l.f.Close()
}
