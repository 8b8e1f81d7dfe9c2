package delivery

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// metrics are the engine's Prometheus metrics.
type metrics struct {
	delivered    prometheus.Counter
	deferred     prometheus.Counter
	failed       prometheus.Counter
	queued       prometheus.Gauge
	inFlight     prometheus.Gauge
	sendDuration prometheus.Histogram
}

// newMetrics creates the metrics and registers them on reg unless it is nil.
func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	return &metrics{
		delivered: f.NewCounter(prometheus.CounterOpts{
			Name: "smtpgw_messages_delivered_total",
			Help: "Messages accepted by Graph.",
		}),
		deferred: f.NewCounter(prometheus.CounterOpts{
			Name: "smtpgw_messages_deferred_total",
			Help: "Attempts that failed temporarily and will be retried.",
		}),
		failed: f.NewCounter(prometheus.CounterOpts{
			Name: "smtpgw_messages_failed_total",
			Help: "Messages moved to the dead letters.",
		}),
		queued: f.NewGauge(prometheus.GaugeOpts{
			Name: "smtpgw_queue_messages",
			Help: "Messages waiting in the spool for delivery, including those in flight.",
		}),
		inFlight: f.NewGauge(prometheus.GaugeOpts{
			Name: "smtpgw_graph_sends_in_flight",
			Help: "Sends to Graph in progress.",
		}),
		sendDuration: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "smtpgw_graph_send_duration_seconds",
			Help:    "Duration of each send to Graph, whatever its outcome.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 12), // 50ms to about 100s
		}),
	}
}
