package smtpserver

import (
	"fmt"

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

// Auth starts an AUTH exchange.
func (s *session) Auth(mech string) (sasl.Server, error) {
	var err error
	switch {
	case !s.srv.ids.Load().hasAccounts():
		err = errAuthUnavailable
	case !s.authAllowed():
		err = errAuthNeedsTLS
	}
	if err != nil {
		return nil, s.refuse(err)
	}
	var inner sasl.Server
	switch mech {
	case mechPlain:
		inner = sasl.NewPlainServer(func(authz, username, password string) error {
			if authz != "" && authz != username {
				return fmt.Errorf("%w: username %q asked for authorization identity %q", errAuthFailed, username, authz)
			}
			return s.login(username, password)
		})
	case mechLogin:
		inner = &loginServer{authenticate: s.login}
	default:
		return nil, s.refuse(fmt.Errorf("%w: %q", errUnknownMechanism, mech))
	}
	return &authExchange{inner: inner, s: s}, nil
}

// login checks credentials and, on success, makes the account the
// session's identity.
func (s *session) login(username, password string) error {
	id, err := s.srv.ids.Load().authenticate(username, password)
	if err != nil {
		return fmt.Errorf("%w: username %q", err, username)
	}
	s.mu.Lock()
	s.user = id
	s.mu.Unlock()
	s.srv.log.Info("authenticated", "client", s.client, "identity", id.name)
	return nil
}

// authExchange wraps a mechanism so that every failure reaches the client
// as a chosen reply, is logged and counted, and ends the connection once
// the client has failed too often.
type authExchange struct {
	inner sasl.Server
	s     *session
}

func (a *authExchange) Next(response []byte) ([]byte, bool, error) {
	challenge, done, err := a.inner.Next(response)
	if err == nil {
		return challenge, done, nil
	}
	s := a.s
	if replyFor(err).err == nil {
		err = fmt.Errorf("%w: %v", errAuthMalformed, err)
	}
	s.srv.metrics.authFailures.Inc()
	s.srv.log.Warn("authentication failed", "client", s.client, "reason", err.Error())
	if limit := s.srv.cfg.Server.MaxAuthFailures; limit > 0 && s.conn.authFailed() >= limit {
		s.conn.closeAfterNextWrite()
		err = errTooManyAuthFailures
	}
	return nil, true, replyFor(err).smtp
}

// Compile-time check that session supports AUTH.
var _ smtp.AuthSession = (*session)(nil)
