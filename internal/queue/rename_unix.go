//go:build unix

package queue

import (
	"os"
	"syscall"
)

// rename is os.Rename without the look-up of newpath that os.Rename makes
// first, to refuse replacing a folder with a file: the spool renames only
// its own files, onto names that are never folders, and looking up a name
// that does not exist cost half as much as the rename itself, twice for
// every message.
func rename(oldpath, newpath string) error {
	for {
		err := syscall.Rename(oldpath, newpath)
		switch {
		case err == nil:
			return nil
		case err != syscall.EINTR: // as os.Rename, retried on a signal
			return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: err}
		}
	}
}
