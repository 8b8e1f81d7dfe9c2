// Package pop3server is the POP3 front end: it speaks the commands before
// login itself (greeting, CAPA, STLS, NOOP, QUIT, USER/PASS, AUTH PLAIN),
// checks the local password, logs in to Exchange as the user's
// read_mailbox and from then on relays bytes untouched.
package pop3server

import (
	"context"
	"net"
	"strings"
	"time"

	"github.com/smtpgw/smtpgw/internal/config"
	"github.com/smtpgw/smtpgw/internal/relay"
)

// maxLine bounds a command line: RFC 2449 allows 255 octets, an AUTH
// PLAIN initial response needs more.
const maxLine = 4 << 10

// idleAfterLogin is how long a logged-in session may be silent both ways:
// RFC 1939 asks for an autologout timer of at least 10 minutes.
const idleAfterLogin = 10 * time.Minute

// New returns the front end of the POP3 listener f describes.
func New(f relay.Frontend) *relay.Frontend {
	f.Protocol, f.Goodbye = config.ProtocolPOP3, "-ERR "
	f.Refusal = "-ERR [SYS/TEMP] Too many connections; try again later"
	f.Greeting = func(*relay.Client) string { return "+OK POP3 gateway ready" }
	f.MaxLine, f.IdleAfterLogin = maxLine, idleAfterLogin
	f.NewHandler = func(c *relay.Client) relay.Handler { return (&session{Client: c}).command }
	f.Replies = relay.LoginReplies{
		OK:          func([]string) string { return "+OK Logged in" },
		No:          "-ERR ",
		Bad:         "-ERR ",
		Refused:     "[AUTH] ",
		Unavailable: "[SYS/TEMP] ",
		Cancelled:   "Authentication cancelled",
	}
	return &f
}

// session is the state of one connection before login.
type session struct {
	*relay.Client
	user string // given by USER, waiting for PASS
}

// command answers one command line.
func (s *session) command(ctx context.Context, line []byte) (upstream net.Conn, next bool) {
	verb, arg, _ := strings.Cut(string(line), " ")
	verb = strings.ToUpper(verb)
	s.Log("C", redacted(verb, arg))
	return s.execute(ctx, verb, arg)
}

// redacted is a command as the debug log shows it: PASS and AUTH without
// their secrets, an unknown command by its name only.
func redacted(verb, arg string) string {
	switch verb {
	case "PASS":
		return "PASS <credentials>"
	case "AUTH":
		if mech, _, ok := strings.Cut(arg, " "); ok {
			return "AUTH " + mech + " <credentials>"
		}
		return "AUTH " + arg
	case "USER", "CAPA", "STLS", "NOOP", "QUIT":
		return strings.TrimSpace(verb + " " + arg)
	}
	// A client that sends "PASS\tsecret" must not see it logged either.
	if end := strings.IndexFunc(verb, func(r rune) bool { return r < 'A' || r > 'Z' }); end >= 0 {
		return verb[:end] + " …"
	}
	return verb[:min(len(verb), 16)] + " …"
}

// execute answers one command. It returns the upstream connection after
// a successful login, and next = false when the session must end.
func (s *session) execute(ctx context.Context, verb, arg string) (upstream net.Conn, next bool) {
	user := s.user
	s.user = "" // PASS must follow USER at once
	switch verb {
	case "CAPA":
		return nil, s.writeLines(append([]string{"+OK Capability list follows"}, capabilities(s.Client)...))
	case "NOOP":
		return nil, s.Write("+OK") == nil
	case "QUIT":
		s.Write("+OK Bye")
		s.End("logout")
		return nil, false
	case "STLS":
		if !s.StartTLSOffered() {
			return nil, s.Fail("-ERR STLS not available")
		}
		if s.Write("+OK Begin TLS negotiation") != nil {
			return nil, false
		}
		return nil, s.StartTLS(ctx) == nil
	case "USER":
		if !s.LoginAllowed() {
			return nil, s.Fail("-ERR [AUTH] Use STLS before logging in")
		}
		if arg == "" {
			return nil, s.Fail("-ERR USER needs a name")
		}
		s.user = arg
		return nil, s.Write("+OK Send the password") == nil
	case "PASS":
		if user == "" {
			return nil, s.Fail("-ERR USER first")
		}
		return s.Login(ctx, "", user, arg)
	case "AUTH":
		return s.auth(ctx, arg)
	}
	return nil, s.Fail("-ERR Command unknown or not allowed before login")
}

// writeLines sends a multi-line answer and its terminating dot.
func (s *session) writeLines(lines []string) bool {
	for _, l := range append(lines, ".") {
		if s.Write(l) != nil {
			return false
		}
	}
	return true
}

// capabilities lists what c may use: before login, and after, what every
// Exchange offers.
func capabilities(c *relay.Client) []string {
	caps := []string{"TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE"}
	if c.StartTLSOffered() {
		caps = append(caps, "STLS")
	}
	if c.LoginAllowed() {
		caps = append(caps, "USER", "SASL PLAIN")
	}
	return caps
}

// auth runs AUTH: without a mechanism it lists them; PLAIN takes its
// response on the command line or after a continuation.
func (s *session) auth(ctx context.Context, arg string) (net.Conn, bool) {
	if arg == "" {
		return nil, s.writeLines([]string{"+OK", "PLAIN"})
	}
	mech, response, hasResponse := strings.Cut(arg, " ")
	if !strings.EqualFold(mech, "PLAIN") {
		return nil, s.Fail("-ERR Unsupported mechanism; use PLAIN or USER and PASS")
	}
	if !s.LoginAllowed() {
		return nil, s.Fail("-ERR [AUTH] Use STLS before logging in")
	}
	return s.AuthPlain(ctx, "", response, hasResponse)
}
