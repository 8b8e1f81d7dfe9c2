package upstream

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// graphMetrics are the Graph target's Prometheus metrics.
type graphMetrics struct {
	tokenFailures *prometheus.CounterVec
	expiryDesc    *prometheus.Desc
	certExpiry    func() time.Time // zero: no client certificate
}

// newGraphMetrics creates the metrics and registers them on reg unless it
// is nil.
func newGraphMetrics(reg prometheus.Registerer, certExpiry func() time.Time) *graphMetrics {
	m := &graphMetrics{
		tokenFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "smtpgw_token_failures_total",
			Help: "Failed token requests to Entra ID, by AADSTS code (\"\" when Entra ID gave none, as when it cannot be reached).",
		}, []string{"aadsts"}),
		expiryDesc: prometheus.NewDesc("smtpgw_graph_client_certificate_expiry_seconds",
			"Seconds until the Graph client certificate expires (negative once it has); absent without a certificate.", nil, nil),
		certExpiry: certExpiry,
	}
	if reg != nil {
		reg.MustRegister(m.tokenFailures, m)
	}
	return m
}

// countTokenFailure counts err when it is a failed token request.
func (m *graphMetrics) countTokenFailure(err error) {
	var e *Error
	if errors.As(err, &e) && e.token {
		m.tokenFailures.WithLabelValues(e.AADSTS).Inc()
	}
}

// Describe and Collect report the certificate's expiry, which changes
// with the clock and with every reload.
func (m *graphMetrics) Describe(ch chan<- *prometheus.Desc) { ch <- m.expiryDesc }

func (m *graphMetrics) Collect(ch chan<- prometheus.Metric) {
	if at := m.certExpiry(); !at.IsZero() {
		ch <- prometheus.MustNewConstMetric(m.expiryDesc, prometheus.GaugeValue, time.Until(at).Seconds())
	}
}
