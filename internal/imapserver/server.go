// Package imapserver is the IMAP front end: it speaks the commands before
// login itself (greeting, CAPABILITY, STARTTLS, ID, NOOP, LOGOUT, LOGIN,
// AUTHENTICATE PLAIN), checks the local password, logs in to Exchange as
// the user's read_mailbox and from then on relays bytes untouched.
package imapserver

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/smtpgw/smtpgw/internal/config"
	"github.com/smtpgw/smtpgw/internal/relay"
)

// idleAfterLogin is how long a logged-in session may be silent both ways:
// RFC 9051 §5.4 asks for at least 30 minutes, and IDLE clients renew
// every 29.
const idleAfterLogin = 30 * time.Minute

// Config is what an IMAP listener needs.
type Config struct {
	Listener        config.Listener
	TLS             func() *tls.Config // the certificate in use; nil for tls = "none"
	Limits          config.Limits      // idle_timeout, session_lifetime (before login), max_errors
	MaxAuthFailures int                // failed logins on one connection before it is closed
	Backend         *relay.Backend
	Logger          *slog.Logger
}

// Server serves IMAP connections of one listener.
type Server struct {
	cfg Config
}

// New returns a server for cfg.
func New(cfg Config) *Server { return &Server{cfg: cfg} }

// session is the state of one connection before login.
type session struct {
	*relay.Client
	srv          *Server
	log          *relay.Session
	errors       int
	authFailures int
}

// Serve runs one client connection to its end and closes it: until ctx
// is done (shutdown) or either side leaves. id names the connection in
// the log; debug, when not nil, receives the conversation before login.
func (s *Server) Serve(ctx context.Context, conn net.Conn, id string, debug *slog.Logger) {
	info := &relay.Session{ID: id, Protocol: config.ProtocolIMAP, Client: conn.RemoteAddr().String(), Start: time.Now()}
	if m := s.cfg.Backend.Metrics; m != nil {
		defer m.Opened(info.Protocol)()
	}
	defer info.Log(ctx, s.cfg.Logger)
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	deadline := info.Start.Add(s.cfg.Limits.SessionLifetime.D())
	isTLS := false
	if s.cfg.Listener.TLS == config.TLSImplicit {
		tconn := tls.Server(conn, s.cfg.TLS())
		hctx, cancel := context.WithDeadline(ctx, deadline)
		err := tconn.HandshakeContext(hctx)
		cancel()
		if err != nil {
			info.End = "TLS handshake failed"
			return
		}
		conn, isTLS = tconn, true
	}
	sess := &session{Client: relay.NewClient(conn, isTLS, s.cfg.Limits.IdleTimeout.D(), deadline, debug), srv: s, log: info}
	upstream, ok := sess.preLogin(ctx)
	if !ok {
		return
	}
	stop() // from here the relay ends on ctx itself
	client, pending := sess.HandOver()
	in, out := relay.Counter(nil), relay.Counter(nil)
	if m := s.cfg.Backend.Metrics; m != nil {
		in, out = m.Bytes(info.Protocol)
	}
	info.Relay = relay.Pipe(client, upstream, pending, max(idleAfterLogin, s.cfg.Limits.IdleTimeout.D()), ctx.Done(), in, out)
}

// preLogin answers commands until a login succeeds upstream (then it
// returns the upstream connection) or the session ends.
func (s *session) preLogin(ctx context.Context) (net.Conn, bool) {
	if s.Write("* OK [CAPABILITY "+s.capabilities()+"] IMAP gateway ready") != nil {
		s.log.End = "client closed"
		return nil, false
	}
	for {
		line, err := s.ReadLine(maxLine)
		if err != nil {
			s.log.End = s.readFailure(err)
			return nil, false
		}
		cmd, err := parseCommand(line, s)
		var syntax *errSyntax
		var tooLarge *errLiteralTooLarge
		switch {
		case errors.As(err, &syntax):
			s.Log("C", redactedLine(line))
			if !s.fail(syntax.tag + " BAD " + syntax.reason) {
				return nil, false
			}
			continue
		case errors.As(err, &tooLarge) && tooLarge.sync:
			s.Log("C", redactedLine(line))
			if !s.fail(tooLarge.tag + " NO [TOOBIG] Literal too large") {
				return nil, false
			}
			continue
		case errors.As(err, &tooLarge):
			s.Write("* BYE Literal too large")
			s.log.End = "literal too large"
			return nil, false
		case err != nil:
			s.log.End = s.readFailure(err)
			return nil, false
		}
		s.Log("C", cmd.redacted())
		upstream, next := s.execute(ctx, cmd)
		if upstream != nil || !next {
			return upstream, upstream != nil
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

// readFailure answers a failed read where an answer helps, and says how
// the session ended.
func (s *session) readFailure(err error) string {
	switch {
	case errors.Is(err, relay.ErrLineTooLong):
		s.Write("* BYE Line too long")
		return "line too long"
	case errors.Is(err, os.ErrDeadlineExceeded):
		s.Write("* BYE Idle for too long")
		return "idle timeout"
	}
	return "client closed"
}

// fail sends an error answer and counts it; past max_errors the session
// ends (false).
func (s *session) fail(answer string) bool {
	s.errors++
	if s.Write(answer) != nil {
		s.log.End = "client closed"
		return false
	}
	if s.errors >= s.srv.cfg.Limits.MaxErrors {
		s.Write("* BYE Too many errors")
		s.log.End = "too many errors"
		return false
	}
	return true
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
		if s.srv.cfg.Listener.TLS != config.TLSStartTLS || s.TLS() {
			return nil, s.fail(cmd.tag + " BAD STARTTLS not available")
		}
		if !ok("Begin TLS negotiation now") {
			return nil, false
		}
		if err := s.StartTLS(ctx, s.srv.cfg.TLS()); err != nil {
			s.log.End = "TLS handshake failed"
			return nil, false
		}
		return nil, true
	case "LOGIN":
		if len(cmd.args) != 2 {
			return nil, s.fail(cmd.tag + " BAD LOGIN needs a user name and a password")
		}
		return s.login(ctx, cmd.tag, cmd.args[0], cmd.args[1])
	case "AUTHENTICATE":
		return s.authenticate(ctx, cmd)
	}
	return nil, s.fail(cmd.tag + " BAD Command unknown or not allowed before login")
}

// capabilities lists what the client may use before login.
func (s *session) capabilities() string {
	caps := []string{"IMAP4rev1", "ID", "LITERAL+", "SASL-IR"}
	if s.srv.cfg.Listener.TLS == config.TLSStartTLS && !s.TLS() {
		caps = append(caps, "STARTTLS")
	}
	if s.loginAllowed() {
		caps = append(caps, "AUTH=PLAIN")
	} else {
		caps = append(caps, "LOGINDISABLED")
	}
	return strings.Join(caps, " ")
}

// loginAllowed: passwords travel only under TLS, unless the listener says
// otherwise (allow_insecure_auth).
func (s *session) loginAllowed() bool {
	return s.TLS() || s.srv.cfg.Listener.AllowInsecureAuth
}

// login checks the password, logs in upstream and answers the client.
func (s *session) login(ctx context.Context, tag, user, pass string) (net.Conn, bool) {
	if !s.loginAllowed() {
		return nil, s.fail(tag + " NO [PRIVACYREQUIRED] Use STARTTLS before logging in")
	}
	upstream, caps := s.srv.cfg.Backend.Open(ctx, s.Conn(), s.log, user, pass)
	switch s.log.Login {
	case relay.LoginOK:
		code := ""
		if caps := clientCapabilities(caps); caps != "" {
			code = "[CAPABILITY " + caps + "] "
		}
		if s.Write(tag+" OK "+code+"Logged in") != nil {
			upstream.Close()
			s.log.End = "client closed"
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
	s.authFailures++
	if s.authFailures >= s.srv.cfg.MaxAuthFailures {
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
