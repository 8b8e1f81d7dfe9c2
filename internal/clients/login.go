package clients

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/smtpgw/smtpgw/internal/safetext"
)

// MaxUsername bounds a username; longer ones are refused unchecked.
const MaxUsername = 256

// Login checks a username and password for a client of c, the one way
// every front end logs clients in. It refuses malformed usernames
// unchecked and throttled clients unchecked (ErrThrottled), waits its turn
// in the fair bcrypt pool, and answers no sooner than auth_min_duration
// after it was called, whatever the outcome: unknown users, cheap hashes
// and wrong passwords answer alike. A failure counts against the client's
// address, its network and the global budget (see Fail). After a success,
// c no longer counts toward the limits of clients not yet identified.
func (g *Gate) Login(c *Conn, username, password string) (*Identity, error) {
	start := time.Now()
	st := g.settings.Load()
	defer c.Pause(time.Until(start.Add(st.limits.AuthMinDuration.D())))
	if len(username) > MaxUsername || safetext.HasControl(username) {
		return nil, g.Fail(c, fmt.Errorf("%w: username of %d bytes or with control characters", ErrMalformed, len(username)))
	}
	failures, throttled := g.guessing(c.addr, st, time.Now())
	if throttled {
		g.metrics.loginFailures.WithLabelValues(c.admission.Protocol).Inc()
		return nil, g.failOnConnection(c, ErrThrottled)
	}
	line := clean
	if failures > 0 {
		line = suspect
	}
	var id *Identity
	var err error
	dir := g.dir.Load()
	if !g.checks.run(c.addr, line, st.limits.AuthWorkers, c.closed, func() { id, err = dir.check(username, password) }) {
		return nil, ErrClosed
	}
	if err != nil {
		return nil, g.Fail(c, fmt.Errorf("%w: username %s", err, g.Loggable(username)))
	}
	c.mu.Lock()
	c.loggedIn = true
	c.mu.Unlock()
	g.conns.identified(c)
	return id, nil
}

// Fail counts a failed login that Login did not check: one the client
// abandoned or sent in a form the front end could not read, so that
// cancelling is no free way to probe. Login calls it for its own failures.
// It returns reason, or ErrTooManyFailures wrapping it once the connection
// has failed max_auth_failures times: the front end then closes.
func (g *Gate) Fail(c *Conn, reason error) error {
	g.metrics.loginFailures.WithLabelValues(c.admission.Protocol).Inc()
	now := time.Now()
	span := g.settings.Load().limits.AuthFailureWindow.D()
	addrKey, netKey := guessingKeys(c.addr)
	if g.authFailures.Count(addrKey, now, span) == 0 {
		// The network is judged by how many of its addresses fail.
		g.authFailures.Add(netKey, now, span, 1)
	}
	g.authFailures.Add(addrKey, now, span, 1)
	g.authFailures.Add(globalKey, now, span, 1)
	return g.failOnConnection(c, reason)
}

func (g *Gate) failOnConnection(c *Conn, reason error) error {
	c.mu.Lock()
	c.loginFailures++
	n := c.loginFailures
	c.mu.Unlock()
	if limit := g.settings.Load().maxAuthFailures; limit > 0 && n >= limit {
		return fmt.Errorf("%w: %w", ErrTooManyFailures, reason)
	}
	return reason
}

// globalKey counts the failed logins of every client.
const globalKey = "all"

// guessing returns addr's failed logins in the window, and whether its
// logins are throttled: its own failures reached auth_failures, or
// auth_failing_addresses of its network failed, or every client together
// reached auth_failures_global and addr is one of those failing.
func (g *Gate) guessing(addr netip.Addr, st *settings, now time.Time) (failures int, throttled bool) {
	l := st.limits
	span := l.AuthFailureWindow.D()
	addrKey, netKey := guessingKeys(addr)
	failures = g.authFailures.Count(addrKey, now, span)
	switch {
	case failures >= l.AuthFailures,
		g.authFailures.Count(netKey, now, span) >= l.AuthFailingAddresses,
		failures > 0 && g.authFailures.Count(globalKey, now, span) >= l.AuthFailuresGlobal:
		return failures, true
	}
	return failures, false
}

// guessingKeys are the counters of a failed login from client: its address
// (an IPv6 client's /64), and its network, /24 or /48, where one attacker
// may hold many addresses.
func guessingKeys(client netip.Addr) (address, network string) {
	bits := 48
	if client.Is4() {
		bits = 24
	}
	p, _ := client.Prefix(bits)
	return addressKey(client), "net " + p.String()
}
