// Package clients is what every front end (SMTP, IMAP, POP3) shares about
// the clients it serves: who they are (the [[user]] and [[network]]
// identities), whether a new connection is admitted (max_connections, the
// per-address limits), the password check (bounds, guessing throttle, a
// fair bcrypt pool, a fixed-time answer, failure counts), and the
// connection wrapper that bounds a session's lifetime, counts the error
// replies the client receives and writes the debug conversation log.
//
// One Gate is built from the configuration and reloaded with it; front
// ends map its sentinel errors to their own replies.
package clients

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smtpgw/smtpgw/internal/config"
	"github.com/smtpgw/smtpgw/internal/window"
)

// Gate admits connections and checks logins for every front end.
type Gate struct {
	log      *slog.Logger
	dir      atomic.Pointer[directory]
	settings atomic.Pointer[settings]
	conns    *tracker
	checks   *checkPool
	verified *verifiedCache
	metrics  *metrics
	refused  *refusalSummary

	connections  *window.Counter // unidentified connections per address, by their end
	authFailures *window.Counter // per address, per network (failing addresses), and in all
	logins       *window.Counter // successful logins per address
}

// settings are the parts of a configuration the gate applies.
type settings struct {
	limits          config.Limits
	maxConnections  int
	maxAuthFailures int // per connection
	debugPrefixes   []netip.Prefix
}

// New builds the gate of cfg. The logger decides, by its level, whether
// conversations are logged line by line.
func New(cfg *config.Config, logger *slog.Logger) (*Gate, error) {
	g := &Gate{
		log:          logger,
		conns:        newTracker(),
		checks:       newCheckPool(),
		verified:     newVerifiedCache(),
		metrics:      newMetrics(),
		refused:      &refusalSummary{log: logger, every: refusalSummaryInterval},
		connections:  window.New(),
		authFailures: window.New(),
		logins:       window.New(),
	}
	if err := g.Reload(cfg); err != nil {
		return nil, err
	}
	return g, nil
}

// Reload applies cfg's users, networks, [limits], max_connections,
// max_auth_failures and debug_clients to new connections and logins. The
// passwords verified lately stay only for users whose password_hash did
// not change; the counts so far stay, and connections already open keep
// their lifetime. When cfg's identities cannot be prepared, nothing
// changes.
func (g *Gate) Reload(cfg *config.Config) error {
	dir, err := newDirectory(cfg)
	if err != nil {
		return err
	}
	g.dir.Store(dir)
	g.verified.keep(dir, time.Now())
	g.settings.Store(&settings{
		limits:          cfg.Limits,
		maxConnections:  cfg.Server.MaxConnections,
		maxAuthFailures: cfg.Server.MaxAuthFailures,
		debugPrefixes:   cfg.Log.DebugPrefixes,
	})
	return nil
}

// Limits returns the [limits] in force.
func (g *Gate) Limits() config.Limits { return g.settings.Load().limits }

// Network returns the identity of the most specific [[network]] holding
// addr, or nil. Only SMTP identifies clients by address: the IMAP and POP3
// front ends must never call it.
func (g *Gate) Network(addr netip.Addr) *Identity {
	if n := g.dir.Load().networkOf(addr); n != nil {
		return &n.id
	}
	return nil
}

// HasAccounts reports whether a login can succeed at all.
func (g *Gate) HasAccounts() bool { return len(g.dir.Load().accounts) > 0 }

// Loggable names a username for the log: only an account's name is shown,
// since a client that mixes up its fields may have sent its password there.
func (g *Gate) Loggable(username string) string {
	if _, known := g.dir.Load().accounts[username]; known {
		return username
	}
	return "(unknown, not logged)"
}

// debugClient reports whether addr's conversations are logged line by
// line: level debug, and addr in debug_clients (all when empty).
func (g *Gate) debugClient(addr netip.Addr) bool {
	if !g.log.Enabled(context.Background(), slog.LevelDebug) {
		return false
	}
	prefixes := g.settings.Load().debugPrefixes
	if len(prefixes) == 0 {
		return true
	}
	for _, p := range prefixes {
		if p.Contains(addr.Unmap()) {
			return true
		}
	}
	return false
}

// Register adds the gate's metrics to r.
func (g *Gate) Register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{g.metrics.refused, g.metrics.loginFailures, g.metrics.open} {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}

type metrics struct {
	refused       *prometheus.CounterVec
	loginFailures *prometheus.CounterVec
	open          *prometheus.GaugeVec
}

func newMetrics() *metrics {
	return &metrics{
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "smtpgw_connections_refused_total",
			Help: "Connections refused before any command, by protocol and reason.",
		}, []string{"protocol", "reason"}),
		loginFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "smtpgw_login_failures_total",
			Help: "Failed, malformed, throttled or abandoned logins, by protocol.",
		}, []string{"protocol"}),
		open: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "smtpgw_connections_open",
			Help: "Client connections open now, by protocol.",
		}, []string{"protocol"}),
	}
}

// refusalSummaryInterval spaces the log lines about refused connections:
// a flood of connections must not become a flood of log lines.
const refusalSummaryInterval = 10 * time.Second

// refusalSummary logs refused connections: the first of a burst at once,
// the rest as one line per interval with the counts by reason, instead of
// one line per connection.
type refusalSummary struct {
	log   *slog.Logger
	every time.Duration

	mu      sync.Mutex
	counts  map[string]int // "protocol: reason": count, since the last line
	pending bool           // a summary line is scheduled
}

func (r *refusalSummary) add(protocol string, client netip.Addr, reason error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.pending {
		r.pending = true
		time.AfterFunc(r.every, r.flush)
		r.log.Warn("connection refused", "protocol", protocol, "client", client.String(), "reason", reason.Error(),
			"note", "further refusals are summed up every "+r.every.String())
		return
	}
	if r.counts == nil {
		r.counts = make(map[string]int)
	}
	r.counts[protocol+": "+reason.Error()]++
}

func (r *refusalSummary) flush() {
	r.mu.Lock()
	counts := r.counts
	r.counts, r.pending = nil, false
	r.mu.Unlock()
	for reason, n := range counts {
		r.log.Warn("connections refused", "reason", reason, "count", n, "seconds", r.every.Seconds())
	}
}
