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
	failures, storm, throttled := g.guessing(c.addr, st, now)
	if throttled {
		g.metrics.loginFailures.WithLabelValues(c.admission.Protocol).Inc()
		return nil, g.failOnConnection(c, ErrThrottled)
	}
	// Addresses that logged in lately go first and those that failed lately
	// last; while many addresses guess, every address not known to log in
	// waits with those that failed.
	line := clean
	switch {
	case failures > 0:
		line = suspect
	case g.logins.Count(addressKey(c.addr), now, knownGoodWindow) > 0:
		line = known
	case storm:
		line = suspect
	}
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
	if key := addressKey(c.addr); g.logins.Count(key, time.Now(), knownGoodWindow) == 0 {
		g.logins.Add(key, time.Now(), knownGoodWindow, 1)
	}
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

// knownGoodWindow is how long an address that logged in keeps its place
// in the first line of the password checks, and may use the part of
// max_connections kept for identified clients.
const knownGoodWindow = 24 * time.Hour

// guessing returns addr's failed logins in the window; whether every
// client together reached auth_failures_global (a guessing storm); and
// whether addr's logins are throttled: its own failures reached
// auth_failures, or auth_failing_addresses of its network failed, or
// there is a storm and addr is one of those failing.
func (g *Gate) guessing(addr netip.Addr, st *settings, now time.Time) (failures int, storm, throttled bool) {
	l := st.limits
	span := l.AuthFailureWindow.D()
	addrKey, netKey := guessingKeys(addr)
	failures = g.authFailures.Count(addrKey, now, span)
	storm = g.authFailures.Count(globalKey, now, span) >= l.AuthFailuresGlobal
	throttled = failures >= l.AuthFailures ||
		g.authFailures.Count(netKey, now, span) >= l.AuthFailingAddresses ||
		storm && failures > 0
	return failures, storm, throttled
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
