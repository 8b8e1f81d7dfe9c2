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

	"github.com/smtpgw/smtpgw/internal/clients"
	"github.com/smtpgw/smtpgw/internal/config"
	"github.com/smtpgw/smtpgw/internal/relay"
)

// maxLine bounds a command line: RFC 2449 allows 255 octets, an AUTH
// PLAIN initial response needs more.
const maxLine = 4 << 10

// idleAfterLogin is how long a logged-in session may be silent both ways:
// RFC 1939 asks for an autologout timer of at least 10 minutes.
const idleAfterLogin = 10 * time.Minute

// Server serves POP3 connections of one listener.
type Server struct {
	f *relay.Frontend
}

// New returns a server for the listener f describes.
func New(f relay.Frontend) *Server {
	f.Protocol, f.Goodbye = config.ProtocolPOP3, "-ERR "
	return &Server{f: &f}
}

// session is the state of one connection before login.
type session struct {
	*relay.Client
	f    *relay.Frontend
	log  *relay.Session
	user string // given by USER, waiting for PASS
}

// Accept serves the connections of ln until it is closed, then waits for
// their sessions, which end when ctx is done.
func (s *Server) Accept(ctx context.Context, ln net.Listener) {
	s.f.Accept(ctx, ln, "-ERR [SYS/TEMP] Too many connections; try again later", s.Serve)
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
	if s.Write("+OK POP3 gateway ready") != nil {
		return nil
	}
	for {
		line, err := s.ReadLine(maxLine)
		if err != nil {
			s.ReadFailed(err)
			return nil
		}
		verb, arg, _ := strings.Cut(string(line), " ")
		verb = strings.ToUpper(verb)
		s.Log("C", redacted(verb, arg))
		upstream, next := s.execute(ctx, verb, arg)
		if upstream != nil || !next {
			return upstream
		}
	}
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
		return nil, s.writeLines(append([]string{"+OK Capability list follows"}, s.capabilities()...))
	case "NOOP":
		return nil, s.Write("+OK") == nil
	case "QUIT":
		s.Write("+OK Bye")
		s.log.End = "logout"
		return nil, false
	case "STLS":
		if !s.f.StartTLSOffered(s.Client) {
			return nil, s.Fail("-ERR STLS not available")
		}
		if s.Write("+OK Begin TLS negotiation") != nil {
			return nil, false
		}
		if err := s.StartTLS(ctx, s.f.TLS()); err != nil {
			s.log.End = "TLS handshake failed"
			return nil, false
		}
		return nil, true
	case "USER":
		if !s.f.LoginAllowed(s.Client) {
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
		return s.login(ctx, user, arg)
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

// capabilities lists what the client may use: before login, and after,
// what every Exchange offers.
func (s *session) capabilities() []string {
	caps := []string{"TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE"}
	if s.f.StartTLSOffered(s.Client) {
		caps = append(caps, "STLS")
	}
	if s.f.LoginAllowed(s.Client) {
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
	if !s.f.LoginAllowed(s.Client) {
		return nil, s.Fail("-ERR [AUTH] Use STLS before logging in")
	}
	response, cancelled, err := s.PlainResponse(response, hasResponse)
	switch {
	case err != nil:
		s.ReadFailed(err)
		return nil, false
	case cancelled:
		return nil, s.Fail("-ERR Authentication cancelled")
	}
	user, pass, ok := relay.DecodePlain(response)
	if !ok {
		return nil, s.Fail("-ERR Invalid PLAIN response")
	}
	return s.login(ctx, user, pass)
}

// login checks the password, logs in upstream and answers the client.
func (s *session) login(ctx context.Context, user, pass string) (net.Conn, bool) {
	upstream, _, closeNow := s.f.Backend.Open(ctx, s.Client, user, pass)
	switch s.log.Login {
	case relay.LoginOK:
		if s.Write("+OK Logged in") != nil {
			upstream.Close()
			return nil, false
		}
		return upstream, true
	case relay.LoginRefused:
		s.Write("-ERR [AUTH] Authentication failed")
	case relay.LoginThrottled:
		s.Write("-ERR [SYS/TEMP] Too many failed logins; try again later")
	case relay.UpstreamRefused:
		s.Write("-ERR [SYS/TEMP] The mailbox cannot be opened now; the administrator finds why in the gateway's log")
	default:
		s.Write("-ERR [SYS/TEMP] Exchange Online cannot be reached now; try again later")
	}
	if closeNow {
		s.log.End = "too many failed logins"
		return nil, false
	}
	return nil, true
}
