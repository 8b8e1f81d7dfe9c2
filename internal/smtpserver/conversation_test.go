package smtpserver

import (
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
)

// TestAuthEveryListenerAndLevel: AUTH PLAIN and LOGIN work on every kind
// of listener at level info and debug alike (the debug log once hid TLS
// from go-smtp), and the debug log never holds the password.
func TestAuthEveryListenerAndLevel(t *testing.T) {
	for _, level := range []slog.Level{slog.LevelInfo, slog.LevelDebug} {
		ts := startServerLogging(t, testConfig(t), level)
		for _, listener := range []int{insecureAuthListener, startTLSListener, implicitListener} {
			for _, mech := range []string{mechPlain, mechLogin} {
				name := fmt.Sprintf("%s/%s/%s", level, ts.cfg.Listeners[listener].TLS, mech)
				t.Run(name, func(t *testing.T) {
					c := ts.dial(t, listener)
					client := sasl.NewPlainClient("", scannerUser, scannerPassword)
					if mech == mechLogin {
						client = sasl.NewLoginClient(scannerUser, scannerPassword)
					}
					if err := c.Auth(client); err != nil {
						t.Fatalf("AUTH %s: %v", mech, err)
					}
					if _, err := send(c, scannerMailbox, []string{"a@example.com"}, testMessage); err != nil {
						t.Fatal(err)
					}
				})
			}
		}
		logs := ts.logs.String()
		for _, secret := range []string{scannerPassword, b64(scannerPassword), plainIR(scannerUser, scannerPassword)} {
			if strings.Contains(logs, secret) {
				t.Errorf("level %s: log holds %q:\n%s", level, secret, logs)
			}
		}
		if level == slog.LevelDebug && !strings.Contains(logs, "[AUTH response redacted]") {
			t.Errorf("debug log shows no redacted AUTH exchange:\n%s", logs)
		}
	}
}

func TestDebugConversation(t *testing.T) {
	cfg := testConfig(t)
	cfg.Log.DebugPrefixes = []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}
	ts := startServerLogging(t, cfg, slog.LevelDebug)
	credentials := base64.StdEncoding.EncodeToString([]byte("\x00" + scannerUser + "\x00" + scannerPassword))

	c := dialRaw(t, ts.addrs[insecureAuthListener], nil, &net.TCPAddr{IP: net.ParseIP("127.0.0.2")})
	c.greet()
	// Every form a credential may take on the AUTH line or after it.
	c.cmd("AUTH PLAIN\t"+b64("\x00tab-form\x00secret-tab"), "5")
	c.cmd("auth plain "+b64("\x00lower-form\x00secret-lower"), "535 ")
	c.cmd("AUTH PLAIN "+credentials, "235 ")
	c.cmd("MAIL FROM:<"+scannerMailbox+">", "250 ")
	c.cmd("RCPT TO:<someone@example.com>", "250 ")
	c.data("Subject: scan\r\n\r\nconfidential body\r\n", "250 ")
	// The body sent before the 354 arrives is not logged either.
	c.cmd("MAIL FROM:<"+scannerMailbox+">", "250 ")
	c.cmd("RCPT TO:<someone@example.com>", "250 ")
	c.text.PrintfLine("DATA\r\nSubject: pipelined\r\n\r\npipelined body\r\n.")
	if got := c.reply(); !strings.HasPrefix(got, "354 ") {
		t.Fatalf("DATA got %q", got)
	}
	if got := c.reply(); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("pipelined message got %q", got)
	}
	c.cmd("QUIT", "221 ")

	login := dialRaw(t, ts.addrs[insecureAuthListener], nil, &net.TCPAddr{IP: net.ParseIP("127.0.0.2")})
	login.greet()
	login.cmd("AUTH LOGIN "+b64("login-user"), "334 ")
	login.cmd(b64("secret-login"), "535 ")

	// Not in debug_clients: not logged line by line.
	other := dialRaw(t, ts.addrs[insecureAuthListener], nil, &net.TCPAddr{IP: net.ParseIP("127.0.0.3")})
	other.greet()
	other.cmd("NOOP", "250 ")

	logs := ts.logs.String()
	for _, want := range []string{`line="AUTH PLAIN [redacted]"`, `line="auth plain [redacted]"`, `line="AUTH LOGIN [redacted]"`,
		`line="MAIL FROM:<` + scannerMailbox + `>"`, "[message: 36 bytes, not logged]", `line="235 2.0.0 Authentication succeeded"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
	for _, secret := range []string{credentials, "secret", "confidential body", "pipelined", "NOOP", b64("login-user")} {
		if strings.Contains(logs, secret) || strings.Contains(logs, b64(secret)) {
			t.Errorf("log holds %q:\n%s", secret, logs)
		}
	}
}

// TestDebugLogBounded: NOOP in a loop does not fill the debug log.
func TestDebugLogBounded(t *testing.T) {
	ts := startServerLogging(t, parseConfig(t, testLimits+"session_lifetime = \"1m\"\n"), slog.LevelDebug)
	r := dialRaw(t, ts.addrs[plainListener], nil, from("127.0.0.2"))
	r.greet()
	for range 2000 {
		r.text.PrintfLine("NOOP")
	}
	for range 2000 {
		r.reply()
	}
	if n := strings.Count(ts.logs.String(), "\n"); n > 600 {
		t.Errorf("2,000 NOOPs wrote %d log lines", n)
	}
}

// TestCommandsBeforeEHLOClosed: go-smtp's own refusals count like ours:
// a client sending commands before EHLO is slowed, then gets 421 and is
// closed within max_errors.
func TestCommandsBeforeEHLOClosed(t *testing.T) {
	ts := startServer(t, parseConfig(t, "[limits]\nerror_delay = \"20ms\"\n"))
	r := dialRaw(t, ts.addrs[plainListener], nil, from("127.0.0.2"))
	if got := r.reply(); !strings.HasPrefix(got, "220 ") {
		t.Fatalf("greeting %q", got)
	}
	start := time.Now()
	r.refusedUntilClosed(t, "MAIL FROM:<a@contoso.com>", "502 5.5.1 ")
	// errors_before_delay 3, then 20ms, 40ms, … 140ms: 560ms in all.
	if d := time.Since(start); d < 500*time.Millisecond {
		t.Errorf("ten refusals took %v, want them slowed", d)
	}
}

// refusedUntilClosed sends line max_errors (10) times, each refused with
// want, then once more: that one gets 421 and the connection closes.
func (r *rawConn) refusedUntilClosed(t *testing.T, line, want string) {
	t.Helper()
	for range 10 {
		r.cmd(line, want)
	}
	r.cmd(line, "421 4.7.0 ")
	if !r.closed() {
		t.Error("connection still open after max_errors")
	}
}

// TestErrorsCountedAfterSTARTTLS: after STARTTLS, where go-smtp reads and
// writes through its own TLS layer, error replies still count.
func TestErrorsCountedAfterSTARTTLS(t *testing.T) {
	ts := startServer(t, testConfig(t))
	r := dialRaw(t, ts.addrs[startTLSListener], nil, from("127.0.0.2"))
	r.greet()
	r.cmd("STARTTLS", "220 ")
	r.startTLS(t)
	r.text.PrintfLine("EHLO client.test")
	if _, _, err := r.text.ReadResponse(250); err != nil {
		t.Fatal(err)
	}
	r.refusedUntilClosed(t, "RCPT TO:<a@example.com>", "5")
}

// TestSTARTTLSBeforeEHLOCloses: a client that starts TLS without EHLO was
// never offered it; it is closed rather than served.
func TestSTARTTLSBeforeEHLOCloses(t *testing.T) {
	ts := startServer(t, testConfig(t))
	r := dialRaw(t, ts.addrs[startTLSListener], nil, from("127.0.0.2"))
	r.reply()
	r.cmd("STARTTLS", "220 ")
	if !r.closed() {
		t.Error("connection open after STARTTLS before EHLO")
	}
}

// startTLS continues the conversation over TLS.
func (r *rawConn) startTLS(t *testing.T) {
	t.Helper()
	conn := tls.Client(r.conn, clientTLS())
	if err := conn.Handshake(); err != nil {
		t.Fatalf("TLS handshake: %v", err)
	}
	r.conn = conn
	r.text = textproto.NewConn(conn)
}

// TestRepliesCountedWithoutAllocating: outside the debug log, reading a
// reply for its error count allocates nothing, and the count is right.
func TestRepliesCountedWithoutAllocating(t *testing.T) {
	l := &smtpLines{greeted: true}
	replies := []byte("250-smtp.example.com\r\n250 PIPELINING\r\n550 5.7.1 Sender address not allowed\r\n")
	allocs := testing.AllocsPerRun(100, func() {
		logged, errors, encrypted := l.Server(replies)
		if logged != nil || errors != 1 || encrypted {
			t.Fatalf("Server = %q, %d, %v; want nil, 1, false", logged, errors, encrypted)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per reply, want 0", allocs)
	}
	l.debug = true
	logged, _, _ := l.Server(replies)
	if len(logged) != 3 || logged[2] != "550 5.7.1 Sender address not allowed" {
		t.Errorf("logged %q at debug", logged)
	}
}
