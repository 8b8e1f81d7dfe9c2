package relay

import (
	"context"
	"errors"
	"net"
)

// ErrThrottled is what a Login returns (wrapped) when the client's address
// has failed too often: the front end answers it as a temporary refusal.
var ErrThrottled = errors.New("too many failed logins from this address")

// ErrUpstreamRefused is what a Dial returns (wrapped, with the admin step
// that fixes it) when Exchange refused the token or the mailbox: never
// answered like a wrong password, since applications disable accounts
// whose logins fail.
var ErrUpstreamRefused = errors.New("exchange refused the login")

// Backend is what a reading front end needs from the rest of the gateway.
type Backend struct {
	// Login checks a local password and returns the user's read_mailbox;
	// any error but ErrThrottled is a wrong password, unknown user or a
	// user without read_mailbox, and then nothing goes upstream.
	Login func(ctx context.Context, client net.Conn, user, pass string) (mailbox string, err error)
	// Dial logs in to Exchange as mailbox over protocol ("imap", "pop3")
	// and returns the connection past authentication with the upstream's
	// capabilities.
	Dial    func(ctx context.Context, protocol, mailbox string) (conn net.Conn, capabilities []string, err error)
	Metrics *Metrics
}

// Open checks the client's password, then logs in upstream, recording the
// outcome in s and the metrics. On success s.Login is LoginOK and conn is
// the upstream connection; otherwise s.Login says which failure the front
// end must answer.
func (b *Backend) Open(ctx context.Context, client net.Conn, s *Session, user, pass string) (conn net.Conn, capabilities []string) {
	s.User = user
	mailbox, err := b.Login(ctx, client, user, pass)
	switch {
	case errors.Is(err, ErrThrottled):
		s.Login = LoginThrottled
	case err != nil:
		s.Login = LoginRefused
	default:
		conn, capabilities, err = b.Dial(ctx, s.Protocol, mailbox)
		switch {
		case err == nil:
			s.Login, s.Mailbox = LoginOK, mailbox
		case errors.Is(err, ErrUpstreamRefused):
			s.Login, s.Mailbox, s.Err = UpstreamRefused, mailbox, err
		default:
			s.Login, s.Mailbox, s.Err = UpstreamDown, mailbox, err
		}
	}
	if b.Metrics != nil {
		b.Metrics.Login(s.Protocol, s.Login)
	}
	return conn, capabilities
}
