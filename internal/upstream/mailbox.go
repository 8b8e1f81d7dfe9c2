package upstream

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-sasl"

	"github.com/smtpgw/smtpgw/internal/config"
	"github.com/smtpgw/smtpgw/internal/relay"
)

// MailboxDialer logs in to Exchange Online's IMAP and POP3 services as a
// mailbox, with TLS and the app's token (SASL XOAUTH2), for the reading
// front ends.
type MailboxDialer struct {
	IMAPAddress string // host:port, implicit TLS
	POP3Address string // host:port, implicit TLS
	// Token returns the app's current token for Exchange's scope, cached
	// and shared by every session.
	Token func(ctx context.Context) (string, error)
	// TLS, when not nil, is the client TLS configuration (tests trust
	// their own CA with it); ServerName comes from the address.
	TLS     *tls.Config
	Timeout time.Duration // of the whole login; 30s when zero
}

// Dial logs in as mailbox over protocol (config.ProtocolIMAP or
// config.ProtocolPOP3) and returns the connection past authentication and,
// for IMAP, the server's capabilities. An error wraps
// relay.ErrUpstreamRefused when Exchange refused the token or the mailbox
// (and names the admin step), relay.ErrCredentialRefused when Entra ID
// refused the credential, else the service was unreachable, throttling or
// Entra ID could not be reached: temporary.
func (d *MailboxDialer) Dial(ctx context.Context, protocol, mailbox string) (net.Conn, []string, error) {
	address := d.Address(protocol)
	timeout := d.Timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	token, err := d.Token(ctx)
	if err != nil {
		var ue *Error
		if errors.As(err, &ue) && ue.EntraRefused() {
			return nil, nil, fmt.Errorf("no token for Exchange: %w: %w", relay.ErrCredentialRefused, err)
		}
		return nil, nil, fmt.Errorf("no token for Exchange: %w", err)
	}
	host, _, _ := net.SplitHostPort(address)
	tlsConfig := &tls.Config{}
	if d.TLS != nil {
		tlsConfig = d.TLS.Clone()
	}
	if tlsConfig.ServerName == "" {
		tlsConfig.ServerName = host
	}
	dialer := &tls.Dialer{Config: tlsConfig}
	conn, err := dialer.DialContext(ctx, "tcp", address)
	if err != nil {
		return nil, nil, fmt.Errorf("connecting to %s: %w", address, err)
	}
	deadline, _ := ctx.Deadline()
	conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	u := &upstreamLogin{conn: conn, r: bufio.NewReader(conn), address: address, mailbox: mailbox, token: token,
		sasl: NewXOAUTH2Client(mailbox, token)}
	var caps []string
	if protocol == config.ProtocolPOP3 {
		err = u.pop3()
	} else {
		caps, err = u.imap()
	}
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	conn.SetDeadline(time.Time{})
	return &bufferedConn{Conn: conn, r: u.r}, caps, nil
}

// Address is where protocol's logins go.
func (d *MailboxDialer) Address(protocol string) string {
	if protocol == config.ProtocolPOP3 {
		return d.POP3Address
	}
	return d.IMAPAddress
}

// upstreamLogin is one login conversation with Exchange.
type upstreamLogin struct {
	conn    net.Conn
	r       *bufio.Reader
	address string
	mailbox string
	token   string
	sasl    sasl.Client // XOAUTH2: the token, then an empty answer to an error challenge
}

// readLine reads one line of the login. A line must fit in the reader's
// buffer (4 KiB): Exchange's greetings, challenges and capability lists
// are a few hundred bytes.
func (u *upstreamLogin) readLine() (string, error) {
	line, err := u.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return "", fmt.Errorf("%s sent an overlong line", u.address)
	}
	if err != nil {
		return "", fmt.Errorf("reading from %s: %w", u.address, err)
	}
	return strings.TrimRight(string(line), "\r\n"), nil
}

func (u *upstreamLogin) write(s string) error {
	_, err := io.WriteString(u.conn, s+"\r\n")
	return err
}

// saslResponse is the SASL client's next response, base64-encoded: the
// token first, then the empty answer to a refused token's explanation.
// challenge is the server's line, for the error when no answer is left.
func (u *upstreamLogin) saslResponse(challenge string) (string, error) {
	response, err := u.sasl.Next(nil)
	if err != nil {
		return "", fmt.Errorf("%s answered XOAUTH2 with %q", u.address, clip(challenge))
	}
	return base64.StdEncoding.EncodeToString(response), nil
}

// imap logs in over IMAP: AUTHENTICATE XOAUTH2 with the initial response
// when the greeting offers SASL-IR, else in two steps (Exchange's greeting
// lists no capabilities).
func (u *upstreamLogin) imap() ([]string, error) {
	greeting, err := u.readLine()
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(greeting, "* OK") {
		return nil, fmt.Errorf("%s is not available: %q", u.address, clip(greeting))
	}
	command := "g1 AUTHENTICATE XOAUTH2"
	if slices.Contains(capabilityCode(greeting), "SASL-IR") {
		response, err := u.saslResponse(greeting)
		if err != nil {
			return nil, err
		}
		command += " " + response
	}
	if err := u.write(command); err != nil {
		return nil, err
	}
	var caps []string
	for {
		line, err := u.readLine()
		if err != nil {
			return nil, err
		}
		switch {
		case strings.HasPrefix(line, "+"):
			// The token's challenge, or a failed token's explanation (base64
			// JSON) that waits for an empty line before the NO.
			response, err := u.saslResponse(line)
			if err != nil {
				return nil, err
			}
			if err := u.write(response); err != nil {
				return nil, err
			}
		case strings.HasPrefix(line, "* CAPABILITY "):
			caps = strings.Fields(line)[2:]
		case strings.HasPrefix(line, "* BYE"), strings.HasPrefix(line, "* BAD"):
			// Exchange throttles with "* BAD Request is throttled…" then BYE.
			return nil, fmt.Errorf("%s is not available: %q", u.address, clip(line))
		case strings.HasPrefix(line, "* "):
		case strings.HasPrefix(line, "g1 OK"):
			if c := capabilityCode(line); c != nil {
				caps = c
			}
			if caps == nil {
				return u.imapCapabilities()
			}
			return caps, nil
		case strings.HasPrefix(line, "g1 NO"):
			return nil, u.refused("IMAP", line)
		default:
			return nil, fmt.Errorf("%s answered XOAUTH2 with %q", u.address, clip(line))
		}
	}
}

// imapCapabilities asks for the capabilities after login.
func (u *upstreamLogin) imapCapabilities() ([]string, error) {
	if err := u.write("g2 CAPABILITY"); err != nil {
		return nil, err
	}
	var caps []string
	for {
		line, err := u.readLine()
		if err != nil {
			return nil, err
		}
		switch {
		case strings.HasPrefix(line, "* CAPABILITY "):
			caps = strings.Fields(line)[2:]
		case strings.HasPrefix(line, "g2 "):
			return caps, nil
		}
	}
}

// capabilityCode returns the list in a "[CAPABILITY …]" response code.
func capabilityCode(line string) []string {
	_, after, ok := strings.Cut(line, "[CAPABILITY ")
	if !ok {
		return nil
	}
	list, _, _ := strings.Cut(after, "]")
	return strings.Fields(list)
}

// pop3 logs in over POP3: AUTH XOAUTH2 in two steps, as Exchange expects.
func (u *upstreamLogin) pop3() error {
	greeting, err := u.readLine()
	if err != nil {
		return err
	}
	if !strings.HasPrefix(greeting, "+OK") {
		return fmt.Errorf("%s is not available: %q", u.address, clip(greeting))
	}
	if err := u.write("AUTH XOAUTH2"); err != nil {
		return err
	}
	for {
		line, err := u.readLine()
		if err != nil {
			return err
		}
		switch {
		case strings.HasPrefix(line, "+OK"):
			return nil
		case strings.HasPrefix(line, "+"):
			// The token's challenge, or a failed token's explanation
			// before the refusal.
			response, err := u.saslResponse(line)
			if err != nil {
				return err
			}
			if err := u.write(response); err != nil {
				return err
			}
		case strings.HasPrefix(line, "-ERR [SYS/TEMP]"), strings.HasPrefix(line, "-ERR [IN-USE]"):
			return fmt.Errorf("%s is not available: %q", u.address, clip(line))
		case strings.HasPrefix(line, "-ERR"):
			return u.refused("POP3", line)
		default:
			return fmt.Errorf("%s answered XOAUTH2 with %q", u.address, clip(line))
		}
	}
}

// refused explains Exchange's refusal of the token or the mailbox with
// the admin step that fixes it. The token's own claims tell apart an
// expired token (which the token cache never hands out again), a missing
// permission (no IMAP.AccessAsApp or POP.AccessAsApp role: consent) and a
// missing Exchange registration or mailbox grant, and give the ids those
// cmdlets need.
func (u *upstreamLogin) refused(protocol, answer string) error {
	claims, _ := readClaims(u.token) // a token that is not a JWT gives no ids
	role := map[string]string{"IMAP": "IMAP.AccessAsApp", "POP3": "POP.AccessAsApp"}[protocol]
	var step string
	switch {
	case claims.Exp != 0 && !time.Now().Before(time.Unix(claims.Exp, 0)):
		// Tokens are renewed five minutes before they expire by Entra ID's
		// expires_in: one expired on arrival means the clocks disagree.
		step = fmt.Sprintf("the token had expired (at %s) when it was sent: check that this host's clock is right (NTP); the next login gets a new token",
			time.Unix(claims.Exp, 0).UTC().Format(time.RFC3339))
	case claims.AppID == "":
		step = "check the [exchange] scope and that the app has " + role + " with admin consent, then that Exchange knows it and the mailbox is granted (see docs/imap-pop3.md)"
	case !slices.Contains(claims.Roles, role):
		step = fmt.Sprintf("the app's token has no %s role: add the application permission %s of \"Office 365 Exchange Online\" to app %s and grant admin consent", role, role, claims.AppID)
	default:
		step = fmt.Sprintf("register the app in Exchange if not done yet: New-ServicePrincipal -AppId %s -ObjectId %s (the Enterprise application's object id); then grant the mailbox: Add-MailboxPermission -Identity %s -User %s -AccessRights FullAccess; Test-ServicePrincipalAuthorization -Identity %s shows what the app may reach; check that %s is enabled for the mailbox (Get-CASMailbox %s); new grants take up to 30 minutes to apply",
			claims.AppID, claims.ObjectID, u.mailbox, claims.ObjectID, claims.ObjectID, protocol, u.mailbox)
	}
	return fmt.Errorf("%w: %s login to %s as %s refused (%q): %s", relay.ErrUpstreamRefused, protocol, u.address, u.mailbox, clip(answer), step)
}

// clip shortens an upstream's answer for a log line.
func clip(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}

// bufferedConn reads first what the login's reader still holds, then
// drops the reader so that an idle session does not keep its buffer.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) {
	if c.r != nil {
		if c.r.Buffered() > 0 {
			return c.r.Read(p)
		}
		c.r = nil
	}
	return c.Conn.Read(p)
}
