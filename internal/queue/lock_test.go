package queue

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestLockRefusesASecondGateway(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	first, err := TakeLock(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = TakeLock(dir)
	if err == nil || !strings.Contains(err.Error(), "process "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("second lock: %v; want an error naming process %d", err, os.Getpid())
	}
	if err := first.Release(); err != nil {
		t.Fatal(err)
	}
	again, err := TakeLock(dir)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	again.Release()
}

func TestPurgeFailed(t *testing.T) {
	s := openSpool(t)
	old := commit(t, s, testEnvelope(), "Subject: old\r\n\r\nx\r\n")
	recent := commit(t, s, testEnvelope(), "Subject: recent\r\n\r\nx\r\n")
	queued := commit(t, s, testEnvelope(), "Subject: queued\r\n\r\nx\r\n")
	for _, id := range []string{old, recent} {
		if err := s.Fail(id, State{}, "HTTP 400"); err != nil {
			t.Fatal(err)
		}
	}
	st, err := s.readState(failedDir, old)
	if err != nil {
		t.Fatal(err)
	}
	st.Failed = time.Now().Add(-8 * 24 * time.Hour)
	if err := s.writeState(failedDir, old, st, false); err != nil {
		t.Fatal(err)
	}

	n, err := s.PurgeFailed(7 * 24 * time.Hour)
	if err != nil || n != 1 {
		t.Fatalf("PurgeFailed = %d, %v; want 1", n, err)
	}
	if _, err := s.Show(old); err == nil {
		t.Errorf("%s (failed 8 days ago) is still there", old)
	}
	for _, id := range []string{recent, queued} {
		if _, err := s.Show(id); err != nil {
			t.Errorf("%s: %v", id, err)
		}
	}
}

func TestCheckWritable(t *testing.T) {
	s := openSpool(t)
	if err := s.CheckWritable(); err != nil {
		t.Fatal(err)
	}
	if got := files(t, s, tmpDir); len(got) != 0 {
		t.Errorf("left behind in tmp: %v", got)
	}
	os.RemoveAll(filepath.Join(s.Dir(), tmpDir))
	if err := s.CheckWritable(); err == nil {
		t.Error("no error without a tmp folder")
	}
}
