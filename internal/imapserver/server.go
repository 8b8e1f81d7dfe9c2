// Package imapserver is the IMAP front end: it speaks the commands before
// login itself (greeting, CAPABILITY, STARTTLS, ID, NOOP, LOGOUT, LOGIN,
// AUTHENTICATE PLAIN), checks the local password, logs in to Exchange as
// the user's read_mailbox and from then on relays bytes untouched.
package imapserver

import (
	"context"
	"errors"
	"net"
	"strings"
	"time"

	"github.com/smtpgw/smtpgw/internal/config"
	"github.com/smtpgw/smtpgw/internal/relay"
)

// idleAfterLogin is how long a logged-in session may be silent both ways:
// RFC 9051 §5.4 asks for at least 30 minutes, and IDLE clients renew
// every 29.
const idleAfterLogin = 30 * time.Minute

// New returns the front end of the IMAP listener f describes.
func New(f relay.Frontend) *relay.Frontend {
	f.Protocol, f.Goodbye = config.ProtocolIMAP, "* BYE "
	f.Refusal = "* BYE [UNAVAILABLE] Too many connections; try again later"
	f.Greeting = func(c *relay.Client) string {
		return "* OK [CAPABILITY " + capabilities(c) + "] IMAP gateway ready"
	}
	f.MaxLine, f.IdleAfterLogin = maxLine, idleAfterLogin
	f.NewHandler = func(c *relay.Client) relay.Handler { return (&session{c}).command }
	f.Replies = relay.LoginReplies{
		OK: func(upstream []string) string {
			if caps := clientCapabilities(upstream); caps != "" {
				return " OK [CAPABILITY " + caps + "] Logged in"
			}
			return " OK Logged in"
		},
		No:          " NO ",
		Bad:         " BAD ",
		Refused:     "[AUTHENTICATIONFAILED] ",
		Unavailable: "[UNAVAILABLE] ",
		Cancelled:   "AUTHENTICATE cancelled",
		Bye:         "* BYE Too many failed logins",
	}
	return &f
}

// session is the state of one connection before login.
type session struct {
	*relay.Client
}

// command answers one command line.
func (s *session) command(ctx context.Context, line []byte) (upstream net.Conn, next bool) {
	cmd, err := parseCommand(line, s)
	var syntax *errSyntax
	var tooLarge *errLiteralTooLarge
	switch {
	case errors.As(err, &syntax):
		s.Log("C", redactedLine(line))
		return nil, s.Fail(syntax.tag + " BAD " + syntax.reason)
	case errors.As(err, &tooLarge) && tooLarge.sync:
		s.Log("C", redactedLine(line))
		return nil, s.Fail(tooLarge.tag + " NO [TOOBIG] Literal too large")
	case errors.As(err, &tooLarge):
		s.Write("* BYE Literal too large")
		s.End("literal too large")
		return nil, false
	case err != nil:
		s.ReadFailed(err)
		return nil, false
	}
	s.Log("C", cmd.redacted())
	return s.execute(ctx, cmd)
}

// literal reads one literal for the parser.
func (s *session) literal(n int, sync bool) (data, next []byte, err error) {
	if sync {
		if err := s.Write("+ Ready for literal data"); err != nil {
			return nil, nil, err
		}
	}
	data = make([]byte, n)
	if err := s.ReadFull(data); err != nil {
		return nil, nil, err
	}
	next, err = s.ReadLine(maxLine)
	return data, next, err
}

// execute answers one command. It returns the upstream connection after
// a successful login, and next = false when the session must end.
func (s *session) execute(ctx context.Context, cmd *command) (upstream net.Conn, next bool) {
	ok := func(text string) bool { return s.Write(cmd.tag+" OK "+text) == nil }
	switch cmd.name {
	case "CAPABILITY":
		return nil, s.Write("* CAPABILITY "+capabilities(s.Client)) == nil && ok("CAPABILITY completed")
	case "NOOP":
		return nil, ok("NOOP completed")
	case "ID":
		return nil, s.Write("* ID NIL") == nil && ok("ID completed")
	case "LOGOUT":
		s.Write("* BYE Logging out")
		ok("LOGOUT completed")
		s.End("logout")
		return nil, false
	case "STARTTLS":
		if !s.StartTLSOffered() {
			return nil, s.Fail(cmd.tag + " BAD STARTTLS not available")
		}
		if !ok("Begin TLS negotiation now") {
			return nil, false
		}
		return nil, s.StartTLS(ctx) == nil
	case "LOGIN":
		if len(cmd.args) != 2 {
			return nil, s.Fail(cmd.tag + " BAD LOGIN needs a user name and a password")
		}
		if !s.LoginAllowed() {
			return nil, s.Fail(cmd.tag + " NO [PRIVACYREQUIRED] Use STARTTLS before logging in")
		}
		return s.Login(ctx, cmd.tag, cmd.args[0], cmd.args[1])
	case "AUTHENTICATE":
		return s.authenticate(ctx, cmd)
	}
	return nil, s.Fail(cmd.tag + " BAD Command unknown or not allowed before login")
}

// capabilities lists what c may use before login.
func capabilities(c *relay.Client) string {
	caps := []string{"IMAP4rev1", "ID", "LITERAL+", "SASL-IR"}
	if c.StartTLSOffered() {
		caps = append(caps, "STARTTLS")
	}
	if c.LoginAllowed() {
		caps = append(caps, "AUTH=PLAIN")
	} else {
		caps = append(caps, "LOGINDISABLED")
	}
	return strings.Join(caps, " ")
}

// clientCapabilities is the upstream's capability list without what
// concerns authentication, which is over for this client.
func clientCapabilities(upstream []string) string {
	var caps []string
	for _, c := range upstream {
		u := strings.ToUpper(c)
		if strings.HasPrefix(u, "AUTH=") || u == "SASL-IR" || u == "LOGINDISABLED" || u == "STARTTLS" {
			continue
		}
		caps = append(caps, c)
	}
	return strings.Join(caps, " ")
}
