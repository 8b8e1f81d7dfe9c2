package smtpserver

import (
	"crypto/tls"
	"crypto/x509"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	accepted     prometheus.Counter
	refused      *prometheus.CounterVec
	authFailures prometheus.Counter
	certExpiry   *certExpiry
}

func newMetrics() *metrics {
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
			"Seconds until the first of the TLS listeners' certificates expires (negative once it has); absent without a TLS listener.", nil, nil)},
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

// certExpiry reports when the served TLS certificates expire. Start and
// Reload set it, a scrape reads it: hence the atomic.
type certExpiry struct {
	desc     *prometheus.Desc
	notAfter atomic.Int64 // Unix seconds of the earliest expiry; 0: none
}

// set records the earliest expiry among certs.
func (c *certExpiry) set(certs []tls.Certificate) {
	var earliest time.Time
	for _, cert := range certs {
		leaf := cert.Leaf
		if leaf == nil && len(cert.Certificate) > 0 {
			leaf, _ = x509.ParseCertificate(cert.Certificate[0])
		}
		if leaf != nil && (earliest.IsZero() || leaf.NotAfter.Before(earliest)) {
			earliest = leaf.NotAfter
		}
	}
	if earliest.IsZero() {
		c.notAfter.Store(0)
		return
	}
	c.notAfter.Store(earliest.Unix())
}

func (c *certExpiry) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *certExpiry) Collect(ch chan<- prometheus.Metric) {
	if at := c.notAfter.Load(); at != 0 {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, time.Until(time.Unix(at, 0)).Seconds())
	}
}
