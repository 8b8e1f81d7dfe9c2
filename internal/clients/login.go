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
// unchecked and throttled clients unchecked (ErrThrottled), and takes a
// password bcrypt accepted lately without bcrypt (see verifiedCache);
// any other password waits its turn in the fair bcrypt pool. A failure
// is answered no sooner than auth_min_duration after Login was called, so
// that unknown users, cheap hashes, wrong passwords and throttled clients
// answer alike; a success is not delayed, since its answer tells it
// anyway. A failure counts against the client's address, its network and
// the global budget (see Fail). After a success, c no longer counts
// toward the limits of clients not yet identified.
func (g *Gate) Login(c *Conn, username, password string) (_ *Identity, err error) {
	start := time.Now()
	st := g.settings.Load()
	defer func() {
		if err != nil {
			c.Pause(time.Until(start.Add(st.limits.AuthMinDuration.D())))
		}
	}()
	if len(username) > MaxUsername || safetext.HasControl(username) {
		return nil, g.Fail(c, fmt.Errorf("%w: username of %d bytes or with control characters", ErrMalformed, len(username)))
	}
	now := time.Now()
	failures, storm, throttled := g.guessing(c, st, now)
	if throttled {
		// Not counted toward the throttle again, so that a client that keeps
		// trying still sees it end once the window has passed.
		return nil, g.failed(c, ErrThrottled)
	}
	line := g.checkLine(c, failures, storm, now)
	dir := g.dir.Load()
	id, known := dir.verified(g.verified, username, password, now)
	if !known {
		if !g.checks.run(c.addr, line, st.limits.AuthWorkers, c.closed, func() { id, err = dir.check(username, password) }) {
			return nil, ErrClosed
		}
		if err != nil {
			return nil, g.Fail(c, fmt.Errorf("%w: username %s", err, g.Loggable(username)))
		}
		g.verified.remember(username, string(dir.accounts[username].hash), password, time.Now())
	}
	c.mu.Lock()
	c.loggedIn = true
	c.mu.Unlock()
	g.conns.identified(c)
	// One event per address is enough to know it, and bounds the memory.
	if g.logins.Count(c.key, time.Now(), knownGoodWindow) == 0 {
		g.logins.Add(c.key, time.Now(), knownGoodWindow, 1)
	}
	return id, nil
}

// Fail counts a failed login that Login did not check: one the client
// abandoned or sent in a form the front end could not read, so that
// cancelling is no free way to probe. Login calls it for its own failures.
// It returns reason, or ErrTooManyFailures wrapping it once the connection
// has failed max_auth_failures times: the front end then closes.
func (g *Gate) Fail(c *Conn, reason error) error {
	now := time.Now()
	span := g.settings.Load().limits.AuthFailureWindow.D()
	if g.authFailures.Count(c.key, now, span) == 0 {
		// The network is judged by how many of its addresses fail.
		g.authFailures.Add(networkKey(c.addr), now, span, 1)
	}
	g.authFailures.Add(c.key, now, span, 1)
	g.authFailures.Add(globalKey, now, span, 1)
	return g.failed(c, reason)
}

// failed counts a failed login in the metrics and on the connection.
func (g *Gate) failed(c *Conn, reason error) error {
	g.metrics.loginFailures.WithLabelValues(c.admission.Protocol).Inc()
	return g.FailOnConnection(c, reason)
}

// FailOnConnection counts a failed login against c alone, not against its
// address: a throttled one, or a reading front end's login that passed the
// password check and failed after it (no read_mailbox, Exchange refused or
// unreachable), which is no sign of guessing. It returns reason, or
// ErrTooManyFailures wrapping it once the connection has failed
// max_auth_failures times, as Fail does.
func (g *Gate) FailOnConnection(c *Conn, reason error) error {
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

// knownGoodWindow is how long an address that logged in keeps its place
// in the first line of the password checks, and may use the part of
// max_connections kept for identified clients.
const knownGoodWindow = 24 * time.Hour

// guessing returns c's address's failed logins in the window; whether
// every client together reached auth_failures_global (a guessing storm);
// and whether c's logins are throttled: its address's own failures
// reached auth_failures, or auth_failing_addresses of its network failed,
// or there is a storm and its address is one of those failing.
func (g *Gate) guessing(c *Conn, st *settings, now time.Time) (failures int, storm, throttled bool) {
	l := st.limits
	span := l.AuthFailureWindow.D()
	failures = g.authFailures.Count(c.key, now, span)
	storm = g.authFailures.Count(globalKey, now, span) >= l.AuthFailuresGlobal
	throttled = failures >= l.AuthFailures ||
		g.authFailures.Count(networkKey(c.addr), now, span) >= l.AuthFailingAddresses ||
		storm && failures > 0
	return failures, storm, throttled
}

// checkLine is the line of the password checks a login from c waits in:
// addresses that logged in lately go first and those that failed lately
// last; while many addresses guess (storm), every address not known to
// log in waits with those that failed.
func (g *Gate) checkLine(c *Conn, failures int, storm bool, now time.Time) int {
	switch {
	case failures > 0:
		return suspect
	case g.logins.Count(c.key, now, knownGoodWindow) > 0:
		return known
	case storm:
		return suspect
	}
	return clean
}

// networkKey counts the failed logins of client's network, /24 or /48,
// where one attacker may hold many addresses; its address counts by
// addressKey.
func networkKey(client netip.Addr) string {
	bits := 48
	if client.Is4() {
		bits = 24
	}
	p, _ := client.Prefix(bits)
	return "net " + p.String()
}
