package queue

import (
	"errors"
	"fmt"
)

// ErrNoRoom is returned by HasRoom when the spool's file system is below
// its minimum of free space.
var ErrNoRoom = errors.New("spool: not enough free disk space")

// HasRoom reports whether the spool's file system has at least minFree
// bytes available, so that new mail is refused (452 4.3.1) before the disk
// fills rather than after. An error other than ErrNoRoom means the free
// space could not be read.
func (s *Spool) HasRoom(minFree int64) error {
	free, err := freeSpace(s.dir)
	if err != nil {
		return fmt.Errorf("spool: free space of %s: %w", s.dir, err)
	}
	if free < uint64(max(minFree, 0)) {
		return fmt.Errorf("%w: %d bytes free in %s, min_free_space is %d", ErrNoRoom, free, s.dir, minFree)
	}
	return nil
}
