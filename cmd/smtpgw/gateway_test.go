package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/smtpgw/smtpgw/internal/queue"
)

func TestRestartNeeded(t *testing.T) {
	old, err := loadConfig(writeConfig(t, "", ""))
	if err != nil {
		t.Fatal(err)
	}
	usersOnly, err := loadConfig(writeConfig(t, "", "[server]\nmax_connections = 7\n\n[[user]]\nusername = \"copier\"\npassword_hash = '$2a$10$uV9ZIi0T0p1Ij1Bj9m0UNu3c7tTpVxgPOUUhpPCWq.C8tvUOwXO0m'\nmailbox = \"copier@example.com\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	// writeConfig puts each file's spool and outbox in its own folder.
	usersOnly.Queue, usersOnly.Outbox = old.Queue, old.Outbox
	if got := restartNeeded(old, usersOnly); len(got) != 0 {
		t.Errorf("users and max_connections changed: restart needed for %v, want none", got)
	}
	moved, err := loadConfig(writeConfig(t, "", "[[listener]]\naddress = \"127.0.0.1:2526\"\n\n[log]\nformat = \"json\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	got := restartNeeded(old, moved)
	for _, want := range []string{"listener", "queue", "outbox", "log.format"} {
		if !slices.Contains(got, want) {
			t.Errorf("restart needed for %v, want %q among them", got, want)
		}
	}
}

func TestReadiness(t *testing.T) {
	spool, err := queue.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ready := &readiness{spool: spool}
	status := func() (int, string) {
		rec := httptest.NewRecorder()
		ready.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		return rec.Code, rec.Body.String()
	}
	if code, body := status(); code != http.StatusServiceUnavailable || !strings.Contains(body, "not accepting") {
		t.Errorf("before start: %d %s", code, body)
	}
	ready.accepting.Store(true)
	if code, body := status(); code != http.StatusOK {
		t.Errorf("running: %d %s", code, body)
	}
	os.RemoveAll(filepath.Join(spool.Dir(), "tmp"))
	if code, body := status(); code != http.StatusServiceUnavailable || !strings.Contains(body, "spool not writable") {
		t.Errorf("spool not writable: %d %s", code, body)
	}
}
