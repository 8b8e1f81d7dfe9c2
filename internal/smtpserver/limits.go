package smtpserver

import (
	"net"
	"net/netip"
	"time"

	"github.com/smtpgw/smtpgw/internal/config"
	"github.com/smtpgw/smtpgw/internal/window"
)

// Windows of the rate limits.
const (
	connectionRateWindow = time.Minute
	messageRateWindow    = time.Minute
	recipientRateWindow  = 24 * time.Hour
)

// clientLimits is what the limits remember between connections: recent
// connections per address, failed logins per address and network, and
// what each identity sent lately. It belongs to the Server and outlives a
// configuration reload; the limits themselves are read from the
// configuration in force at each check.
type clientLimits struct {
	connections  *window.Counter // per address
	authFailures *window.Counter // per address and per /24 or /64
	messages     *window.Counter // per identity
	recipients   *window.Counter // per identity
	checks       *checkPool      // bcrypt comparisons
}

func newClientLimits() *clientLimits {
	return &clientLimits{
		connections:  window.New(),
		authFailures: window.New(),
		messages:     window.New(),
		recipients:   window.New(),
		checks:       newCheckPool(),
	}
}

// clientAddr is the IP address of a connection's client.
func clientAddr(a net.Addr) netip.Addr {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// admit decides whether a new connection is served: the global and
// per-address limits, and the address's rate of new connections.
func (s *Server) admit(raw net.Conn) (*trackedConn, error) {
	client := clientAddr(raw.RemoteAddr())
	perAddress, perMinute := s.ids.Load().connectionLimits(client, s.cfg.Limits)
	key := client.String()
	now := time.Now()
	// Only admitted connections count, so that a flood cannot grow the
	// counter; the flood is refused for as long as the window is full.
	if s.limits.connections.Count(key, now, connectionRateWindow) >= perMinute {
		return nil, errAddressRate
	}
	tc, err := s.conns.add(raw, client, admission{perAddress: perAddress, lifetime: s.cfg.Limits.SessionLifetime.D()})
	if err != nil {
		return nil, err
	}
	s.limits.connections.Add(key, now, connectionRateWindow, 1)
	return tc, nil
}

// guessingKeys are the counters a failed login from client adds to: its
// address, and its /24 (IPv4) or /64 (IPv6), where one attacker may hold
// many addresses.
func guessingKeys(client netip.Addr) []string {
	bits := 64
	if client.Is4() {
		bits = 24
	}
	network, _ := client.Prefix(bits)
	return []string{client.String(), network.String()}
}

// authThrottled reports whether client's address or network failed to log
// in too often lately.
func (s *Server) authThrottled(client netip.Addr) bool {
	l := s.cfg.Limits
	now := time.Now()
	for _, key := range guessingKeys(client) {
		if s.limits.authFailures.Count(key, now, l.AuthFailureWindow.D()) >= l.AuthFailures {
			return true
		}
	}
	return false
}

func (s *Server) authFailed(client netip.Addr) {
	now := time.Now()
	for _, key := range guessingKeys(client) {
		s.limits.authFailures.Add(key, now, s.cfg.Limits.AuthFailureWindow.D(), 1)
	}
}

// overRate reports whether id has reached a per-identity rate limit, with
// extra recipients about to be added.
func (s *Server) overRate(id *identity, extraRecipients int) bool {
	now := time.Now()
	if n := id.policy.MessagesPerMinute; n > 0 && s.limits.messages.Count(id.name, now, messageRateWindow) >= n {
		return true
	}
	n := id.policy.RecipientsPerDay
	return n > 0 && s.limits.recipients.Count(id.name, now, recipientRateWindow)+extraRecipients > n
}

// sent records an accepted message against id's rate limits.
func (s *Server) sent(id *identity, recipients int) {
	now := time.Now()
	if id.policy.MessagesPerMinute > 0 {
		s.limits.messages.Add(id.name, now, messageRateWindow, 1)
	}
	if id.policy.RecipientsPerDay > 0 {
		s.limits.recipients.Add(id.name, now, recipientRateWindow, recipients)
	}
}

// errorDelay is how long the reply to a connection's nth error waits:
// nothing for the first errors_before_delay, then one error_delay more for
// each further error.
func errorDelay(n int, l config.Limits) time.Duration {
	if n <= l.ErrorsBeforeDelay {
		return 0
	}
	return time.Duration(n-l.ErrorsBeforeDelay) * l.ErrorDelay.D()
}
