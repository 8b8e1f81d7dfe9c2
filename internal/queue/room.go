package queue

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// ErrNoRoom is returned by HasRoom, and by the writes of a message created
// with CreateKeepingFree, when the spool's file system is below its minimum
// of free space.
var ErrNoRoom = errors.New("spool: not enough free disk space")

// claimChunk is how much disk space a message being received claims at a
// time: one reading of the free space per MiB written.
const claimChunk = 1 << 20

// room accounts for the disk space that messages being received have
// claimed and not written yet. The free space the file system reports
// already counts what they wrote, so free space minus their claims is what
// every message can still count on: twenty messages that each passed the
// check at MAIL FROM cannot all fill the disk at once.
type room struct {
	freeSpace func() (uint64, error)
	mu        sync.Mutex // serializes claims, so two never count the same bytes
	claimed   atomic.Int64
}

// SetFreeSpaceReader replaces the reading of the spool's free disk space,
// so that tests can run out of room without filling a disk.
func (s *Spool) SetFreeSpaceReader(read func() (uint64, error)) {
	s.room.mu.Lock()
	s.room.freeSpace = read
	s.room.mu.Unlock()
}

// HasRoom reports whether the spool's file system has at least minFree
// bytes available beyond what messages being received have claimed, so
// that new mail is refused (452 4.3.1) before the disk fills rather than
// after. An error other than ErrNoRoom means the free space could not be
// read.
func (s *Spool) HasRoom(minFree int64) error {
	s.room.mu.Lock()
	defer s.room.mu.Unlock()
	return s.roomFor(0, minFree)
}

// claim claims n bytes for a message being received, if minFree bytes
// stay free after them.
func (s *Spool) claim(n, minFree int64) error {
	s.room.mu.Lock()
	defer s.room.mu.Unlock()
	if err := s.roomFor(n, minFree); err != nil {
		return err
	}
	s.room.claimed.Add(n)
	return nil
}

// roomFor checks that n more bytes leave minFree free; s.room.mu is held.
func (s *Spool) roomFor(n, minFree int64) error {
	free, err := s.room.freeSpace()
	if err != nil {
		return fmt.Errorf("spool: free space of %s: %w", s.dir, err)
	}
	claimed := s.room.claimed.Load()
	if int64(min(free, 1<<62))-claimed-n < max(minFree, 0) {
		return fmt.Errorf("%w: %d bytes free in %s, %d claimed by messages being received, min_free_space is %d",
			ErrNoRoom, free, s.dir, claimed, minFree)
	}
	return nil
}

// release gives back n claimed bytes, written or no longer needed.
func (s *Spool) release(n int64) {
	s.room.claimed.Add(-n)
}
