package relay

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes of a login, the values of the metric's outcome label.
const (
	LoginOK         = "ok"
	LoginRefused    = "bad_credentials"      // wrong password, unknown user, or no read_mailbox
	LoginThrottled  = "throttled"            // too many failures from the address
	UpstreamRefused = "upstream_refused"     // Exchange refused the token or the mailbox
	UpstreamDown    = "upstream_unavailable" // Exchange or Entra ID unreachable or throttling
)

// Session is one client connection to an IMAP or POP3 listener, for its
// log line (whose logger names the connection and the client).
type Session struct {
	Protocol string // "imap" or "pop3"
	User     string // the local user, once a login was tried, as safe to log
	Mailbox  string // read_mailbox, once logged in
	Login    string // one of the Login and Upstream outcomes
	Relay    Result
	End      string // how the session ended, when not relayed
}

// Log writes the session's one line, at INFO; why a login failed was
// logged when it happened. It never holds a password, token or message
// content.
func (s *Session) Log(ctx context.Context, l *slog.Logger, duration time.Duration) {
	end := s.End
	if s.Relay.End != "" {
		end = s.Relay.End
	}
	attrs := []slog.Attr{
		slog.String("protocol", s.Protocol),
		slog.String("user", s.User),
		slog.String("mailbox", s.Mailbox),
		slog.String("login", s.Login),
		slog.Int64("bytes_in", s.Relay.Up),
		slog.Int64("bytes_out", s.Relay.Down),
		slog.Duration("duration", duration.Round(time.Millisecond)),
		slog.String("end", end),
	}
	l.LogAttrs(ctx, slog.LevelInfo, s.Protocol+" session", attrs...)
}

// Metrics are the reading front ends' counters, labelled by protocol.
type Metrics struct {
	logins *prometheus.CounterVec
	bytes  *prometheus.CounterVec
}

// NewMetrics makes unregistered metrics.
func NewMetrics() *Metrics {
	return &Metrics{
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "smtpgw_read_logins_total",
			Help: "IMAP and POP3 logins by outcome: ok, bad_credentials, throttled, upstream_refused, upstream_unavailable.",
		}, []string{"protocol", "outcome"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "smtpgw_read_relayed_bytes_total",
			Help: "Bytes relayed between reading clients and Exchange; direction in is from the client.",
		}, []string{"protocol", "direction"}),
	}
}

// Register adds the metrics to r.
func (m *Metrics) Register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.logins, m.bytes} {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// Login counts one login attempt's outcome.
func (m *Metrics) Login(protocol, outcome string) {
	m.logins.WithLabelValues(protocol, outcome).Inc()
}

// Bytes returns the counters Pipe adds to, for protocol.
func (m *Metrics) Bytes(protocol string) (in, out Counter) {
	return m.bytes.WithLabelValues(protocol, "in"), m.bytes.WithLabelValues(protocol, "out")
}
