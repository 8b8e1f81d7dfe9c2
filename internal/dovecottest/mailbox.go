package dovecottest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// AddMailbox makes mailbox exist (Dovecot's userdb), without granting
// the app anything on it.
func (s *Server) AddMailbox(t testing.TB, mailbox string) {
	t.Helper()
	s.appendLine(t, "users", strings.ToLower(mailbox)+":::::::")
	waitUntilSeen()
}

// Grant gives the fake's app access to mailbox, as Add-MailboxPermission
// does, creating the mailbox if needed. Dovecot reads the change at the
// next login.
func (s *Server) Grant(t testing.TB, mailbox string) {
	t.Helper()
	if !s.hasLine("users", strings.ToLower(mailbox)+":::::::") {
		s.appendLine(t, "users", strings.ToLower(mailbox)+":::::::")
	}
	s.appendLine(t, "grants", s.appID+"/"+strings.ToLower(mailbox)+"::::::")
	waitUntilSeen()
}

// Revoke takes the app's access to mailbox away again.
func (s *Server) Revoke(t testing.TB, mailbox string) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	data, err := os.ReadFile(s.path("grants"))
	if err != nil {
		t.Fatal(err)
	}
	line := s.appID + "/" + strings.ToLower(mailbox) + "::::::"
	var kept []string
	for _, l := range strings.Split(strings.TrimRight(string(data), "\n"), "\n") {
		if l != line && l != "" {
			kept = append(kept, l)
		}
	}
	s.replace(t, "grants", strings.Join(kept, "\n")+"\n")
	waitUntilSeen()
}

func (s *Server) hasLine(file, line string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	data, _ := os.ReadFile(s.path(file))
	for _, l := range strings.Split(string(data), "\n") {
		if l == line {
			return true
		}
	}
	return false
}

func (s *Server) appendLine(t testing.TB, file, line string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	data, err := os.ReadFile(s.path(file))
	if err != nil {
		t.Fatal(err)
	}
	s.replace(t, file, string(data)+line+"\n")
}

// replace writes a passwd-file whole, under a new name then renamed, so
// that Dovecot, which re-reads it when it changes, never reads half.
// Dovecot compares modification times in seconds: a change in the same
// second as the last would go unseen, so the time is moved on. Dovecot
// sees the change after waitUntilSeen.
func (s *Server) replace(t testing.TB, file, content string) {
	path := s.path(file)
	var last time.Time
	if info, err := os.Stat(path); err == nil {
		last = info.ModTime()
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if mtime := time.Now(); !mtime.After(last.Truncate(time.Second).Add(time.Second)) {
		later := last.Truncate(time.Second).Add(time.Second)
		os.Chtimes(tmp, later, later)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// waitUntilSeen returns once Dovecot sees the files replaced before: it
// looks at a file at most once a second, so from the next second on every
// login sees the change. Files changed together need one wait.
func waitUntilSeen() {
	now := time.Now()
	time.Sleep(now.Truncate(time.Second).Add(time.Second + 50*time.Millisecond).Sub(now))
}

// AddMessage delivers raw into mailbox's INBOX (maildir new/) and returns
// the file's path.
func (s *Server) AddMessage(t testing.TB, mailbox string, raw []byte) string {
	t.Helper()
	root := s.path("mail", strings.ToLower(mailbox))
	for _, d := range []string{"", "new", "cur", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := s.own(filepath.Join(root, d)); err != nil {
			t.Fatal(err)
		}
	}
	var id [8]byte
	rand.Read(id[:])
	name := fmt.Sprintf("%d.%s.dovecottest", time.Now().UnixNano(), hex.EncodeToString(id[:]))
	tmp, path := filepath.Join(root, "tmp", name), filepath.Join(root, "new", name)
	if err := os.WriteFile(tmp, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.own(tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// own gives path to the user Dovecot's mail processes run as.
func (s *Server) own(path string) error {
	if !s.mailID.chown {
		return nil
	}
	return os.Chown(path, s.mailID.uid, s.mailID.gid)
}
