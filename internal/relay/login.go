package relay

import (
	"context"
	"errors"
	"net"

	"github.com/smtpgw/smtpgw/internal/clients"
)

// ErrUpstreamRefused is what a Dial returns (wrapped, with the admin step
// that fixes it) when Exchange refused the token or the mailbox: never
// answered like a wrong password, since applications disable accounts
// whose logins fail.
var ErrUpstreamRefused = errors.New("exchange refused the login")

// ErrCredentialRefused is what a Dial returns (wrapped) when Entra ID
// refused the gateway's credential, so that no token could be had. The
// gateway's upstream-down state, which sending shares, says so once per
// change: the session does not log it again.
var ErrCredentialRefused = errors.New("entra ID refused the gateway's credential")

// errNoReadRight is a correct password of a user without read_mailbox:
// answered as a failed login, logged so that the admin sees why.
var errNoReadRight = errors.New("the user has no read_mailbox: it may send, not read")

// Backend is what a reading front end needs from the rest of the gateway.
type Backend struct {
	// Gate checks local passwords: the same identities, bcrypt pool,
	// fixed-time answers and guessing throttle as SMTP AUTH.
	Gate *clients.Gate
	// Dial logs in to Exchange as mailbox over protocol ("imap", "pop3")
	// and returns the connection past authentication with the upstream's
	// capabilities.
	Dial    func(ctx context.Context, protocol, mailbox string) (conn net.Conn, capabilities []string, err error)
	Metrics *Metrics
}

// Open checks the client's password, then logs in upstream, recording the
// outcome in the client's session s and the metrics. On success s.Login is
// LoginOK and conn is the upstream connection; otherwise s.Login says which
// failure the front end must answer, and closeNow that the connection must
// end after the answer (max_auth_failures failed logins on it, as the gate
// counts them). Nothing goes upstream unless the password was right and
// the user may read.
func (b *Backend) Open(ctx context.Context, client *Client, user, pass string) (conn net.Conn, capabilities []string, closeNow bool) {
	s, c := client.info, client.admitted
	s.User = b.Gate.Loggable(user)
	id, err := b.Gate.Login(c, user, pass)
	switch {
	case errors.Is(err, clients.ErrThrottled):
		s.Login = LoginThrottled
	case err != nil:
		s.Login = LoginRefused
	case id.ReadMailbox == "":
		s.Login = LoginRefused
		c.Log().Warn(s.Protocol+" login refused", "user", s.User, "error", errNoReadRight)
		err = b.Gate.FailOnConnection(c, errNoReadRight)
	default:
		s.Mailbox = id.ReadMailbox
		conn, capabilities, err = b.Dial(ctx, s.Protocol, id.ReadMailbox)
		switch {
		case err == nil:
			s.Login = LoginOK
		case errors.Is(err, ErrCredentialRefused):
			s.Login = UpstreamDown
			c.Log().Debug(s.Protocol+" login failed: no token for Exchange Online", "user", s.User, "mailbox", s.Mailbox, "error", err)
		case errors.Is(err, ErrUpstreamRefused):
			// At once, not when the session ends: an admin must act.
			s.Login = UpstreamRefused
			c.Log().Error(s.Protocol+" login refused by Exchange Online", "user", s.User, "mailbox", s.Mailbox, "error", err)
		default:
			s.Login = UpstreamDown
			c.Log().Warn(s.Protocol+" login failed: Exchange Online unavailable", "user", s.User, "mailbox", s.Mailbox, "error", err)
		}
		if err != nil {
			// The password was right: the failure counts toward
			// max_auth_failures, not toward the address's guessing throttle.
			err = b.Gate.FailOnConnection(c, err)
		}
	}
	closeNow = errors.Is(err, clients.ErrTooManyFailures) || errors.Is(err, clients.ErrClosed)
	if b.Metrics != nil {
		b.Metrics.Login(s.Protocol, s.Login)
	}
	return conn, capabilities, closeNow
}
