// Package dovecottest runs a private Dovecot on loopback as the stand-in
// for Exchange Online in tests: IMAP (implicit TLS and plain with
// STARTTLS), POP3 (implicit TLS) and submission (STARTTLS) that accept only
// XOAUTH2 with app-only tokens from a graphtest fake Entra ID, for the
// mailboxes that app was granted, relaying submitted mail to a Sink.
package dovecottest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/smtpgw/smtpgw/internal/graphtest"
	"github.com/smtpgw/smtpgw/internal/testtools"
)

// Server is a running Dovecot. Addresses are 127.0.0.1:PORT.
type Server struct {
	IMAPAddress       string // implicit TLS, as outlook.office365.com:993
	POP3Address       string // implicit TLS, as outlook.office365.com:995
	SubmissionAddress string // STARTTLS, as smtp.office365.com:587
	Sink              *Sink  // where submitted mail goes

	dir    string // everything of this instance: config, keys, grants, mail, logs
	appID  string // the fake's client ID: grants are this app's
	ca     *authority
	mailID mailIdentity

	mu sync.Mutex // serialises writes to the grants and users files
}

// mailIdentity is who owns the mail files: the test's own user, or
// Dovecot's when the test runs as root (Dovecot refuses mail as root).
type mailIdentity struct {
	uid, gid int
	chown    bool
}

// Start runs a Dovecot that trusts fake's tokens; t's cleanup stops it.
// Without Dovecot installed the test is skipped, unless CI is "true":
// there it fails, since CI installs it.
func Start(t testing.TB, fake *graphtest.Server) *Server {
	t.Helper()
	binary := testtools.Require(t, "dovecot", "apt-get install dovecot-core dovecot-imapd dovecot-pop3d dovecot-submissiond")

	// Dovecot's unprivileged processes read this folder: not t.TempDir(),
	// whose parents only the test's user may enter.
	dir, err := os.MkdirTemp("", "dovecottest-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	s := &Server{dir: dir, appID: fake.ClientID, Sink: startSink(t)}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			if log, err := os.ReadFile(s.path("dovecot.log")); err == nil {
				t.Logf("dovecot.log:\n%s", tail(log, 60))
			}
		}
		os.RemoveAll(dir)
	})
	if s.mailID, err = ownerOfMail(); err != nil {
		t.Fatal(err)
	}
	if s.ca, err = newAuthority(); err != nil {
		t.Fatal(err)
	}
	if err := s.writeFiles(fake); err != nil {
		t.Fatal(err)
	}
	// Free ports are found by listening on port 0 and closing: another
	// process may take one before Dovecot binds it, so try a few times.
	for attempt := 1; ; attempt++ {
		err = s.start(binary)
		if err == nil {
			return s
		}
		s.Stop()
		if attempt == 3 {
			t.Fatalf("dovecottest: %v", err)
		}
	}
}

func (s *Server) path(name ...string) string {
	return filepath.Join(append([]string{s.dir}, name...)...)
}

// ownerOfMail picks the uid and gid Dovecot runs mail processes as.
func ownerOfMail() (mailIdentity, error) {
	if os.Getuid() != 0 {
		return mailIdentity{uid: os.Getuid(), gid: os.Getgid()}, nil
	}
	u, err := user.Lookup("dovecot")
	if err != nil {
		return mailIdentity{}, fmt.Errorf("running as root needs the dovecot user: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return mailIdentity{uid: uid, gid: gid, chown: true}, nil
}

// writeFiles writes the TLS files, the token key, and empty grants and
// users files.
func (s *Server) writeFiles(fake *graphtest.Server) error {
	for _, d := range []string{"run", "state", "mail", filepath.Join("keys", fake.ClientID, "RS256")} {
		if err := os.MkdirAll(s.path(d), 0o755); err != nil {
			return err
		}
	}
	if err := s.own(s.path("mail")); err != nil {
		return err
	}
	certPEM, keyPEM, err := s.ca.issue()
	if err != nil {
		return err
	}
	files := map[string][]byte{
		"cert.pem": certPEM,
		"key.pem":  keyPEM,
		"ca.pem":   s.ca.certPEM,
		// Dovecot's oauth2 key dictionary: <azp>/<alg>/<kid>.
		filepath.Join("keys", fake.ClientID, "RS256", graphtest.SigningKeyID): graphtest.SigningKeyPEM(),
		"grants": nil,
		"users":  nil,
	}
	for name, data := range files {
		if err := os.WriteFile(s.path(name), data, 0o644); err != nil {
			return err
		}
	}
	return os.WriteFile(s.path("oauth2.conf.ext"), []byte(oauth2Config(s.dir, fake.Issuer())), 0o644)
}

// start writes the configuration with fresh ports and runs Dovecot.
func (s *Server) start(binary string) error {
	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	addr := func(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }
	s.IMAPAddress, s.POP3Address, s.SubmissionAddress = addr(ports[0]), addr(ports[1]), addr(ports[2])
	sinkHost, sinkPort, _ := net.SplitHostPort(s.Sink.Address)
	conf := dovecotConfig(configValues{
		Dir: s.dir, Instance: filepath.Base(s.dir), UID: s.mailID.uid, GID: s.mailID.gid,
		IMAPS: ports[0], POP3S: ports[1], Submission: ports[2],
		SinkHost: sinkHost, SinkPort: sinkPort, RunAsRoot: os.Getuid() == 0,
	})
	if err := os.WriteFile(s.path("dovecot.conf"), []byte(conf), 0o644); err != nil {
		return err
	}
	os.Remove(s.path("run", "master.pid"))
	// Output goes to a file, not a pipe: the daemon keeps the descriptors
	// it inherits, and a pipe would not close while it runs.
	out, err := os.Create(s.path("start.log"))
	if err != nil {
		return err
	}
	defer out.Close()
	cmd := exec.Command(binary, "-c", s.path("dovecot.conf"))
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		msg, _ := os.ReadFile(s.path("start.log"))
		return fmt.Errorf("dovecot -c: %v: %s", err, msg)
	}
	// Dovecot forks into the background; it serves once every listener
	// answers, and Stop can stop it once it wrote its PID, which may come
	// after the listeners.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(s.path("run", "master.pid")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("dovecot wrote no %s", s.path("run", "master.pid"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, a := range []string{s.IMAPAddress, s.POP3Address, s.SubmissionAddress} {
		for {
			c, err := net.DialTimeout("tcp", a, time.Second)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				log, _ := os.ReadFile(s.path("dovecot.log"))
				return fmt.Errorf("dovecot does not listen on %s: %v\n%s", a, err, tail(log, 30))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

// Stop ends Dovecot through the PID in base_dir/master.pid and waits
// until it has gone.
func (s *Server) Stop() {
	data, err := os.ReadFile(s.path("run", "master.pid"))
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 1 {
		return
	}
	// Through os.Process, so that the package also builds for Windows,
	// where Dovecot does not run and the tests skip.
	p, err := os.FindProcess(pid)
	if err != nil {
		return
	}
	p.Signal(syscall.SIGTERM)
	for range 500 {
		if p.Signal(syscall.Signal(0)) != nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	os.Remove(s.path("run", "master.pid"))
}

// freePorts finds n distinct free loopback ports.
func freePorts(n int) ([]int, error) {
	var ports []int
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// tail is the last n lines of a log.
func tail(log []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(log), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
