package upstream

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// smtpMetrics are the Exchange SMTP target's Prometheus metrics.
type smtpMetrics struct {
	connections prometheus.Gauge
	dials       prometheus.Counter
	failures    *prometheus.CounterVec
}

// newSMTPMetrics creates the metrics and registers them on reg unless it
// is nil.
func newSMTPMetrics(reg prometheus.Registerer) *smtpMetrics {
	f := promauto.With(reg)
	return &smtpMetrics{
		connections: f.NewGauge(prometheus.GaugeOpts{
			Name: "smtpgw_exchange_smtp_connections",
			Help: "Authenticated sessions open to Exchange Online's SMTP, busy or idle.",
		}),
		dials: f.NewCounter(prometheus.CounterOpts{
			Name: "smtpgw_exchange_smtp_logins_total",
			Help: "Sessions opened and authenticated to Exchange Online's SMTP.",
		}),
		failures: f.NewCounterVec(prometheus.CounterOpts{
			Name: "smtpgw_exchange_smtp_failures_total",
			Help: "Failed sends through Exchange Online's SMTP, by kind (transient, message, credential) and SMTP reply code (empty without a reply).",
		}, []string{"kind", "code"}),
	}
}

func (m *smtpMetrics) opened() {
	m.connections.Inc()
	m.dials.Inc()
}

func (m *smtpMetrics) closed() { m.connections.Dec() }

// count counts a failed send; token failures are counted by the token
// source.
func (m *smtpMetrics) count(err error) {
	var e *Error
	if err == nil || !errors.As(err, &e) || e.token {
		return
	}
	m.failures.WithLabelValues(e.Kind.String(), e.Code).Inc()
}
