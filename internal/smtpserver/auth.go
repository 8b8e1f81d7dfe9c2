package smtpserver

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// SASL mechanism names.
const (
	mechPlain = sasl.Plain
	mechLogin = sasl.Login
)

// Prompts of the LOGIN mechanism. They are not standardised, but printers
// that wait for a challenge expect exactly these.
var (
	loginUsernamePrompt = []byte("Username:")
	loginPasswordPrompt = []byte("Password:")
)

// loginServer is the server side of the LOGIN mechanism, which go-sasl no
// longer ships. Clients either send the username with the AUTH command
// ("AUTH LOGIN dXNlcg==") or wait for the "Username:" challenge; both then
// answer the "Password:" challenge.
type loginServer struct {
	authenticate func(username, password string) error
	step         int
	username     string
}

const (
	loginStart = iota
	loginWantUsername
	loginWantPassword
	loginDone
)

func (l *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch l.step {
	case loginStart:
		if response == nil {
			l.step = loginWantUsername
			return loginUsernamePrompt, false, nil
		}
		l.username = string(response)
		l.step = loginWantPassword
		return loginPasswordPrompt, false, nil
	case loginWantUsername:
		l.username = string(response)
		l.step = loginWantPassword
		return loginPasswordPrompt, false, nil
	case loginWantPassword:
		l.step = loginDone
		return nil, true, l.authenticate(l.username, string(response))
	}
	return nil, true, sasl.ErrUnexpectedClientResponse
}

// AuthMechanisms lists the mechanisms advertised in EHLO: none when no
// account exists, or when the connection is not encrypted and the listener
// does not allow insecure AUTH.
func (s *session) AuthMechanisms() []string {
	if !s.srv.ids.Load().hasAccounts() || !s.authAllowed() {
		return nil
	}
	return []string{mechPlain, mechLogin}
}

// authAllowed reports whether AUTH may run on this connection. go-smtp is
// told to allow AUTH everywhere so that this decision, and its reply code,
// stay here.
func (s *session) authAllowed() bool {
	return s.tls || s.lis.cfg.AllowInsecureAuth
}

// maxUsername bounds a username; longer ones are refused unchecked.
const maxUsername = 256

// Auth starts an AUTH exchange.
func (s *session) Auth(mech string) (sasl.Server, error) {
	s.abandonAuth()
	var err error
	switch {
	case !s.srv.ids.Load().hasAccounts():
		err = errAuthUnavailable
	case !s.authAllowed():
		err = errAuthNeedsTLS
	case s.srv.authThrottled(s.addr):
		// Like every AUTH answer, the refusal takes auth_min_duration.
		s.conn.pause(s.srv.settings.Load().AuthMinDuration.D())
		err = errAuthThrottled
	}
	if err != nil {
		return nil, s.refuse(err)
	}
	var inner sasl.Server
	switch mech {
	case mechPlain:
		inner = sasl.NewPlainServer(func(authz, username, password string) error {
			if authz != "" && authz != username {
				return fmt.Errorf("%w: username %s asked for another authorization identity", errAuthFailed, s.loggable(username))
			}
			return s.login(username, password)
		})
	case mechLogin:
		inner = &loginServer{authenticate: s.login}
	default:
		return nil, s.refuse(fmt.Errorf("%w: %q", errUnknownMechanism, mech))
	}
	a := &authExchange{inner: inner, s: s}
	s.mu.Lock()
	s.pending = a
	s.mu.Unlock()
	return a, nil
}

// loggable names a username for the log: only an account's name is shown,
// since a client that mixes up its fields may have sent its password there.
func (s *session) loggable(username string) string {
	if s.srv.ids.Load().known(username) {
		return fmt.Sprintf("%q", username)
	}
	return fmt.Sprintf("(unknown, %d bytes, not logged)", len(username))
}

// login checks credentials and, on success, makes the account the
// session's identity. The check waits its turn in the server's pool.
func (s *session) login(username, password string) error {
	if len(username) > maxUsername || hasControl(username) {
		return fmt.Errorf("%w: username of %d bytes or with control characters", errAuthMalformed, len(username))
	}
	var id *identity
	var err error
	ran := s.srv.limits.checks.run(s.addr, s.srv.settings.Load().AuthWorkers, s.conn.closed, func() {
		id, err = s.srv.ids.Load().authenticate(username, password)
	})
	if !ran {
		return fmt.Errorf("%w: connection closed while waiting for the check", errAuthFailed)
	}
	if err != nil {
		return fmt.Errorf("%w: username %s", err, s.loggable(username))
	}
	s.mu.Lock()
	s.user = id
	s.mu.Unlock()
	s.log.Info("authenticated", "identity", id.name)
	return nil
}

// authFailed counts a failed, malformed or abandoned AUTH against the
// client's address and network, and against the connection.
func (s *session) authFailed() (tooMany bool) {
	s.srv.metrics.authFailures.Inc()
	s.srv.authFailed(s.addr)
	limit := s.srv.cfg.Server.MaxAuthFailures
	return limit > 0 && s.conn.authFailed() >= limit
}

// abandonAuth counts an exchange the client left unfinished (cancelled
// with "*", or broken off) as a failure: otherwise cancelling would be a
// free way to probe.
func (s *session) abandonAuth() {
	s.mu.Lock()
	a := s.pending
	s.pending = nil
	s.mu.Unlock()
	if a == nil {
		return
	}
	s.authFailed()
	s.log.Warn("authentication failed", "reason", "exchange abandoned by the client")
}

// authExchange wraps a mechanism so that every answer takes at least
// auth_min_duration, and every failure reaches the client as a chosen
// reply, is logged and counted, and ends the connection once the client
// has failed too often.
type authExchange struct {
	inner sasl.Server
	s     *session
}

func (a *authExchange) Next(response []byte) ([]byte, bool, error) {
	start := time.Now()
	challenge, done, err := a.inner.Next(response)
	if err == nil && !done {
		return challenge, false, nil
	}
	s := a.s
	s.mu.Lock()
	s.pending = nil
	s.mu.Unlock()
	// Unknown users, cheap hashes and wrong passwords answer alike.
	s.conn.pause(time.Until(start.Add(s.srv.settings.Load().AuthMinDuration.D())))
	if err == nil {
		return challenge, true, nil
	}
	if replyFor(err).err == nil {
		err = fmt.Errorf("%w: %v", errAuthMalformed, err)
	}
	if s.authFailed() {
		err = fmt.Errorf("%w: %v", errTooManyAuthFailures, err)
	}
	return nil, true, s.refuseLogged(slog.LevelWarn, "authentication failed", err)
}

// Compile-time check that session supports AUTH.
var _ smtp.AuthSession = (*session)(nil)
