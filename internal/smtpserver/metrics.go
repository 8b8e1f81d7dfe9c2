package smtpserver

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smtpgw/smtpgw/internal/certs"
)

type metrics struct {
	accepted     prometheus.Counter
	refused      *prometheus.CounterVec
	authFailures prometheus.Counter
	certExpiry   *certExpiry
}

func newMetrics(served *certs.Served) *metrics {
	return &metrics{
		accepted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "smtpgw_smtp_messages_accepted_total",
			Help: "Messages accepted over SMTP and committed to the spool.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "smtpgw_smtp_refused_total",
			Help: "Commands, messages and connections refused, by reason.",
		}, []string{"reason"}),
		authFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "smtpgw_smtp_auth_failures_total",
			Help: "Failed SMTP AUTH attempts.",
		}),
		certExpiry: &certExpiry{desc: prometheus.NewDesc("smtpgw_tls_certificate_expiry_seconds",
			"Seconds until the first of the TLS listeners' certificates expires (negative once it has); absent without a TLS listener.", nil, nil),
			served: served},
	}
}

// Register adds the server's metrics to r.
func (s *Server) Register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{s.metrics.accepted, s.metrics.refused, s.metrics.authFailures, s.metrics.certExpiry} {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// certExpiry reports when the served TLS certificates expire, as a
// scrape finds them: a reload may have replaced them.
type certExpiry struct {
	desc   *prometheus.Desc
	served *certs.Served
}

func (c *certExpiry) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *certExpiry) Collect(ch chan<- prometheus.Metric) {
	if at := c.served.NotAfter(); !at.IsZero() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, time.Until(at).Seconds())
	}
}
