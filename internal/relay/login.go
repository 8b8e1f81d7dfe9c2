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

// LoginReplies are a protocol's answers to a login, each after the
// command's tag (IMAP) or starting the line (POP3, whose tag is empty).
type LoginReplies struct {
	OK          func(upstreamCapabilities []string) string // " OK [CAPABILITY …] Logged in" or "+OK Logged in"
	No          string                                     // starts a failed login: " NO " or "-ERR "
	Bad         string                                     // starts a PLAIN response refused unread: " BAD " or "-ERR "
	Refused     string                                     // the code of a wrong password: "[AUTHENTICATIONFAILED] " or "[AUTH] "
	Unavailable string                                     // the code of the other failures: "[UNAVAILABLE] " or "[SYS/TEMP] "
	Cancelled   string                                     // the answer to a cancelled PLAIN login, after Bad
	Bye         string                                     // the last line after too many failed logins; none when empty
}

// Login checks the password, logs in upstream and answers the client with
// the Frontend's Replies after tag. It returns the upstream connection
// after a success, and next = false when the session must end.
func (c *Client) Login(ctx context.Context, tag, user, pass string) (upstream net.Conn, next bool) {
	r := c.f.Replies
	upstream, capabilities, closeNow := c.f.Backend.Open(ctx, c, user, pass)
	switch c.info.Login {
	case LoginOK:
		if c.Write(tag+r.OK(capabilities)) != nil {
			upstream.Close()
			return nil, false
		}
		return upstream, true
	case LoginRefused:
		c.Write(tag + r.No + r.Refused + "Authentication failed")
	case LoginThrottled:
		c.Write(tag + r.No + r.Unavailable + "Too many failed logins; try again later")
	case UpstreamRefused:
		c.Write(tag + r.No + r.Unavailable + "The mailbox cannot be opened now; the administrator finds why in the gateway's log")
	default:
		c.Write(tag + r.No + r.Unavailable + "Exchange Online cannot be reached now; try again later")
	}
	if closeNow {
		if r.Bye != "" {
			c.Write(r.Bye)
		}
		c.info.End = "too many failed logins"
		return nil, false
	}
	return nil, true
}

// AuthPlain runs a SASL PLAIN login: with initial, the response the
// command carried, when hasInitial, else with the line the client sends
// after a continuation request. It answers and returns as Login does.
func (c *Client) AuthPlain(ctx context.Context, tag, initial string, hasInitial bool) (upstream net.Conn, next bool) {
	r := c.f.Replies
	response, cancelled, err := c.plainResponse(initial, hasInitial)
	switch {
	case err != nil:
		c.ReadFailed(err)
		return nil, false
	case cancelled:
		return nil, c.Fail(tag + r.Bad + r.Cancelled)
	}
	user, pass, ok := DecodePlain(response)
	if !ok {
		return nil, c.Fail(tag + r.Bad + "Invalid PLAIN response")
	}
	return c.Login(ctx, tag, user, pass)
}
