package smtpserver

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	accepted     prometheus.Counter
	refused      *prometheus.CounterVec
	authFailures prometheus.Counter
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
	}
}

// Register adds the server's metrics to r.
func (s *Server) Register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{s.metrics.accepted, s.metrics.refused, s.metrics.authFailures} {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}
