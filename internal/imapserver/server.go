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

	"github.com/smtpgw/smtpgw/internal/clients"
	"github.com/smtpgw/smtpgw/internal/config"
	"github.com/smtpgw/smtpgw/internal/relay"
)

// idleAfterLogin is how long a logged-in session may be silent both ways:
// RFC 9051 §5.4 asks for at least 30 minutes, and IDLE clients renew
// every 29.
const idleAfterLogin = 30 * time.Minute

// Server serves IMAP connections of one listener.
type Server struct {
	f *relay.Frontend
}

// New returns a server for the listener f describes.
func New(f relay.Frontend) *Server {
	f.Protocol, f.Goodbye = config.ProtocolIMAP, "* BYE "
	return &Server{f: &f}
}

// session is the state of one connection before login.
type session struct {
	*relay.Client
	f   *relay.Frontend
	log *relay.Session
}

// Accept serves the connections of ln until it is closed, then waits for
// their sessions, which end when ctx is done.
func (s *Server) Accept(ctx context.Context, ln net.Listener) {
	s.f.Accept(ctx, ln, "* BYE [UNAVAILABLE] Too many connections; try again later", s.Serve)
}

// Serve runs one admitted connection to its end and closes it: until ctx
// is done (shutdown) or either side leaves.
func (s *Server) Serve(ctx context.Context, c *clients.Conn) {
	s.f.Serve(ctx, c, idleAfterLogin, func(ctx context.Context, client *relay.Client, info *relay.Session) net.Conn {
		return (&session{Client: client, f: s.f, log: info}).preLogin(ctx)
	})
}

// preLogin answers commands until a login succeeds upstream (then it
// returns the upstream connection) or the session ends.
func (s *session) preLogin(ctx context.Context) net.Conn {
	if s.Write("* OK [CAPABILITY "+s.capabilities()+"] IMAP gateway ready") != nil {
		return nil
	}
	for {
		line, err := s.ReadLine(maxLine)
		if err != nil {
			s.ReadFailed(err)
			return nil
		}
		cmd, err := parseCommand(line, s)
		var syntax *errSyntax
		var tooLarge *errLiteralTooLarge
		switch {
		case errors.As(err, &syntax):
			s.Log("C", redactedLine(line))
			if !s.Fail(syntax.tag + " BAD " + syntax.reason) {
				return nil
			}
			continue
		case errors.As(err, &tooLarge) && tooLarge.sync:
			s.Log("C", redactedLine(line))
			if !s.Fail(tooLarge.tag + " NO [TOOBIG] Literal too large") {
				return nil
			}
			continue
		case errors.As(err, &tooLarge):
			s.Write("* BYE Literal too large")
			s.log.End = "literal too large"
			return nil
		case err != nil:
			s.ReadFailed(err)
			return nil
		}
		s.Log("C", cmd.redacted())
		upstream, next := s.execute(ctx, cmd)
		if upstream != nil || !next {
			return upstream
		}
	}
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
		return nil, s.Write("* CAPABILITY "+s.capabilities()) == nil && ok("CAPABILITY completed")
	case "NOOP":
		return nil, ok("NOOP completed")
	case "ID":
		return nil, s.Write("* ID NIL") == nil && ok("ID completed")
	case "LOGOUT":
		s.Write("* BYE Logging out")
		ok("LOGOUT completed")
		s.log.End = "logout"
		return nil, false
	case "STARTTLS":
		if !s.f.StartTLSOffered(s.Client) {
			return nil, s.Fail(cmd.tag + " BAD STARTTLS not available")
		}
		if !ok("Begin TLS negotiation now") {
			return nil, false
		}
		if err := s.StartTLS(ctx, s.f.TLS()); err != nil {
			s.log.End = "TLS handshake failed"
			return nil, false
		}
		return nil, true
	case "LOGIN":
		if len(cmd.args) != 2 {
			return nil, s.Fail(cmd.tag + " BAD LOGIN needs a user name and a password")
		}
		return s.login(ctx, cmd.tag, cmd.args[0], cmd.args[1])
	case "AUTHENTICATE":
		return s.authenticate(ctx, cmd)
	}
	return nil, s.Fail(cmd.tag + " BAD Command unknown or not allowed before login")
}

// capabilities lists what the client may use before login.
func (s *session) capabilities() string {
	caps := []string{"IMAP4rev1", "ID", "LITERAL+", "SASL-IR"}
	if s.f.StartTLSOffered(s.Client) {
		caps = append(caps, "STARTTLS")
	}
	if s.f.LoginAllowed(s.Client) {
		caps = append(caps, "AUTH=PLAIN")
	} else {
		caps = append(caps, "LOGINDISABLED")
	}
	return strings.Join(caps, " ")
}

// login checks the password, logs in upstream and answers the client.
func (s *session) login(ctx context.Context, tag, user, pass string) (net.Conn, bool) {
	if !s.f.LoginAllowed(s.Client) {
		return nil, s.Fail(tag + " NO [PRIVACYREQUIRED] Use STARTTLS before logging in")
	}
	upstream, caps, closeNow := s.f.Backend.Open(ctx, s.Client, user, pass)
	switch s.log.Login {
	case relay.LoginOK:
		code := ""
		if caps := clientCapabilities(caps); caps != "" {
			code = "[CAPABILITY " + caps + "] "
		}
		if s.Write(tag+" OK "+code+"Logged in") != nil {
			upstream.Close()
			return nil, false
		}
		return upstream, true
	case relay.LoginRefused:
		s.Write(tag + " NO [AUTHENTICATIONFAILED] Authentication failed")
	case relay.LoginThrottled:
		s.Write(tag + " NO [UNAVAILABLE] Too many failed logins; try again later")
	case relay.UpstreamRefused:
		s.Write(tag + " NO [UNAVAILABLE] The mailbox cannot be opened now; the administrator finds why in the gateway's log")
	default:
		s.Write(tag + " NO [UNAVAILABLE] Exchange Online cannot be reached now; try again later")
	}
	if closeNow {
		s.Write("* BYE Too many failed logins")
		s.log.End = "too many failed logins"
		return nil, false
	}
	return nil, true
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
