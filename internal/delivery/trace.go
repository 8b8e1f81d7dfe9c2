package delivery

import (
	"github.com/smtpgw/smtpgw/internal/envelope"
	"github.com/smtpgw/smtpgw/internal/trace"
	"github.com/smtpgw/smtpgw/internal/upstream"
)

// traceOutcome records an attempt's outcome in the message trace, with the
// upstream's reference for support cases: Graph's request-id, or what the
// target put in the receipt.
func (e *Engine) traceOutcome(kind, id string, attempts int, reference string, ue *upstream.Error, reason string) {
	if reference == "" && ue != nil {
		reference = ue.RequestID
	}
	e.trace.Record(trace.Event{ID: id, Time: e.clock.Now(), Kind: kind, Attempts: attempts, Reference: reference, Reason: reason})
}

// traceBounce records that a bounce was queued for the failed message
// env, and the bounce's own acceptance, so that searching the sender's
// address finds it.
func (e *Engine) traceBounce(env, report *envelope.Envelope, bounceID string) {
	now := e.clock.Now()
	e.trace.Record(trace.Event{ID: env.ID, Time: now, Kind: trace.Bounced, Reference: bounceID})
	e.trace.Record(trace.Event{ID: bounceID, Time: now, Kind: trace.Accepted, Identity: report.Identity,
		Mailbox: report.Mailbox, To: report.Recipients})
}
