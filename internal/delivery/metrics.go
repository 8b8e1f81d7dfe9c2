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
	throttled    prometheus.Counter
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
		throttled: f.NewCounter(prometheus.CounterOpts{
			Name: "smtpgw_graph_throttled_total",
			Help: "Attempts the upstream answered with a Retry-After (Graph's 429 or 503 throttling).",
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

// statusCollector reports the engine's Status as metrics at each scrape,
// so that they can never disagree with /status.
type statusCollector struct {
	status      func() Status
	up          *prometheus.Desc
	heldMailbox *prometheus.Desc
	guarded     *prometheus.Desc
	queue       *prometheus.Desc
	oldestAge   *prometheus.Desc
}

// register adds the metrics read from status, unless there is no registry.
func (m *metrics) register(reg prometheus.Registerer, status func() Status) {
	if reg == nil {
		return
	}
	reg.MustRegister(&statusCollector{
		status: status,
		up: prometheus.NewDesc("smtpgw_upstream_up",
			"1 while Entra ID and the way out (Graph or Exchange's SMTP) take the gateway's credential, 0 while they refuse it and every message waits.", nil, nil),
		heldMailbox: prometheus.NewDesc("smtpgw_upstream_held_mailboxes",
			"Mailboxes whose messages wait because the way out refuses the gateway them (Graph's 403 ErrorAccessDenied, Exchange's 535 5.7.3).", nil, nil),
		guarded: prometheus.NewDesc("smtpgw_mailbox_guard_holds",
			"Identity and mailbox pairs whose messages the mailbox guard holds: the identity would pass its share of the mailbox's 10,000 recipients a day, or the mailbox would.", nil, nil),
		queue: prometheus.NewDesc("smtpgw_queue_messages",
			"Messages in the spool by state: queued (waiting for a send or in one), held (waiting for a refused credential to be fixed), limited (held by the mailbox guard), failed (dead letters).",
			[]string{"state"}, nil),
		oldestAge: prometheus.NewDesc("smtpgw_queue_oldest_message_age_seconds",
			"Age of the oldest queued or held message; 0 when there is none.", nil, nil),
	})
}

func (c *statusCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.up
	ch <- c.heldMailbox
	ch <- c.guarded
	ch <- c.queue
	ch <- c.oldestAge
}

func (c *statusCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.status()
	up := 0.0
	if st.Upstream.Up {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, up)
	ch <- prometheus.MustNewConstMetric(c.heldMailbox, prometheus.GaugeValue, float64(len(st.Upstream.HeldMailboxes)))
	ch <- prometheus.MustNewConstMetric(c.queue, prometheus.GaugeValue, float64(st.Queue.Queued), "queued")
	ch <- prometheus.MustNewConstMetric(c.guarded, prometheus.GaugeValue, float64(len(st.MailboxGuard)))
	ch <- prometheus.MustNewConstMetric(c.queue, prometheus.GaugeValue, float64(st.Queue.Held), "held")
	ch <- prometheus.MustNewConstMetric(c.queue, prometheus.GaugeValue, float64(st.Queue.Limited), "limited")
	ch <- prometheus.MustNewConstMetric(c.queue, prometheus.GaugeValue, float64(st.Queue.Failed), "failed")
	ch <- prometheus.MustNewConstMetric(c.oldestAge, prometheus.GaugeValue, st.Queue.OldestAgeSeconds)
}
