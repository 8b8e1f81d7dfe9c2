package smtpserver

import (
	"fmt"
	"log/slog"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/smtpgw/smtpgw/internal/clients"
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
	if !s.srv.gate.HasAccounts() || !s.authAllowed() {
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

// Auth starts an AUTH exchange.
func (s *session) Auth(mech string) (sasl.Server, error) {
	s.abandonAuth()
	var err error
	switch {
	case !s.srv.gate.HasAccounts():
		err = errAuthUnavailable
	case !s.authAllowed():
		err = errAuthNeedsTLS
	}
	if err != nil {
		return nil, s.refuse(err)
	}
	a := &authExchange{s: s}
	switch mech {
	case mechPlain:
		a.inner = sasl.NewPlainServer(func(authz, username, password string) error {
			if authz != "" && authz != username {
				return s.srv.gate.Fail(s.conn, fmt.Errorf("%w: username %s asked for another authorization identity",
					clients.ErrBadCredentials, s.srv.gate.Loggable(username)))
			}
			return s.login(username, password)
		})
	case mechLogin:
		a.inner = &loginServer{authenticate: s.login}
	default:
		return nil, s.refuse(fmt.Errorf("%w: %q", errUnknownMechanism, mech))
	}
	s.mu.Lock()
	s.pending = a
	s.mu.Unlock()
	return a, nil
}

// login checks credentials through the gate and, on success, makes the
// account the session's identity. The gate counts the failures.
func (s *session) login(username, password string) error {
	id, err := s.srv.gate.Login(s.conn, username, password)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.user = id
	s.mu.Unlock()
	s.log.Info("authenticated", "identity", id.Name)
	return nil
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
	s.srv.metrics.authFailures.Inc()
	s.srv.gate.Fail(s.conn, errAuthAbandoned)
	s.log.Warn("authentication failed", "reason", errAuthAbandoned.Error())
}

// authExchange wraps a mechanism so that every failure reaches the client
// as a chosen reply, is logged and counted, and ends the connection once
// the client has failed too often. The gate's Login makes every checked
// failure take auth_min_duration.
type authExchange struct {
	inner sasl.Server
	s     *session
}

func (a *authExchange) Next(response []byte) ([]byte, bool, error) {
	challenge, done, err := a.inner.Next(response)
	if err == nil && !done {
		return challenge, false, nil
	}
	s := a.s
	s.mu.Lock()
	s.pending = nil
	s.mu.Unlock()
	if err == nil {
		return challenge, true, nil
	}
	if replyFor(err).err == nil {
		// The mechanism could not read the response: the gate never saw it.
		err = s.srv.gate.Fail(s.conn, fmt.Errorf("%w: %v", clients.ErrMalformed, err))
	}
	s.srv.metrics.authFailures.Inc()
	return nil, true, s.refuseLogged(slog.LevelWarn, "authentication failed", err)
}

// Compile-time check that session supports AUTH.
var _ smtp.AuthSession = (*session)(nil)
