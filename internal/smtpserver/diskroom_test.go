package smtpserver

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-smtp"
)

// Concurrent large messages against a small disk reserve: the reserve is
// kept while DATA is written, not only checked at MAIL FROM. The messages
// that do not fit get 452 4.3.1 and leave nothing behind; those that got
// 250 are all in the queue, whole.
func TestMinFreeSpaceWhileWriting(t *testing.T) {
	const (
		minFree  = 4 << 20
		size     = 3 << 19
		messages = 8
	)
	ts := startLargeServer(t, fmt.Sprint(minFree))
	// A disk of the reserve and 5 MiB more, holding only the spool.
	capacity := int64(minFree + 5<<20)
	free := func() int64 {
		used := int64(0)
		for _, folder := range []string{"tmp", "spare", "queue"} {
			entries, _ := os.ReadDir(filepath.Join(ts.spool.Dir(), folder))
			for _, e := range entries {
				if fi, err := e.Info(); err == nil {
					used += fi.Size()
				}
			}
		}
		return capacity - used
	}
	ts.spool.SetFreeSpaceReader(func() (uint64, error) { return uint64(max(free(), 0)), nil })

	msg := "Subject: scan\r\n\r\n" + strings.Repeat(strings.Repeat("x", 998)+"\r\n", size/1000)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var accepted []string
	refused := 0
	for range messages {
		c := ts.dial(t, 0)
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, err := send(c, "printer@contoso.com", []string{"a@example.com"}, msg)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				var se *smtp.SMTPError
				if !errors.As(err, &se) || se.Code != 452 || se.EnhancedCode != (smtp.EnhancedCode{4, 3, 1}) {
					t.Errorf("refused with %v, want 452 4.3.1", err)
				}
				refused++
				return
			}
			accepted = append(accepted, status)
		}()
	}
	wg.Wait()
	if len(accepted) == 0 || refused == 0 {
		t.Fatalf("%d accepted, %d refused: want some of each", len(accepted), refused)
	}
	if f := free(); f < minFree {
		t.Errorf("%d bytes free after the run, under min_free_space %d", f, minFree)
	}
	for _, status := range accepted {
		if _, raw := ts.spooled(t, queueID(t, status)); raw != msg {
			t.Errorf("accepted message spooled with %d bytes, want %d", len(raw), len(msg))
		}
	}
	if n := len(ts.queued(t)); n != len(accepted) {
		t.Errorf("%d queued, %d accepted", n, len(accepted))
	}
	if left := ts.leftovers(t); len(left) != 0 {
		t.Errorf("left in the spool: %v", left)
	}
}
