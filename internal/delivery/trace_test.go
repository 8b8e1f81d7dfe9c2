package delivery

import (
	"testing"
	"time"

	"github.com/smtpgw/smtpgw/internal/graphtest"
	"github.com/smtpgw/smtpgw/internal/trace"
)

func TestTraceRecordsOutcomesWithGraphsRequestID(t *testing.T) {
	fake := graphtest.New(t)
	dir := t.TempDir()
	w, err := trace.Open(dir, 30, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	fake.FailNext(graphtest.RouteSendMail, 1, graphtest.Failure{Status: 429, Code: "ApplicationThrottled", RetryAfter: "7"})
	h := startGraph(t, fake, 0, options{before: func(h *harness) { h.engine.trace = w }})
	// The SMTP server records the acceptance; here the test does.
	submit := func() string {
		id := h.submit(mailbox, sender)
		w.Record(trace.Event{ID: id, Time: t0, Kind: trace.Accepted, From: sender})
		return id
	}
	delivered := submit()
	h.waitCount("deferral", h.engine.metrics.deferred, 1)
	if n := h.count(h.engine.metrics.throttled); n != 1 {
		t.Errorf("throttled = %d, want 1", n)
	}
	// Retry-After holds the mailbox: the next message waits for it too.
	h.clock.Advance(7 * time.Second)
	h.waitCount("delivery", h.engine.metrics.delivered, 1)
	fake.FailNext(graphtest.RouteSendMail, 1, graphtest.Failure{Status: 404, Code: "ErrorInvalidUser"})
	failed := submit()
	h.waitCount("failure", h.engine.metrics.failed, 1)
	h.stop()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	d := traced(t, dir, delivered)
	if d.State != trace.Delivered || d.Attempts != 2 || d.Reference != fake.Sent()[0].RequestID ||
		len(d.Events) != 3 || d.Events[1].Kind != trace.Deferred || d.Events[1].Reference == "" || d.Events[1].Reason == "" {
		t.Errorf("delivered message: %+v", d)
	}
	f := traced(t, dir, failed)
	if f.State != trace.Failed || f.Reference == "" || f.Reason == "" || f.Bounce == "" {
		t.Fatalf("failed message: %+v", f)
	}
	b := traced(t, dir, f.Bounce)
	if len(b.Accepted.To) != 1 || b.Accepted.To[0] != sender || b.Accepted.Identity != "bounce" {
		t.Errorf("bounce: %+v", b.Accepted)
	}
}

// traced finds the message id in the trace in dir.
func traced(t *testing.T, dir, id string) *trace.Message {
	t.Helper()
	res, err := trace.Search(dir, trace.Query{ID: id})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Messages) != 1 {
		t.Fatalf("%s: %d messages in the trace", id, len(res.Messages))
	}
	return res.Messages[0]
}
