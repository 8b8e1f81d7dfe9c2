package upstream

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// graphMetrics are the Graph target's Prometheus metrics.
type graphMetrics struct {
	tokenFailures    *prometheus.CounterVec
	certExpiryDesc   *prometheus.Desc
	secretExpiryDesc *prometheus.Desc
	client           func() *graphClient // the one in use: its expiries change with every reload
}

// newGraphMetrics creates the metrics and registers them on reg unless it
// is nil.
func newGraphMetrics(reg prometheus.Registerer, client func() *graphClient) *graphMetrics {
	m := &graphMetrics{
		tokenFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "smtpgw_token_failures_total",
			Help: "Failed token requests to Entra ID, by AADSTS code (\"\" when Entra ID gave none, as when it cannot be reached).",
		}, []string{"aadsts"}),
		certExpiryDesc: prometheus.NewDesc("smtpgw_graph_client_certificate_expiry_seconds",
			"Seconds until the Graph client certificate expires (negative once it has); absent without a certificate.", nil, nil),
		secretExpiryDesc: prometheus.NewDesc("smtpgw_graph_client_secret_expiry_seconds",
			"Seconds until the client secret expires, from [graph] client_secret_expires (negative once it has); absent without it.", nil, nil),
		client: client,
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

// Describe and Collect report the certificate's and the secret's expiry,
// which change with the clock and with every reload.
func (m *graphMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.certExpiryDesc
	ch <- m.secretExpiryDesc
}

func (m *graphMetrics) Collect(ch chan<- prometheus.Metric) {
	c := m.client()
	collectExpiry(ch, m.certExpiryDesc, c.certExpiry)
	collectExpiry(ch, m.secretExpiryDesc, c.secretExpiry)
}

// collectExpiry reports the seconds left until at, unless at is zero (not
// known).
func collectExpiry(ch chan<- prometheus.Metric, desc *prometheus.Desc, at time.Time) {
	if !at.IsZero() {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, time.Until(at).Seconds())
	}
}
