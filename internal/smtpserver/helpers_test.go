package smtpserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"golang.org/x/crypto/bcrypt"

	"github.com/smtpgw/smtpgw/internal/certs"
	"github.com/smtpgw/smtpgw/internal/clients"
	"github.com/smtpgw/smtpgw/internal/config"
	"github.com/smtpgw/smtpgw/internal/envelope"
	"github.com/smtpgw/smtpgw/internal/queue"
	"github.com/smtpgw/smtpgw/internal/testlog"
)

// Test accounts. Hashes use the minimum bcrypt cost to keep tests fast.
const (
	scannerUser     = "mfp-floor3"
	scannerPassword = "correct horse"
	scannerMailbox  = "scanner@contoso.com"
	appUser         = "erp"
	appPassword     = "battery staple"
	maxMessageSize  = 64 << 10
	maxRecipients   = 3
	maxAuthFailures = 3
)

// Listener indexes in testConfig.
const (
	plainListener = iota
	insecureAuthListener
	startTLSListener
	implicitListener
	legacyListener
)

var hashes = sync.OnceValues(func() (map[string]string, error) {
	out := map[string]string{}
	for user, pw := range map[string]string{scannerUser: scannerPassword, appUser: appPassword} {
		h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
		if err != nil {
			return nil, err
		}
		out[user] = string(h)
	}
	return out, nil
})

// testConfig is the configuration most tests run: five listeners, two
// accounts, two overlapping networks, and limits short enough for tests.
func testConfig(t testing.TB) *config.Config {
	t.Helper()
	return parseConfig(t, "")
}

// parseConfig is testConfig with extra TOML appended (keys for [limits],
// or further tables).
func parseConfig(t testing.TB, extra string) *config.Config {
	t.Helper()
	h, err := hashes()
	if err != nil {
		t.Fatal(err)
	}
	text := fmt.Sprintf(`
[server]
hostname = "smtpgw.test"
max_message_size = %d
max_recipients = %d
read_timeout = "10s"
write_timeout = "10s"
max_connections = 20
max_auth_failures = %d

# plainListener, insecureAuthListener, startTLSListener, implicitListener, legacyListener
[[listener]]
address = "127.0.0.1:0"
[[listener]]
address = "127.0.0.1:0"
allow_insecure_auth = true
[[listener]]
address = "127.0.0.1:0"
tls = "starttls"
[[listener]]
address = "127.0.0.1:0"
tls = "implicit"
[[listener]]
address = "127.0.0.1:0"
tls = "implicit"
min_tls_version = "1.0"

[outbox]
dir = "unused"

# The spool of a test lives on whatever disk the machine has.
[queue]
min_free_space = 1

[[user]]
username = %q
password_hash = %q
mailbox = %q

[[user]]
username = %q
password_hash = %q
allowed_senders = ["*@apps.contoso.com"]

# The broader network comes first: the most specific must win.
[[network]]
cidrs = ["127.0.0.0/31"]
mailbox = "wrong@contoso.com"
allowed_senders = ["*@contoso.com"]

[[network]]
cidrs = ["127.0.0.1"]
mailbox = "noreply@contoso.com"
allowed_senders = ["*@contoso.com"]
%s
`, maxMessageSize, maxRecipients, maxAuthFailures,
		scannerUser, h[scannerUser], scannerMailbox, appUser, h[appUser], extra)
	if !strings.Contains(extra, "[limits]") {
		text += testLimits
	}
	cfg, err := config.Parse([]byte(text), "test.toml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// testLimits keeps the delays of [limits] short, so that tests of other
// things stay fast.
const testLimits = `
[limits]
error_delay = "1ms"
auth_min_duration = "1ms"
`

// testServer is a running server on loopback with a real spool.
type testServer struct {
	*Server
	gate   *clients.Gate
	served *certs.Served
	spool  *queue.Spool
	logs   *testlog.Buffer
	addrs  []string
}

func startServer(t testing.TB, cfg *config.Config) *testServer {
	t.Helper()
	return startServerLogging(t, cfg, slog.LevelInfo)
}

// startServerLogging starts a server whose log records level and above.
func startServerLogging(t testing.TB, cfg *config.Config, level slog.Level) *testServer {
	t.Helper()
	spool, err := queue.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	logs := &testlog.Buffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: level}))
	gate, err := clients.New(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	served := testCerts(t, cfg, spool.Dir(), logger)
	srv, err := New(cfg, spool, gate, served, logger)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	ts := &testServer{Server: srv, gate: gate, served: served, spool: spool, logs: logs}
	for _, a := range srv.Addrs() {
		ts.addrs = append(ts.addrs, a.String())
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return ts
}

// testCerts loads the certificates of cfg's TLS listeners as the gateway
// does, keeping self-signed ones in spoolDir ("": in memory only).
func testCerts(t testing.TB, cfg *config.Config, spoolDir string, logger *slog.Logger) *certs.Served {
	t.Helper()
	served, err := certs.NewServed(cfg, spoolDir, logger)
	if err != nil {
		t.Fatal(err)
	}
	return served
}

// testGate is a gate for cfg that logs nothing.
func testGate(t testing.TB, cfg *config.Config) *clients.Gate {
	t.Helper()
	gate, err := clients.New(cfg, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	return gate
}

// reload applies cfg as the gateway does: the gate, then the
// certificates.
func (ts *testServer) reload(cfg *config.Config) error {
	if err := ts.gate.Reload(cfg); err != nil {
		return err
	}
	return ts.served.Reload(cfg)
}

// clientTLS trusts the self-signed certificate.
func clientTLS() *tls.Config {
	return &tls.Config{InsecureSkipVerify: true, ServerName: "smtpgw.test"}
}

// dial opens a go-smtp client to listener i, with TLS as the listener wants.
func (ts *testServer) dial(t *testing.T, i int) *smtp.Client {
	t.Helper()
	addr := ts.addrs[i]
	var c *smtp.Client
	var err error
	switch ts.cfg.Listeners[i].TLS {
	case config.TLSStartTLS:
		c, err = smtp.DialStartTLS(addr, clientTLS())
	case config.TLSImplicit:
		c, err = smtp.DialTLS(addr, clientTLS())
	default:
		c, err = smtp.Dial(addr)
	}
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	c.CommandTimeout = 10 * time.Second
	c.SubmissionTimeout = 10 * time.Second
	t.Cleanup(func() { c.Close() })
	return c
}

// send runs one transaction and returns the DATA reply text.
func send(c *smtp.Client, from string, to []string, msg string) (string, error) {
	if err := c.Mail(from, nil); err != nil {
		return "", err
	}
	for _, rcpt := range to {
		if err := c.Rcpt(rcpt, nil); err != nil {
			return "", err
		}
	}
	w, err := c.Data()
	if err != nil {
		return "", err
	}
	if _, err := io.WriteString(w, msg); err != nil {
		return "", err
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return "", err
	}
	return resp.StatusText, nil
}

// wantSMTPError checks that err is an SMTP reply with this code and
// enhanced code.
func wantSMTPError(t *testing.T, err error, code int, enhanced smtp.EnhancedCode) {
	t.Helper()
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		t.Fatalf("got error %v, want SMTP %d %v", err, code, enhanced)
	}
	if se.Code != code || se.EnhancedCode != enhanced {
		t.Fatalf("got %d %v %q, want %d %v", se.Code, se.EnhancedCode, se.Message, code, enhanced)
	}
}

// spooled returns the envelope and raw message of a committed message.
func (ts *testServer) spooled(t *testing.T, id string) (*envelope.Envelope, string) {
	t.Helper()
	e, err := ts.spool.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	r, err := e.Raw()()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	raw, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return e.Envelope, string(raw)
}

func (ts *testServer) queued(t *testing.T) []string {
	t.Helper()
	ids, err := ts.spool.Queued()
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// leftovers lists what refused or abandoned messages left in the spool:
// files being written, in tmp/, and spares holding bytes (these tests
// deliver nothing, so every spare should still be empty).
func (ts *testServer) leftovers(t *testing.T) []string {
	t.Helper()
	var left []string
	for _, folder := range []string{"tmp", "spare"} {
		entries, err := os.ReadDir(filepath.Join(ts.spool.Dir(), folder))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if fi, err := e.Info(); err == nil && (folder == "tmp" || fi.Size() > 0) {
				left = append(left, folder+"/"+e.Name())
			}
		}
	}
	return left
}

// queueID extracts the queue ID from a DATA reply ("[250 ]2.0.0 OK:
// queued as ID").
func queueID(t *testing.T, status string) string {
	t.Helper()
	_, id, ok := strings.Cut(status, "2.0.0 OK: queued as ")
	if !ok || id == "" {
		t.Fatalf("DATA reply %q carries no queue ID", status)
	}
	return id
}

// rawConn is a hand-written SMTP conversation, for what go-smtp's client
// cannot do (challenge-form AUTH LOGIN, choosing the source address,
// reading a reply the client would swallow).
type rawConn struct {
	t    *testing.T
	conn net.Conn
	text *textproto.Conn
}

func dialRaw(t *testing.T, addr string, tlsConfig *tls.Config, local net.Addr) *rawConn {
	t.Helper()
	conn, err := dialFrom(local, addr, tlsConfig)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { conn.Close() })
	return &rawConn{t: t, conn: conn, text: textproto.NewConn(conn)}
}

// dialFrom connects from local (nil: any address) to addr, over TLS when
// tlsConfig is set.
func dialFrom(local net.Addr, addr string, tlsConfig *tls.Config) (net.Conn, error) {
	d := net.Dialer{LocalAddr: local, Timeout: 5 * time.Second}
	if tlsConfig != nil {
		return tls.DialWithDialer(&d, "tcp", addr, tlsConfig)
	}
	return d.Dial("tcp", addr)
}

// reply reads one reply and returns it as "CODE TEXT" (text of the last
// line for multi-line replies).
func (r *rawConn) reply() string {
	r.t.Helper()
	code, msg, err := r.text.ReadResponse(0)
	if err != nil && code == 0 {
		r.t.Fatalf("read reply: %v", err)
	}
	lines := strings.Split(msg, "\n")
	return fmt.Sprintf("%d %s", code, lines[len(lines)-1])
}

// cmd sends a line and checks that the reply starts with want.
func (r *rawConn) cmd(line, want string) string {
	r.t.Helper()
	if err := r.text.PrintfLine("%s", line); err != nil {
		r.t.Fatalf("send %q: %v", line, err)
	}
	got := r.reply()
	if !strings.HasPrefix(got, want) {
		r.t.Fatalf("%q: got reply %q, want %q", line, got, want)
	}
	return got
}

// data sends msg (CRLF line ends) as the DATA of the transaction and
// checks that the final reply starts with want.
func (r *rawConn) data(msg, want string) string {
	r.t.Helper()
	r.cmd("DATA", "354 ")
	stuffed := strings.ReplaceAll("\r\n"+msg, "\r\n.", "\r\n..")[2:]
	return r.cmd(stuffed+".", want)
}

// greet reads the greeting and says EHLO, returning the EHLO reply lines.
func (r *rawConn) greet() string {
	r.t.Helper()
	if got := r.reply(); !strings.HasPrefix(got, "220 ") {
		r.t.Fatalf("greeting %q", got)
	}
	r.text.PrintfLine("EHLO client.test")
	code, msg, err := r.text.ReadResponse(250)
	if err != nil {
		r.t.Fatalf("EHLO: %d %v", code, err)
	}
	return msg
}

// closed reports whether the server has closed the connection.
func (r *rawConn) closed() bool {
	r.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := r.text.R.ReadByte()
	return err != nil
}

func testLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
