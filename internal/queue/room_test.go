package queue

import (
	"bytes"
	"errors"
	"log/slog"
	"math"
	"strings"
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
	s.Fail(old, "HTTP 404 ErrorInvalidUser")
	s.Fail(recent, "HTTP 403 ErrorAccessDenied")
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
