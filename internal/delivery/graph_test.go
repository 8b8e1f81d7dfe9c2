package delivery

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/smtpgw/smtpgw/internal/config"
	"github.com/smtpgw/smtpgw/internal/graphtest"
	"github.com/smtpgw/smtpgw/internal/queue"
	"github.com/smtpgw/smtpgw/internal/upstream"
)

// These tests deliver through the real Graph client and converter to the
// fake Graph, which counts requests and what is in flight.

// startGraph runs an engine delivering to fake through upstream.NewGraph.
func startGraph(t *testing.T, fake *graphtest.Server, timeout time.Duration, opts options) *harness {
	t.Helper()
	cfg := fake.GraphConfig(t)
	if timeout > 0 {
		cfg.Timeout = config.Duration(timeout)
	}
	g, err := upstream.NewGraph(cfg, upstream.Options{
		RootCAs: fake.CertPool(),
		Logger:  slog.New(slog.NewTextHandler(t.Output(), nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	opts.target = g
	return start(t, opts)
}

func TestGraphRetryAfter(t *testing.T) {
	fake := graphtest.New(t)
	fake.FailNext(graphtest.RouteSendMail, 1, graphtest.Failure{Status: 429, Code: "ApplicationThrottled", RetryAfter: "7"})
	h := startGraph(t, fake, 0, options{})
	id := h.submit(mailbox, sender)
	h.waitCount("deferral", h.engine.metrics.deferred, 1)
	if st := h.state(id); !st.NextAttempt.Equal(t0.Add(7 * time.Second)) {
		t.Fatalf("next attempt at t0+%s, want t0+7s", st.NextAttempt.Sub(t0))
	}
	h.clock.Advance(6 * time.Second)
	quiet()
	if n := fake.Calls(graphtest.RouteSendMail); n != 1 {
		t.Fatalf("%d sendMail calls before Retry-After ended, want 1", n)
	}
	h.clock.Advance(time.Second)
	fake.WaitSent(t, 1, 10*time.Second)
	h.waitCount("delivery", h.engine.metrics.delivered, 1)
	if n := fake.Calls(graphtest.RouteSendMail); n != 2 {
		t.Errorf("%d sendMail calls, want 2", n)
	}
}

func TestGraphTransientFailures(t *testing.T) {
	tests := []struct {
		name    string
		failure graphtest.Failure
	}{
		{"503", graphtest.Failure{Status: 503, Code: "ServiceUnavailable"}},
		{"500", graphtest.Failure{Status: 500, Code: "InternalServerError"}},
		{"hanging connection", graphtest.Failure{Hang: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := graphtest.New(t)
			fake.FailNext(graphtest.RouteSendMail, 2, tt.failure)
			h := startGraph(t, fake, 300*time.Millisecond, options{queue: "min_backoff = \"1m\"\nmax_backoff = \"1h\""})
			id := h.submit(mailbox, sender)
			for i, base := range []time.Duration{time.Minute, 2 * time.Minute} {
				h.waitCount("deferral", h.engine.metrics.deferred, i+1)
				st := h.state(id)
				if d := st.NextAttempt.Sub(h.clock.Now()); d < base*8/10 || d > base*12/10 {
					t.Errorf("attempt %d: backoff %s, want %s ± 20%%", i+1, d, base)
				}
				h.clock.Set(st.NextAttempt)
			}
			fake.WaitSent(t, 1, 10*time.Second)
			h.waitCount("delivery", h.engine.metrics.delivered, 1)
			if n := fake.Calls(graphtest.RouteSendMail); n != 3 {
				t.Errorf("%d sendMail calls, want 3", n)
			}
			if ids, _ := h.spool.Queued(); len(ids) != 0 {
				t.Errorf("queue not empty: %v", ids)
			}
		})
	}
}

func TestGraphPermanentFailures(t *testing.T) {
	tests := []struct {
		status int
		code   string
	}{
		{403, "ErrorSendAsDenied"},
		{404, "ErrorInvalidUser"},
	}
	for _, tt := range tests {
		t.Run(tt.code, func(t *testing.T) {
			fake := graphtest.New(t)
			fake.FailNext(graphtest.RouteSendMail, 1, graphtest.Failure{Status: tt.status, Code: tt.code})
			h := startGraph(t, fake, 0, options{})
			id := h.submit(mailbox, sender)
			sent := fake.WaitSent(t, 1, 10*time.Second) // the bounce
			h.stop()
			if n := fake.Calls(graphtest.RouteSendMail); n != 2 {
				t.Errorf("%d sendMail calls, want 2: the message once, then its bounce", n)
			}
			d, err := h.spool.Show(id)
			if err != nil {
				t.Fatal(err)
			}
			if d.State != queue.StateFailed || d.Attempts != 1 || !strings.Contains(d.LastError, tt.code) {
				t.Errorf("dead letter = %+v", d.Info)
			}
			bounce := sent[0].Message
			if !strings.EqualFold(sent[0].Mailbox, mailbox) || !strings.HasPrefix(bounce.Subject, "Undeliverable") {
				t.Errorf("bounce sent as %s with subject %q", sent[0].Mailbox, bounce.Subject)
			}
			if len(bounce.ToRecipients) != 1 || bounce.ToRecipients[0].EmailAddress.Address != sender {
				t.Errorf("bounce to %+v, want %s", bounce.ToRecipients, sender)
			}
			if !strings.Contains(bounce.Body.Content, "rcpt@example.net") || !strings.Contains(bounce.Body.Content, tt.code) {
				t.Errorf("bounce body does not name the recipients and the reason:\n%s", bounce.Body.Content)
			}
		})
	}
}

func TestGraphBurstToOneSlowMailbox(t *testing.T) {
	const total = 40
	fake := graphtest.New(t)
	fake.SetLatency(50 * time.Millisecond)
	h := startGraph(t, fake, 0, options{realClock: true})
	for range total {
		h.submit(mailbox, sender)
	}
	h.waitCount("deliveries", h.engine.metrics.delivered, total)
	sent := fake.Sent()
	subjects := map[string]int{}
	for _, s := range sent {
		subjects[s.Message.Subject]++
	}
	if len(sent) != total || len(subjects) != total {
		t.Errorf("%d messages sent, %d distinct; want %d each exactly once", len(sent), len(subjects), total)
	}
	if peak := fake.PeakInFlight(mailbox); peak > 4 || peak < 3 {
		t.Errorf("peak in flight at Graph = %d, want 3 or 4", peak)
	}
}
