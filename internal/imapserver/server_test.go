package imapserver

import (
	"encoding/base64"
	"strconv"
	"strings"
	"testing"

	"github.com/smtpgw/smtpgw/internal/relay/relaytest"
)

func plain(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
}

// quote writes s as an IMAP quoted string.
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

func TestPreLoginCommands(t *testing.T) {
	h := start(t, "allow_insecure_auth = true")
	c := h.dial(t)
	c.expect("* OK [CAPABILITY IMAP4rev1 ID LITERAL+ SASL-IR AUTH=PLAIN] ")
	c.send("a1 CAPABILITY\r\n")
	c.expect("* CAPABILITY IMAP4rev1 ID LITERAL+ SASL-IR AUTH=PLAIN")
	c.expect("a1 OK ")
	c.send("a2 NOOP\r\na3 ID (\"name\" \"imaplib\" \"version\" NIL)\r\n")
	c.expect("a2 OK ")
	c.expect("* ID NIL")
	c.expect("a3 OK ")
	c.send("a4 SELECT INBOX\r\n")
	c.expect("a4 BAD ")
	c.send("a5 STARTTLS\r\n")
	c.expect("a5 BAD ")
	c.send("a6 LOGOUT\r\n")
	c.expect("* BYE")
	c.expect("a6 OK ")
	c.expectClosed()
	if h.up.Logins() != 0 {
		t.Error("a password was checked")
	}
}

// Every way a client sends LOGIN's strings reaches the password check
// whole, and after the answer bytes go both ways untouched, the commands
// the client pipelined behind LOGIN first.
func TestLoginForms(t *testing.T) {
	tests := map[string]func(c *client){
		"quoted": func(c *client) { c.send("a LOGIN app " + quote(testPassword) + "\r\n") },
		"literal": func(c *client) {
			c.send("a LOGIN {3}\r\n")
			c.expect("+ ")
			c.send("app {" + strconv.Itoa(len(testPassword)) + "}\r\n")
			c.expect("+ ")
			c.send(testPassword + "\r\n")
		},
		"non-synchronizing literal": func(c *client) {
			c.send("a LOGIN app {" + strconv.Itoa(len(testPassword)) + "+}\r\n" + testPassword + "\r\n")
		},
		"authenticate with initial response": func(c *client) {
			c.send("a AUTHENTICATE PLAIN " + plain("app", testPassword) + "\r\n")
		},
		"authenticate with continuation": func(c *client) {
			c.send("a AUTHENTICATE plain\r\n")
			c.expect("+ ")
			c.send(plain("app", testPassword) + "\r\n")
		},
	}
	for name, login := range tests {
		t.Run(name, func(t *testing.T) {
			h := start(t, "allow_insecure_auth = true")
			c := h.dial(t)
			c.expect("* OK ")
			login(c)
			c.expect("a OK [CAPABILITY IMAP4rev1 IDLE UIDPLUS] Logged in")
			// The fake Exchange echoes: what the client sends comes back.
			c.send("b SELECT INBOX\r\nc FETCH 1 BODY[]\r\n")
			c.expect("b SELECT INBOX")
			c.expect("c FETCH 1 BODY[]")
			if h.up.Dials() != 1 {
				t.Errorf("%d upstream logins, want 1", h.up.Dials())
			}
		})
	}
}

func TestPipelinedAfterLogin(t *testing.T) {
	h := start(t, "allow_insecure_auth = true")
	c := h.dial(t)
	c.expect("* OK ")
	c.send("a LOGIN app " + quote(testPassword) + "\r\nb NOOP\r\n")
	c.expect("a OK ")
	c.expect("b NOOP")
}

func TestLoginFailures(t *testing.T) {
	tests := []struct {
		name   string
		pass   string
		fail   error
		answer string
		dials  int
		log    string
	}{
		{"wrong password", "wrong", nil, "a NO [AUTHENTICATIONFAILED] ", 0, "login=bad_credentials"},
		{"mailbox refused upstream", testPassword, relaytest.Refused(), "a NO [UNAVAILABLE] ", 1, "level=ERROR msg=\"imap session\""},
		{"upstream down", testPassword, errUnreachable, "a NO [UNAVAILABLE] ", 1, "login=upstream_unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := start(t, "allow_insecure_auth = true")
			h.up.Fail = tt.fail
			c := h.dial(t)
			c.expect("* OK ")
			c.send("a LOGIN app " + quote(tt.pass) + "\r\n")
			c.expect(tt.answer)
			c.send("z LOGOUT\r\n")
			c.expect("* BYE")
			c.expect("z OK")
			c.expectClosed()
			if h.up.Dials() != tt.dials {
				t.Errorf("%d upstream logins, want %d", h.up.Dials(), tt.dials)
			}
			waitForLog(t, h, tt.log)
		})
	}
}

func TestTooManyFailedLogins(t *testing.T) {
	h := start(t, "allow_insecure_auth = true")
	c := h.dial(t)
	c.expect("* OK ")
	for i := range 3 {
		c.send("a" + strconv.Itoa(i) + " LOGIN app wrong\r\n")
		c.expect("a" + strconv.Itoa(i) + " NO [AUTHENTICATIONFAILED]")
	}
	c.expect("* BYE")
	c.expectClosed()
}

func TestPasswordsNeedTLS(t *testing.T) {
	h := start(t, "")
	c := h.dial(t)
	c.expect("* OK [CAPABILITY IMAP4rev1 ID LITERAL+ SASL-IR LOGINDISABLED]")
	c.send("a LOGIN app " + quote(testPassword) + "\r\n")
	c.expect("a NO [PRIVACYREQUIRED]")
	c.send("b AUTHENTICATE PLAIN " + plain("app", testPassword) + "\r\n")
	c.expect("b NO [PRIVACYREQUIRED]")
	if h.up.Logins() != 0 {
		t.Error("a password was checked without TLS")
	}
}

func TestStartTLS(t *testing.T) {
	h := start(t, `tls = "starttls"`)
	c := h.dial(t)
	c.expect("* OK [CAPABILITY IMAP4rev1 ID LITERAL+ SASL-IR STARTTLS LOGINDISABLED]")
	c.send("a STARTTLS\r\n")
	c.expect("a OK ")
	c.startTLS(h.clientTLS)
	c.send("b CAPABILITY\r\n")
	c.expect("* CAPABILITY IMAP4rev1 ID LITERAL+ SASL-IR AUTH=PLAIN")
	c.expect("b OK")
	c.send("c LOGIN app " + quote(testPassword) + "\r\n")
	c.expect("c OK ")
}

// A command sent in plaintext behind STARTTLS never runs: the session
// ends instead (CVE-2011-0411 and its IMAP cousins).
func TestStartTLSInjection(t *testing.T) {
	h := start(t, `tls = "starttls"`+"\nallow_insecure_auth = true")
	c := h.dial(t)
	c.expect("* OK ")
	c.send("a STARTTLS\r\nb LOGIN app " + quote(testPassword) + "\r\n")
	c.expect("a OK ")
	c.expectClosed()
	if h.up.Logins() != 0 {
		t.Error("the injected LOGIN ran")
	}
}

func TestImplicitTLS(t *testing.T) {
	h := start(t, `tls = "implicit"`)
	c := h.dialTLS(t)
	c.expect("* OK [CAPABILITY IMAP4rev1 ID LITERAL+ SASL-IR AUTH=PLAIN]")
	c.send("a AUTHENTICATE PLAIN " + plain("app", testPassword) + "\r\n")
	c.expect("a OK ")
}

func TestLimits(t *testing.T) {
	h := start(t, "allow_insecure_auth = true")
	c := h.dial(t)
	c.expect("* OK ")
	c.send("a LOGIN app {5000}\r\n")
	c.expect("a NO [TOOBIG]")
	c.send("b LOGIN app {5000+}\r\n")
	c.expect("* BYE")
	c.expectClosed()

	c = h.dial(t)
	c.expect("* OK ")
	c.send("a NOOP " + strings.Repeat("x", 9000) + "\r\n")
	c.expect("* BYE")
	c.expectClosed()

	c = h.dial(t)
	c.expect("* OK ")
	for i := range 5 {
		c.send("a" + strconv.Itoa(i) + " FROB\r\n")
		c.expect("a" + strconv.Itoa(i) + " BAD")
	}
	c.expect("* BYE")
	c.expectClosed()
}

func TestSyntaxErrors(t *testing.T) {
	h := start(t, "allow_insecure_auth = true")
	c := h.dial(t)
	c.expect("* OK ")
	for _, line := range []string{"", "+x NOOP", "a LOGIN \"secret", "a LOGIN app {x}"} {
		c.send(line + "\r\n")
		c.expect("")
	}
	c.send("a LOGIN {3} app\r\n")
	c.expect("a BAD")
	c.expect("* BYE")
	if strings.Contains(h.log.String(), "secret") || strings.Contains(h.log.String(), "{x}") {
		t.Errorf("the debug log shows the words after the command of a refused line:\n%s", h.log)
	}
}
