package queue

import (
	"os"

	"golang.org/x/sys/windows"
)

// lockFile takes an exclusive lock on f without waiting. The lock ends
// with the process, however it ends. Windows locks bar other processes
// from reading the locked bytes, so the lock covers one byte far past the
// PID, which stays readable for the error message of a second gateway.
func lockFile(f *os.File) error {
	ol := &windows.Overlapped{OffsetHigh: 1}
	return windows.LockFileEx(windows.Handle(f.Fd()), windows.LOCKFILE_EXCLUSIVE_LOCK|windows.LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, ol)
}
