package smtpserver

import (
	"crypto/tls"
	"encoding/base64"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/smtpgw/smtpgw/internal/config"
	"github.com/smtpgw/smtpgw/internal/envelope"
)

const testMessage = "From: Scanner <scanner@contoso.com>\r\n" +
	"To: someone@example.com\r\n" +
	"Subject: Scan\r\n" +
	"\r\n" +
	"Hello.\r\n" +
	".A line that starts with a dot.\r\n" +
	"\r\n" +
	"Bye.\r\n"

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func plainIR(user, password string) string { return b64("\x00" + user + "\x00" + password) }

func from(ip string) net.Addr { return &net.TCPAddr{IP: net.ParseIP(ip)} }

// checkSpooled checks the envelope and the message of a committed message.
func checkSpooled(t *testing.T, ts *testServer, id string, want envelope.Envelope, wantRaw string, start time.Time) {
	t.Helper()
	env, raw := ts.spooled(t, id)
	if raw != wantRaw {
		t.Errorf("spooled message:\n%q\nwant\n%q", raw, wantRaw)
	}
	if env.ID != id {
		t.Errorf("envelope ID %q, want %q", env.ID, id)
	}
	if env.Received.Before(start) || env.Received.After(time.Now()) {
		t.Errorf("envelope received %v, want between %v and now", env.Received, start)
	}
	if !strings.HasPrefix(env.ClientAddr, "127.0.0.1:") {
		t.Errorf("envelope client address %q", env.ClientAddr)
	}
	if env.Identity != want.Identity || env.Mailbox != want.Mailbox || env.MailFrom != want.MailFrom ||
		!slices.Equal(env.Recipients, want.Recipients) || !slices.Equal(env.AllowedSenders, want.AllowedSenders) {
		t.Errorf("envelope %+v, want %+v", *env, want)
	}
}

func TestAuthPlainOverStartTLS(t *testing.T) {
	ts := startServer(t, testConfig(t))
	start := time.Now()
	c := ts.dial(t, startTLSListener)
	if _, isTLS := c.TLSConnectionState(); !isTLS {
		t.Fatal("STARTTLS did not happen")
	}
	if !c.SupportsAuth("PLAIN") || !c.SupportsAuth("LOGIN") {
		t.Fatal("AUTH PLAIN LOGIN not advertised after STARTTLS")
	}
	// SIZE without a number: the session enforces the limit itself (see
	// newSMTPServer), and refuses a larger declared SIZE at MAIL FROM.
	if ok, size := c.Extension("SIZE"); !ok || size != "" {
		t.Errorf("SIZE %q %v, want SIZE without a number", size, ok)
	}
	if err := c.Auth(sasl.NewPlainClient("", scannerUser, scannerPassword)); err != nil {
		t.Fatalf("AUTH PLAIN: %v", err)
	}
	recipients := []string{"someone@example.com", "Hidden@Example.org"}
	status, err := send(c, scannerMailbox, recipients, testMessage)
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	id := queueID(t, status)
	checkSpooled(t, ts, id, envelope.Envelope{
		Identity:       "user:" + scannerUser,
		Mailbox:        scannerMailbox,
		AllowedSenders: []string{scannerMailbox},
		MailFrom:       scannerMailbox,
		Recipients:     recipients,
	}, testMessage, start)
	c.Quit()

	logs := ts.logs.String()
	for _, want := range []string{"msg=accepted conn=1 client=127.0.0.1:", "id=" + id, "identity=user:" + scannerUser, "mailbox=" + scannerMailbox, "recipients=2", "size="} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, scannerPassword) {
		t.Error("log contains the password")
	}
}

func TestAuthLoginOverImplicitTLS(t *testing.T) {
	ts := startServer(t, testConfig(t))
	start := time.Now()
	addr := ts.addrs[implicitListener]
	tests := []struct {
		name  string
		login func(t *testing.T, r *rawConn)
	}{
		{"initial response", func(t *testing.T, r *rawConn) {
			r.cmd("AUTH LOGIN "+b64(appUser), "334 "+b64("Password:"))
			r.cmd(b64(appPassword), "235 2.0.0")
		}},
		{"challenges", func(t *testing.T, r *rawConn) {
			r.cmd("AUTH LOGIN", "334 VXNlcm5hbWU6")
			r.cmd(b64(appUser), "334 UGFzc3dvcmQ6")
			r.cmd(b64(appPassword), "235 2.0.0")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := dialRaw(t, addr, clientTLS(), nil)
			if ehlo := r.greet(); !strings.Contains(ehlo, "AUTH PLAIN LOGIN") {
				t.Fatalf("EHLO over TLS lacks AUTH:\n%s", ehlo)
			}
			tt.login(t, r)
			// The account has no mailbox: the allowed sender's own is used.
			r.cmd("MAIL FROM:<billing@apps.contoso.com>", "250 ")
			r.cmd("RCPT TO:<customer@example.com>", "250 ")
			msg := testMessage + ".A line that starts with a dot\r\n"
			id := queueID(t, r.data(msg, "250 2.0.0 OK: queued as "))
			checkSpooled(t, ts, id, envelope.Envelope{
				Identity:       "user:" + appUser,
				Mailbox:        "billing@apps.contoso.com",
				AllowedSenders: []string{"*@apps.contoso.com"},
				MailFrom:       "billing@apps.contoso.com",
				Recipients:     []string{"customer@example.com"},
			}, msg, start)
			r.cmd("QUIT", "221 ")
		})
	}
}

func TestGoSASLLoginClient(t *testing.T) {
	ts := startServer(t, testConfig(t))
	c := ts.dial(t, implicitListener)
	if err := c.Auth(sasl.NewLoginClient(scannerUser, scannerPassword)); err != nil {
		t.Fatalf("AUTH LOGIN: %v", err)
	}
	if _, err := send(c, scannerMailbox, []string{"a@example.com"}, testMessage); err != nil {
		t.Fatal(err)
	}
}

func TestNetworkIdentity(t *testing.T) {
	ts := startServer(t, testConfig(t))
	start := time.Now()
	r := dialRaw(t, ts.addrs[plainListener], nil, from("127.0.0.1"))
	if ehlo := r.greet(); strings.Contains(ehlo, "AUTH") {
		t.Errorf("AUTH advertised without TLS:\n%s", ehlo)
	}
	r.cmd("MAIL FROM:<Printer@Contoso.com>", "250 ")
	r.cmd("RCPT TO:<someone@example.com>", "250 ")
	id := queueID(t, r.data(testMessage, "250 2.0.0 OK: queued as "))
	checkSpooled(t, ts, id, envelope.Envelope{
		Identity:       "network:127.0.0.1/32", // the most specific network wins
		Mailbox:        "noreply@contoso.com",
		AllowedSenders: []string{"*@contoso.com"},
		MailFrom:       "Printer@Contoso.com",
		Recipients:     []string{"someone@example.com"},
	}, testMessage, start)
}

// TestRefusals checks each refusal with its exact reply, over hand-written
// conversations.
func TestRefusals(t *testing.T) {
	type step struct{ send, want string }
	bigBody := strings.Repeat(strings.Repeat("x", 98)+"\r\n", maxMessageSize/100+1)
	tests := []struct {
		name     string
		listener int
		source   string
		steps    []step
	}{
		{"no identity", plainListener, "127.0.0.2", []step{
			{"MAIL FROM:<printer@contoso.com>", "530 5.7.0 "},
		}},
		{"wrong password", implicitListener, "127.0.0.2", []step{
			{"AUTH PLAIN " + plainIR(scannerUser, "wrong"), "535 5.7.8 "},
			{"MAIL FROM:<" + scannerMailbox + ">", "530 5.7.0 "},
		}},
		{"unknown user", implicitListener, "127.0.0.1", []step{
			{"AUTH PLAIN " + plainIR("nobody", scannerPassword), "535 5.7.8 "},
		}},
		{"authorization identity of another user", implicitListener, "127.0.0.1", []step{
			{"AUTH PLAIN " + b64(appUser+"\x00"+scannerUser+"\x00"+scannerPassword), "535 5.7.8 "},
		}},
		{"AUTH without TLS", plainListener, "127.0.0.1", []step{
			{"AUTH PLAIN " + plainIR(scannerUser, scannerPassword), "538 5.7.11 "},
		}},
		{"AUTH LOGIN without TLS", plainListener, "127.0.0.1", []step{
			{"AUTH LOGIN", "538 5.7.11 "},
		}},
		{"AUTH before STARTTLS", startTLSListener, "127.0.0.1", []step{
			{"AUTH PLAIN " + plainIR(scannerUser, scannerPassword), "538 5.7.11 "},
		}},
		{"unknown mechanism", implicitListener, "127.0.0.1", []step{
			{"AUTH CRAM-MD5", "504 5.5.4 "},
		}},
		{"malformed PLAIN", implicitListener, "127.0.0.1", []step{
			{"AUTH PLAIN " + b64("no separators"), "501 5.5.2 "},
		}},
		{"foreign sender from a network", plainListener, "127.0.0.1", []step{
			{"MAIL FROM:<ceo@elsewhere.example>", "550 5.7.1 "},
		}},
		{"foreign sender for a user", implicitListener, "127.0.0.1", []step{
			{"AUTH PLAIN " + plainIR(scannerUser, scannerPassword), "235 2.0.0 "},
			{"MAIL FROM:<someone.else@contoso.com>", "550 5.7.1 "},
		}},
		{"null sender", plainListener, "127.0.0.1", []step{
			{"MAIL FROM:<>", "550 5.7.1 "},
		}},
		{"declared size too large", plainListener, "127.0.0.1", []step{
			{"MAIL FROM:<printer@contoso.com> SIZE=70000", "552 5.3.4 "},
		}},
		{"message too large", plainListener, "127.0.0.1", []step{
			{"MAIL FROM:<printer@contoso.com>", "250 "},
			{"RCPT TO:<a@example.com>", "250 "},
			{"DATA", "354 "},
			{"Subject: big\r\n\r\n" + bigBody + ".", "552 5.3.4 "},
			// The session goes on.
			{"MAIL FROM:<printer@contoso.com>", "250 "},
		}},
		{"too many recipients", plainListener, "127.0.0.1", []step{
			{"MAIL FROM:<printer@contoso.com>", "250 "},
			{"RCPT TO:<a@example.com>", "250 "},
			{"RCPT TO:<b@example.com>", "250 "},
			{"RCPT TO:<c@example.com>", "250 "},
			{"RCPT TO:<d@example.com>", "452 4.5.3 "},
		}},
		{"bad recipient", plainListener, "127.0.0.1", []step{
			{"MAIL FROM:<printer@contoso.com>", "250 "},
			{"RCPT TO:<someone@bad..example.com>", "501 5.1.3 "},
			{"RCPT TO:<someone@localhost>", "501 5.1.3 "},
			{"RCPT TO:<someone@[192.0.2.1]>", "501 5.1.3 "},
			{"RCPT TO:<someone@example.com>", "250 "},
		}},
	}
	ts := startServer(t, testConfig(t))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tlsConfig *tls.Config
			if ts.cfg.Listeners[tt.listener].TLS == config.TLSImplicit {
				tlsConfig = clientTLS()
			}
			r := dialRaw(t, ts.addrs[tt.listener], tlsConfig, from(tt.source))
			r.greet()
			for _, s := range tt.steps {
				r.cmd(s.send, s.want)
			}
			r.cmd("QUIT", "221 ")
		})
	}
	if ids := ts.queued(t); len(ids) != 0 {
		t.Errorf("refused transactions left messages in the queue: %v", ids)
	}
	if left := ts.leftovers(t); len(left) != 0 {
		t.Errorf("refused transactions left files: %v", left)
	}
	logs := ts.logs.String()
	if !strings.Contains(logs, "msg=refused") || !strings.Contains(logs, `msg="authentication failed"`) {
		t.Errorf("refusals not logged:\n%s", logs)
	}
	if strings.Contains(logs, scannerPassword) {
		t.Error("log contains a password")
	}
}

func TestInsecureAuthListener(t *testing.T) {
	ts := startServer(t, testConfig(t))
	c := ts.dial(t, insecureAuthListener)
	if !c.SupportsAuth("PLAIN") {
		t.Fatal("allow_insecure_auth listener does not advertise AUTH")
	}
	if err := c.Auth(sasl.NewPlainClient("", scannerUser, scannerPassword)); err != nil {
		t.Fatalf("AUTH PLAIN: %v", err)
	}
	if _, err := send(c, scannerMailbox, []string{"a@example.com"}, testMessage); err != nil {
		t.Fatal(err)
	}
}

func TestSpoolFailure(t *testing.T) {
	ts := startServer(t, testConfig(t))
	// Files where the spool's folders for new messages should be: Create
	// fails even for root.
	for _, folder := range []string{"tmp", "spare"} {
		path := filepath.Join(ts.spool.Dir(), folder)
		if err := os.RemoveAll(path); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c := ts.dial(t, plainListener)
	_, err := send(c, "printer@contoso.com", []string{"a@example.com"}, testMessage)
	wantSMTPError(t, err, 452, smtp.EnhancedCode{4, 3, 1})
	if strings.Contains(err.Error(), "spool") || strings.Contains(err.Error(), ts.spool.Dir()) {
		t.Errorf("internal error text reached the client: %v", err)
	}
	if logs := ts.logs.String(); !strings.Contains(logs, "spool failure") || !strings.Contains(logs, "code=452") {
		t.Errorf("spool failure not logged:\n%s", logs)
	}
	// The session survives and the client may retry later.
	if err := c.Noop(); err != nil {
		t.Errorf("NOOP after a spool failure: %v", err)
	}
}

func TestMaxAuthFailures(t *testing.T) {
	ts := startServer(t, testConfig(t))
	r := dialRaw(t, ts.addrs[implicitListener], clientTLS(), nil)
	r.greet()
	for range maxAuthFailures - 1 {
		r.cmd("AUTH PLAIN "+plainIR(scannerUser, "guess"), "535 5.7.8 ")
	}
	r.cmd("AUTH LOGIN "+b64(scannerUser), "334 ")
	r.cmd(b64("guess"), "421 4.7.0 ")
	if !r.closed() {
		t.Fatal("connection still open after too many AUTH failures")
	}
	// The limit is per connection.
	c := ts.dial(t, implicitListener)
	if err := c.Auth(sasl.NewPlainClient("", scannerUser, scannerPassword)); err != nil {
		t.Fatalf("AUTH on a new connection: %v", err)
	}
}

func TestTLS10Client(t *testing.T) {
	ts := startServer(t, testConfig(t))
	// An old printer: TLS 1.0 with RSA key exchange only.
	old := clientTLS()
	old.MinVersion = tls.VersionTLS10
	old.MaxVersion = tls.VersionTLS10
	old.CipherSuites = []uint16{tls.TLS_RSA_WITH_AES_128_CBC_SHA}

	c, err := smtp.DialTLS(ts.addrs[legacyListener], old)
	if err != nil {
		t.Fatalf("TLS 1.0 client on a min_tls_version 1.0 listener: %v", err)
	}
	defer c.Close()
	state, _ := c.TLSConnectionState()
	if state.Version != tls.VersionTLS10 || state.CipherSuite != tls.TLS_RSA_WITH_AES_128_CBC_SHA {
		t.Errorf("negotiated %s %s", tls.VersionName(state.Version), tls.CipherSuiteName(state.CipherSuite))
	}
	if err := c.Auth(sasl.NewLoginClient(scannerUser, scannerPassword)); err != nil {
		t.Fatalf("AUTH LOGIN: %v", err)
	}
	if _, err := send(c, scannerMailbox, []string{"a@example.com"}, testMessage); err != nil {
		t.Fatal(err)
	}

	// A listener left at TLS 1.2 refuses the same client.
	if c, err := smtp.DialTLS(ts.addrs[implicitListener], old); err == nil {
		c.Close()
		t.Error("TLS 1.0 client accepted by a min_tls_version 1.2 listener")
	}
}

func TestMaxConnections(t *testing.T) {
	for _, listener := range []int{plainListener, implicitListener} {
		t.Run(testConfig(t).Listeners[listener].TLS, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Server.MaxConnections = 2
			ts := startServer(t, cfg)
			addr := ts.addrs[listener]
			var tlsConfig *tls.Config
			if listener == implicitListener {
				tlsConfig = clientTLS()
			}
			first := dialRaw(t, addr, tlsConfig, nil)
			first.greet()
			second := dialRaw(t, addr, tlsConfig, nil)
			second.greet()

			if listener == implicitListener {
				// Refused before any handshake: closed at once, unanswered.
				third := dialRaw(t, addr, nil, nil)
				start := time.Now()
				if !third.closed() || time.Since(start) > time.Second {
					t.Errorf("connection over the limit not closed at once (%v)", time.Since(start))
				}
			} else {
				third := dialRaw(t, addr, nil, nil)
				if got := third.reply(); !strings.HasPrefix(got, "421 4.7.0 ") {
					t.Fatalf("connection over the limit got %q, want 421 4.7.0", got)
				}
				if !third.closed() {
					t.Error("connection over the limit left open")
				}
			}

			// A slot frees up once a client leaves.
			first.cmd("QUIT", "221 ")
			deadline := time.Now().Add(5 * time.Second)
			for attempt := 0; ; attempt++ {
				r := dialRaw(t, addr, tlsConfig, nil)
				if got := r.reply(); strings.HasPrefix(got, "220 ") {
					break
				}
				if attempt > 100 || time.Now().After(deadline) {
					t.Fatal("no connection admitted after a client left")
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

func TestStartReportsBindError(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfg := testConfig(t)
	cfg.Listeners = []config.Listener{
		{Address: "127.0.0.1:0", TLS: config.TLSNone},
		{Address: busy.Addr().String(), TLS: config.TLSNone},
	}
	srv, err := New(cfg, nil, testGate(t, cfg), testCerts(t, cfg, "", testLogger()), testLogger())
	if err != nil {
		t.Fatal(err)
	}
	err = srv.Start()
	if err == nil || !strings.Contains(err.Error(), busy.Addr().String()) {
		t.Fatalf("Start: %v, want an error naming %s", err, busy.Addr())
	}
	if len(srv.Addrs()) != 0 {
		t.Errorf("listeners left bound after a failed Start: %v", srv.Addrs())
	}
}
