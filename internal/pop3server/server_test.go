package pop3server

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/smtpgw/smtpgw/internal/relay"
	"github.com/smtpgw/smtpgw/internal/relay/relaytest"
)

const pass = relaytest.Password

func TestPreLoginCommands(t *testing.T) {
	h := start(t, "allow_insecure_auth = true")
	c := h.Dial(t)
	c.Expect("+OK ")
	c.Send("CAPA\r\n")
	c.Expect("+OK")
	for _, want := range []string{"TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "USER", "SASL PLAIN", "."} {
		c.Expect(want)
	}
	c.Send("NOOP\r\nAUTH\r\n")
	c.Expect("+OK")
	c.Expect("+OK")
	c.Expect("PLAIN")
	c.Expect(".")
	c.Send("STAT\r\nSTLS\r\nPASS x\r\n")
	c.Expect("-ERR ")
	c.Expect("-ERR ")
	c.Expect("-ERR ")
	c.Send("QUIT\r\n")
	c.Expect("+OK")
	c.ExpectClosed()
	if h.Up.Dials() != 0 {
		t.Error("the gateway went upstream")
	}
}

func TestLoginForms(t *testing.T) {
	tests := map[string]func(c *relaytest.Client){
		"user and pass": func(c *relaytest.Client) {
			c.Send("USER app\r\n")
			c.Expect("+OK")
			c.Send("PASS " + pass + "\r\n")
		},
		"auth with initial response": func(c *relaytest.Client) {
			c.Send("AUTH PLAIN " + relaytest.Plain("app", pass) + "\r\n")
		},
		"auth with continuation": func(c *relaytest.Client) {
			c.Send("auth plain\r\n")
			c.Expect("+ ")
			c.Send(relaytest.Plain("app", pass) + "\r\n")
		},
	}
	for name, login := range tests {
		t.Run(name, func(t *testing.T) {
			h := start(t, "allow_insecure_auth = true")
			c := h.Dial(t)
			c.Expect("+OK ")
			login(c)
			c.Expect("+OK Logged in")
			// The fake Exchange echoes: what the client sends comes back.
			const sent = "UIDL\r\nRETR 1\r\n"
			c.Send(sent)
			c.Expect("UIDL")
			c.Expect("RETR 1")
			if h.Up.Dials() != 1 {
				t.Errorf("%d upstream logins, want 1", h.Up.Dials())
			}
			c.Close()
			relaytest.WaitForLog(t, h.Log, fmt.Sprintf("bytes_in=%d bytes_out=%d", len(sent), len(sent)))
			relaytest.CheckMetrics(t, h.Metrics, "pop3", relay.LoginOK, len(sent), len(sent))
		})
	}
}

func TestPipelinedAfterLogin(t *testing.T) {
	h := start(t, "allow_insecure_auth = true")
	c := h.Dial(t)
	c.Expect("+OK ")
	c.Send("USER app\r\nPASS " + pass + "\r\nSTAT\r\n")
	c.Expect("+OK")
	c.Expect("+OK Logged in")
	c.Expect("STAT")
}

func TestLoginFailures(t *testing.T) {
	tests := []struct {
		name    string
		pass    string
		fail    error
		answer  string
		dials   int
		log     string
		outcome string
	}{
		{"wrong password", "wrong", nil, "-ERR [AUTH] ", 0, "login=bad_credentials", relay.LoginRefused},
		{"mailbox refused upstream", pass, relaytest.Refused(), "-ERR [SYS/TEMP] ", 1, "Add-MailboxPermission", relay.UpstreamRefused},
		{"upstream down", pass, errors.New("dial tcp: connection refused"), "-ERR [SYS/TEMP] ", 1, "login=upstream_unavailable", relay.UpstreamDown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := start(t, "allow_insecure_auth = true")
			h.Up.Fail = tt.fail
			c := h.Dial(t)
			c.Expect("+OK ")
			c.Send("USER app\r\nPASS " + tt.pass + "\r\n")
			c.Expect("+OK")
			c.Expect(tt.answer)
			relaytest.CheckMetrics(t, h.Metrics, "pop3", tt.outcome, 0, 0)
			c.Send("QUIT\r\n")
			c.Expect("+OK")
			c.ExpectClosed()
			if h.Up.Dials() != tt.dials {
				t.Errorf("%d upstream logins, want %d", h.Up.Dials(), tt.dials)
			}
			relaytest.WaitForLog(t, h.Log, tt.log)
		})
	}
}

func TestTooManyFailedLogins(t *testing.T) {
	h := start(t, "allow_insecure_auth = true")
	c := h.Dial(t)
	c.Expect("+OK ")
	for range 3 {
		c.Send("AUTH PLAIN " + relaytest.Plain("app", "wrong") + "\r\n")
		c.Expect("-ERR [AUTH]")
	}
	c.ExpectClosed()
}

func TestPasswordsNeedTLS(t *testing.T) {
	h := start(t, "")
	c := h.Dial(t)
	c.Expect("+OK ")
	c.Send("CAPA\r\n")
	c.Expect("+OK")
	for _, want := range []string{"TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "."} {
		c.Expect(want)
	}
	c.Send("USER app\r\nAUTH PLAIN " + relaytest.Plain("app", pass) + "\r\n")
	c.Expect("-ERR [AUTH] Use STLS")
	c.Expect("-ERR [AUTH] Use STLS")
	if h.Up.Dials() != 0 {
		t.Error("the gateway went upstream without TLS")
	}
}

func TestSTLS(t *testing.T) {
	h := start(t, `tls = "starttls"`)
	c := h.Dial(t)
	c.Expect("+OK ")
	c.Send("CAPA\r\n")
	c.Expect("+OK")
	for _, want := range []string{"TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "STLS", "."} {
		c.Expect(want)
	}
	c.Send("STLS\r\n")
	c.Expect("+OK")
	c.StartTLS(h.ClientTLS)
	c.Send("USER app\r\nPASS " + pass + "\r\n")
	c.Expect("+OK")
	c.Expect("+OK Logged in")
}

// A command sent in plaintext behind STLS never runs.
func TestSTLSInjection(t *testing.T) {
	h := start(t, `tls = "starttls"`)
	c := h.Dial(t)
	c.Expect("+OK ")
	c.Send("STLS\r\nUSER app\r\nPASS " + pass + "\r\n")
	c.Expect("+OK")
	c.ExpectClosed()
	if h.Up.Dials() != 0 {
		t.Error("the injected login ran")
	}
}

func TestImplicitTLS(t *testing.T) {
	h := start(t, `tls = "implicit"`)
	c := h.Dial(t)
	c.StartTLS(h.ClientTLS)
	c.Expect("+OK ")
	c.Send("USER app\r\nPASS " + pass + "\r\n")
	c.Expect("+OK")
	c.Expect("+OK Logged in")
}

func TestLimits(t *testing.T) {
	h := start(t, "allow_insecure_auth = true")
	c := h.Dial(t)
	c.Expect("+OK ")
	c.Send("USER " + strings.Repeat("x", 5000) + "\r\n")
	c.Expect("-ERR Line too long")
	c.ExpectClosed()

	c = h.Dial(t)
	c.Expect("+OK ")
	for range 5 {
		c.Send("FROB\r\n")
		c.Expect("-ERR Command unknown")
	}
	c.Send("FROB\r\n")
	c.Expect("-ERR Too many errors")
	c.ExpectClosed()
}

// Secrets in any form stay out of the debug log (Serve's cleanup checks
// for the password).
func TestDebugLogRedacts(t *testing.T) {
	h := start(t, "allow_insecure_auth = true")
	c := h.Dial(t)
	c.Expect("+OK ")
	c.Send("PASS\t" + pass + "\r\nUSER app\r\nPASS " + pass + "x\r\n")
	c.Expect("-ERR")
	c.Expect("+OK")
	c.Expect("-ERR [AUTH]")
	c.Send("AUTH PLAIN\r\n")
	c.Expect("+ ")
	c.Send(relaytest.Plain("app", pass) + "\r\n")
	c.Expect("+OK Logged in")
	relaytest.WaitForLog(t, h.Log, "PASS <credentials>")
}
