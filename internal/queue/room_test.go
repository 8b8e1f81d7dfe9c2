package queue

import (
	"bytes"
	"errors"
	"io/fs"
	"log/slog"
	"math"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestHasRoom(t *testing.T) {
	s := openSpool(t)
	if err := s.HasRoom(1); err != nil {
		t.Errorf("HasRoom(1 byte): %v", err)
	}
	err := s.HasRoom(math.MaxInt64)
	if !errors.Is(err, ErrNoRoom) || !strings.Contains(err.Error(), "min_free_space") {
		t.Errorf("HasRoom(all the bytes there are) = %v, want ErrNoRoom", err)
	}
}

func TestExpireFailed(t *testing.T) {
	s := openSpool(t)
	old := commit(t, s, testEnvelope(), testRaw)
	recent := commit(t, s, testEnvelope(), testRaw)
	queued := commit(t, s, testEnvelope(), testRaw)
	s.Fail(old, State{}, "HTTP 404 ErrorInvalidUser")
	s.Fail(recent, State{}, "HTTP 403 ErrorAccessDenied")
	var logs bytes.Buffer
	// Forty days on, with failed_max_age at thirty.
	n, err := s.ExpireFailed(30*24*time.Hour, time.Now().Add(40*24*time.Hour), slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil || n != 2 {
		t.Fatalf("ExpireFailed = %d, %v; want both dead letters", n, err)
	}
	if left := files(t, s, failedDir); len(left) != 0 {
		t.Errorf("failed/ after expiry: %v", left)
	}
	if ids, _ := s.Queued(); len(ids) != 1 || ids[0] != queued {
		t.Errorf("queue after expiry = %v, want %s untouched", ids, queued)
	}
	if !strings.Contains(logs.String(), `msg="dead letter expired" id=`+old) || !strings.Contains(logs.String(), "ErrorInvalidUser") {
		t.Errorf("expiry not logged:\n%s", logs.String())
	}
	// Nothing is younger than the limit right now.
	if n, _ := s.ExpireFailed(30*24*time.Hour, time.Now(), slog.New(slog.NewTextHandler(&logs, nil))); n != 0 {
		t.Errorf("expired %d fresh dead letters", n)
	}
}

// fakeDisk is a file system of capacity bytes holding only the spool:
// its free space is what the spool's files leave.
func fakeDisk(t *testing.T, s *Spool, capacity int64) func() int64 {
	free := func() int64 {
		used := int64(0)
		filepath.WalkDir(s.Dir(), func(_ string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				if fi, err := d.Info(); err == nil {
					used += fi.Size()
				}
			}
			return nil
		})
		return capacity - used
	}
	s.SetFreeSpaceReader(func() (uint64, error) { return uint64(max(free(), 0)), nil })
	return free
}

// Messages written at once keep min_free_space between them: each claims
// space before it writes, and one that finds none fails with ErrNoRoom,
// leaves no file and gives its claim back.
func TestConcurrentMessagesKeepMinFree(t *testing.T) {
	const (
		minFree  = 8 << 20
		size     = 3 << 20
		messages = 8
	)
	s := openSpool(t)
	free := fakeDisk(t, s, minFree+10<<20)
	chunk := strings.Repeat("x", 32<<10)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var committed, refused int
	for range messages {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in, err := s.CreateKeepingFree(testEnvelope(), minFree)
			if err != nil {
				t.Error(err)
				return
			}
			for written := 0; written < size && err == nil; written += len(chunk) {
				_, err = in.Write([]byte(chunk))
			}
			if err != nil {
				if !errors.Is(err, ErrNoRoom) {
					t.Errorf("write: %v, want ErrNoRoom", err)
				}
				in.Abort()
				mu.Lock()
				refused++
				mu.Unlock()
				return
			}
			if _, err := in.Commit(); err != nil {
				t.Error(err)
			}
			mu.Lock()
			committed++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if committed == 0 || refused == 0 || committed+refused != messages {
		t.Errorf("%d committed, %d refused, want some of each of %d", committed, refused, messages)
	}
	if f := free(); f < minFree {
		t.Errorf("%d bytes free, under min_free_space %d", f, minFree)
	}
	if left := files(t, s, tmpDir); len(left) != 0 {
		t.Errorf("tmp/ holds %v", left)
	}
	if got := s.room.claimed.Load(); got != 0 {
		t.Errorf("%d bytes still claimed", got)
	}
	if err := s.HasRoom(minFree); err != nil {
		t.Errorf("HasRoom after the writes: %v", err)
	}
}
