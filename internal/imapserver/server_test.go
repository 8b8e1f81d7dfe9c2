package imapserver

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smtpgw/smtpgw/internal/config"
	"github.com/smtpgw/smtpgw/internal/relay"
	"github.com/smtpgw/smtpgw/internal/relay/relaytest"
)

func TestPreLoginCommands(t *testing.T) {
	h := start(t, "allow_insecure_auth = true")
	c := h.Dial(t)
	c.Expect("* OK [CAPABILITY IMAP4rev1 ID LITERAL+ SASL-IR AUTH=PLAIN] ")
	c.Send("a1 CAPABILITY\r\n")
	c.Expect("* CAPABILITY IMAP4rev1 ID LITERAL+ SASL-IR AUTH=PLAIN")
	c.Expect("a1 OK ")
	c.Send("a2 NOOP\r\na3 ID (\"name\" \"imaplib\" \"version\" NIL)\r\n")
	c.Expect("a2 OK ")
	c.Expect("* ID NIL")
	c.Expect("a3 OK ")
	c.Send("a4 SELECT INBOX\r\n")
	c.Expect("a4 BAD ")
	c.Send("a5 STARTTLS\r\n")
	c.Expect("a5 BAD ")
	c.Send("a6 LOGOUT\r\n")
	c.Expect("* BYE")
	c.Expect("a6 OK ")
	c.ExpectClosed()
	if h.Up.Dials() != 0 {
		t.Error("the gateway went upstream")
	}
}

// Every way a client sends LOGIN's strings reaches the password check
// whole, and after the answer bytes go both ways untouched, the commands
// the client pipelined behind LOGIN first.
func TestLoginForms(t *testing.T) {
	tests := map[string]func(c *relaytest.Client){
		"quoted": func(c *relaytest.Client) { c.Send("a LOGIN app " + relaytest.Quote(testPassword) + "\r\n") },
		"literal": func(c *relaytest.Client) {
			c.Send("a LOGIN {3}\r\n")
			c.Expect("+ ")
			c.Send("app {" + strconv.Itoa(len(testPassword)) + "}\r\n")
			c.Expect("+ ")
			c.Send(testPassword + "\r\n")
		},
		"non-synchronizing literal": func(c *relaytest.Client) {
			c.Send("a LOGIN app {" + strconv.Itoa(len(testPassword)) + "+}\r\n" + testPassword + "\r\n")
		},
		"authenticate with initial response": func(c *relaytest.Client) {
			c.Send("a AUTHENTICATE PLAIN " + plain("app", testPassword) + "\r\n")
		},
		"authenticate with continuation": func(c *relaytest.Client) {
			c.Send("a AUTHENTICATE plain\r\n")
			c.Expect("+ ")
			c.Send(plain("app", testPassword) + "\r\n")
		},
	}
	for name, login := range tests {
		t.Run(name, func(t *testing.T) {
			h := start(t, "allow_insecure_auth = true")
			c := h.Dial(t)
			c.Expect("* OK ")
			login(c)
			c.Expect("a OK [CAPABILITY IMAP4rev1 IDLE UIDPLUS] Logged in")
			// The fake Exchange echoes: what the client sends comes back.
			const sent = "b SELECT INBOX\r\nc FETCH 1 BODY[]\r\n"
			c.Send(sent)
			c.Expect("b SELECT INBOX")
			c.Expect("c FETCH 1 BODY[]")
			if h.Up.Dials() != 1 || h.Up.Mailbox() != relaytest.Mailbox {
				t.Errorf("%d upstream logins, to %q; want 1 to %s", h.Up.Dials(), h.Up.Mailbox(), relaytest.Mailbox)
			}
			// The login is logged, its secret replaced.
			relaytest.WaitForLog(t, h.Log, "<credentials>")
			c.Close()
			relaytest.WaitForLog(t, h.Log, fmt.Sprintf("bytes_in=%d bytes_out=%d", len(sent), len(sent)))
			relaytest.CheckMetrics(t, h.Metrics, "imap", relay.LoginOK, len(sent), len(sent))
		})
	}
}

func TestPipelinedAfterLogin(t *testing.T) {
	h := start(t, "allow_insecure_auth = true")
	c := h.Dial(t)
	c.Expect("* OK ")
	c.Send("a LOGIN app " + relaytest.Quote(testPassword) + "\r\nb NOOP\r\n")
	c.Expect("a OK ")
	c.Expect("b NOOP")
}

func TestLoginFailures(t *testing.T) {
	tests := []struct {
		name    string
		user    string
		pass    string
		fail    error
		answer  string
		dials   int
		log     string
		outcome string
	}{
		{"wrong password", relaytest.User, "wrong", nil, "a NO [AUTHENTICATIONFAILED] ", 0, "login=bad_credentials", relay.LoginRefused},
		{"unknown user", "nobody", testPassword, nil, "a NO [AUTHENTICATIONFAILED] ", 0, "login=bad_credentials", relay.LoginRefused},
		{"user who may only send", relaytest.Sender, testPassword, nil, "a NO [AUTHENTICATIONFAILED] ", 0, "has no read_mailbox", relay.LoginRefused},
		{"mailbox refused upstream", relaytest.User, testPassword, relaytest.Refused(), "a NO [UNAVAILABLE] ", 1, "Add-MailboxPermission", relay.UpstreamRefused},
		{"upstream down", relaytest.User, testPassword, errUnreachable, "a NO [UNAVAILABLE] ", 1, "login=upstream_unavailable", relay.UpstreamDown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := start(t, "allow_insecure_auth = true")
			h.Up.Fail = tt.fail
			c := h.Dial(t)
			c.Expect("* OK ")
			c.Send("a LOGIN " + tt.user + " " + relaytest.Quote(tt.pass) + "\r\n")
			c.Expect(tt.answer)
			relaytest.CheckMetrics(t, h.Metrics, "imap", tt.outcome, 0, 0)
			c.Send("z LOGOUT\r\n")
			c.Expect("* BYE")
			c.Expect("z OK")
			c.ExpectClosed()
			if h.Up.Dials() != tt.dials {
				t.Errorf("%d upstream logins, want %d", h.Up.Dials(), tt.dials)
			}
			relaytest.WaitForLog(t, h.Log, tt.log)
			if tt.fail != nil && tt.fail != errUnreachable { // an admin must act
				relaytest.WaitForLog(t, h.Log, "level=ERROR msg=\"imap login refused by Exchange Online\"")
			}
		})
	}
}

func TestTooManyFailedLogins(t *testing.T) {
	h := start(t, "allow_insecure_auth = true")
	c := h.Dial(t)
	c.Expect("* OK ")
	for i := range 3 {
		c.Send("a" + strconv.Itoa(i) + " LOGIN app wrong\r\n")
		c.Expect("a" + strconv.Itoa(i) + " NO [AUTHENTICATIONFAILED]")
	}
	c.Expect("* BYE")
	c.ExpectClosed()
}

// Logins that fail upstream count toward max_auth_failures too, and the
// limit is the gate's: a reload reaches open connections.
func TestMaxAuthFailuresReload(t *testing.T) {
	h := start(t, "allow_insecure_auth = true")
	h.Up.Fail = errUnreachable
	cfg := relaytest.Config(t, config.ProtocolIMAP, "allow_insecure_auth = true")
	cfg.Server.MaxAuthFailures = 4
	c := h.Dial(t)
	c.Expect("* OK ")
	if err := h.Gate.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		c.Send("a" + strconv.Itoa(i) + " LOGIN app " + relaytest.Quote(testPassword) + "\r\n")
		c.Expect("a" + strconv.Itoa(i) + " NO [UNAVAILABLE]")
	}
	c.Expect("* BYE Too many failed logins")
	c.ExpectClosed()
	relaytest.WaitForLog(t, h.Log, "end=\"too many failed logins\"")
}

func TestPasswordsNeedTLS(t *testing.T) {
	h := start(t, "")
	c := h.Dial(t)
	c.Expect("* OK [CAPABILITY IMAP4rev1 ID LITERAL+ SASL-IR LOGINDISABLED]")
	c.Send("a LOGIN app " + relaytest.Quote(testPassword) + "\r\n")
	c.Expect("a NO [PRIVACYREQUIRED]")
	c.Send("b AUTHENTICATE PLAIN " + plain("app", testPassword) + "\r\n")
	c.Expect("b NO [PRIVACYREQUIRED]")
	if h.Up.Dials() != 0 {
		t.Error("the gateway went upstream without TLS")
	}
}

func TestStartTLS(t *testing.T) {
	h := start(t, `tls = "starttls"`)
	c := h.Dial(t)
	c.Expect("* OK [CAPABILITY IMAP4rev1 ID LITERAL+ SASL-IR STARTTLS LOGINDISABLED]")
	c.Send("a STARTTLS\r\n")
	c.Expect("a OK ")
	c.StartTLS(h.ClientTLS)
	c.Send("b CAPABILITY\r\n")
	c.Expect("* CAPABILITY IMAP4rev1 ID LITERAL+ SASL-IR AUTH=PLAIN")
	c.Expect("b OK")
	c.Send("c LOGIN app " + relaytest.Quote(testPassword) + "\r\n")
	c.Expect("c OK ")
}

// A command sent in plaintext behind STARTTLS never runs: the session
// ends instead (CVE-2011-0411 and its IMAP cousins).
func TestStartTLSInjection(t *testing.T) {
	h := start(t, `tls = "starttls"`+"\nallow_insecure_auth = true")
	c := h.Dial(t)
	c.Expect("* OK ")
	c.Send("a STARTTLS\r\nb LOGIN app " + relaytest.Quote(testPassword) + "\r\n")
	c.Expect("a OK ")
	c.ExpectClosed()
	if h.Up.Dials() != 0 {
		t.Error("the injected LOGIN ran")
	}
}

func TestImplicitTLS(t *testing.T) {
	h := start(t, `tls = "implicit"`)
	c := h.Dial(t)
	c.StartTLS(h.ClientTLS)
	c.Expect("* OK [CAPABILITY IMAP4rev1 ID LITERAL+ SASL-IR AUTH=PLAIN]")
	c.Send("a AUTHENTICATE PLAIN " + plain("app", testPassword) + "\r\n")
	c.Expect("a OK ")
}

func TestLimits(t *testing.T) {
	h := start(t, "allow_insecure_auth = true")
	c := h.Dial(t)
	c.Expect("* OK ")
	c.Send("a LOGIN app {5000}\r\n")
	c.Expect("a NO [TOOBIG]")
	c.Send("b LOGIN app {5000+}\r\n")
	c.Expect("* BYE")
	c.ExpectClosed()

	c = h.Dial(t)
	c.Expect("* OK ")
	c.Send("a NOOP " + strings.Repeat("x", 9000) + "\r\n")
	c.Expect("* BYE")
	c.ExpectClosed()

	c = h.Dial(t)
	c.Expect("* OK ")
	for i := range 5 {
		c.Send("a" + strconv.Itoa(i) + " FROB\r\n")
		c.Expect("a" + strconv.Itoa(i) + " BAD")
	}
	c.Send("a5 FROB\r\n")
	c.Expect("* BYE Too many errors")
	c.ExpectClosed()
}

func TestSyntaxErrors(t *testing.T) {
	h := start(t, "allow_insecure_auth = true")
	c := h.Dial(t)
	c.Expect("* OK ")
	for _, line := range []string{"", "+x NOOP", "a LOGIN\tapp\tsecret", "a LOGIN app {x}"} {
		c.Send(line + "\r\n")
		c.Expect("")
	}
	c.Send("a LOGIN {3} app\r\n")
	c.Expect("a BAD")
	c.Send("b FROB\r\n")
	c.Expect("* BYE")
	// The refused lines are logged by their first words only.
	relaytest.WaitForLog(t, h.Log, `dir=C line="+x NOOP"`)
	relaytest.WaitForLog(t, h.Log, `dir=C line="a LOGIN …"`)
	if strings.Contains(h.Log.String(), "secret") || strings.Contains(h.Log.String(), "{x}") {
		t.Errorf("the debug log shows the words after the command of a refused line:\n%s", h.Log)
	}
}

// Before login a silent client is dropped after idle_timeout, and a busy
// one after session_lifetime.
func TestTimeoutsBeforeLogin(t *testing.T) {
	h := start(t, "allow_insecure_auth = true", `idle_timeout = "200ms"`, `session_lifetime = "1s"`)
	c := h.Dial(t)
	c.Expect("* OK ")
	c.Expect("* BYE Idle")
	c.ExpectClosed()

	c = h.Dial(t)
	c.Expect("* OK ")
	start := time.Now()
	for time.Since(start) < 3*time.Second {
		time.Sleep(100 * time.Millisecond)
		c.Send("a NOOP\r\n")
		if line := c.Expect(""); strings.HasPrefix(line, "* BYE") {
			if time.Since(start) < 900*time.Millisecond {
				t.Errorf("closed after %s, before session_lifetime", time.Since(start))
			}
			return
		}
	}
	t.Error("a session that only sends NOOP outlived session_lifetime")
}
