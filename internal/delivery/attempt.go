package delivery

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/smtpgw/smtpgw/internal/convert"
	"github.com/smtpgw/smtpgw/internal/envelope"
	"github.com/smtpgw/smtpgw/internal/queue"
	"github.com/smtpgw/smtpgw/internal/safetext"
	"github.com/smtpgw/smtpgw/internal/trace"
	"github.com/smtpgw/smtpgw/internal/upstream"
)

// result is what an attempt reports to the scheduler loop.
type result struct {
	id       string
	finished bool      // delivered, failed or gone: forget the message
	next     time.Time // otherwise, when to try again
	hold     time.Time // no new send for this mailbox before this time
	// guarded is set when the mailbox guard held the message, unattempted,
	// until next.
	guarded *guardHold
	// refused is set when Entra ID or Graph refused the credential: the
	// message waits, unattempted, for the hold of refused.Scope to end.
	refused *upstream.Error
	// accepted: Graph took the credential (it delivered the message or
	// judged its content), which ends the outage and any hold of the
	// message's mailbox. Neither this nor refused: the attempt said
	// nothing about the credential.
	accepted bool
}

// verdict is what a send's outcome means for the message.
type verdict int

const (
	delivered   verdict = iota
	temporary           // try again later
	permanent           // will never succeed: dead letter
	refused             // the credential was refused: hold, without spending an attempt
	interrupted         // the engine is stopping: not the message's fault
	gone                // the message left the spool (an admin deleted it)
)

// classify decides, in this one place, what the error of a send means.
func classify(ctx context.Context, err error) (verdict, *upstream.Error) {
	var ue *upstream.Error
	errors.As(err, &ue)
	switch {
	case err == nil:
		return delivered, nil
	case ctx.Err() != nil:
		return interrupted, ue
	case errors.Is(err, queue.ErrNotFound):
		return gone, ue
	case ue != nil && ue.Kind == upstream.KindCredential:
		return refused, ue
	case ue != nil && ue.Kind == upstream.KindMessage:
		return permanent, ue
	default:
		// Temporary by Graph's answer, or an error of unknown cause (a full
		// outbox disk, say): both are worth another try.
		return temporary, ue
	}
}

// attempt makes one delivery attempt of message id and does the spool
// bookkeeping for its outcome. A probe is an attempt made while the
// credential is refused, to see whether an admin fixed it: the credential
// files are read again first. committed is the message as just committed,
// for its first attempt; without it the message is read from the spool.
func (e *Engine) attempt(ctx context.Context, id string, committed *queue.Entry, probe bool) result {
	entry := committed
	var err error
	if entry == nil {
		entry, err = e.spool.Get(id)
	}
	if errors.Is(err, queue.ErrNotFound) {
		return result{id: id, finished: true}
	}
	if errors.Is(err, queue.ErrCorrupt) {
		e.fail(nil, id, failure{reason: err.Error()})
		return result{id: id, finished: true}
	}
	if err != nil {
		e.log.Error("cannot load message", "id", id, "error", err)
		return result{id: id, next: e.clock.Now().Add(e.backoff(1))}
	}
	env := entry.Envelope
	// Only the recipients that did not receive it in an earlier try are
	// sent to, and count.
	pending := pendingRecipients(env, entry.State.Delivered)
	reserved := len(pending.Recipients)
	if until, reason := e.mailboxes.reserve(env.Mailbox, env.Identity, reserved, e.clock.Now()); reason != "" {
		return e.guardHeld(entry, until, reason)
	}
	sent := 0 // recipients that received it in this attempt
	defer func() { e.mailboxes.settle(env.Mailbox, env.Identity, reserved, sent, e.clock.Now()) }()

	// Count the attempt and set the next one before converting, so that a
	// message that crashes the converter or the call neither is lost nor
	// is retried at once, over and over, after every restart.
	before := entry.State
	st := before
	now := e.clock.Now()
	st.Held = ""
	st.Attempts++
	st.LastAttempt = now
	st.NextAttempt = now.Add(e.backoff(st.Attempts))
	if err := entry.SaveState(st); err != nil {
		if errors.Is(err, queue.ErrNotFound) {
			return result{id: id, finished: true}
		}
		e.log.Error("cannot record attempt; not sending", "id", id, "error", err)
		return result{id: id, next: st.NextAttempt}
	}
	entry.State = st

	raw, err := entry.OpenRaw()
	if errors.Is(err, queue.ErrNotFound) {
		return result{id: id, finished: true}
	}
	if err != nil {
		e.log.Error("cannot open message", "id", id, "error", err)
		return result{id: id, next: st.NextAttempt}
	}
	// The result reads the message until it is sent; the file is closed
	// before it is moved or removed, which Windows refuses for open files.
	closeRaw := sync.OnceFunc(func() { raw.Close() })
	defer closeRaw()
	msg := &queuedMessage{raw: raw, size: raw.Size(), convert: func() (*convert.Result, error) {
		return e.convert(raw, raw.Size(), env)
	}}

	if probe {
		e.reloadCredential()
	}
	start := time.Now()
	e.metrics.inFlight.Inc()
	var receipt upstream.Receipt
	err = recovered(func() (err error) {
		receipt, err = e.target.Send(ctx, pending, msg)
		return err
	})
	if err != nil && len(receipt.Delivered) > 0 {
		// Part of the recipients received it: no later try sends to them
		// again, whatever becomes of this one.
		sent = len(receipt.Delivered)
		st.Delivered = append(st.Delivered, receipt.Delivered...)
		before.Delivered, entry.State.Delivered = st.Delivered, st.Delivered
		if err := entry.SaveState(st); err != nil && !errors.Is(err, queue.ErrNotFound) {
			e.log.Error("cannot record the recipients already delivered", "id", id, "error", err)
		}
	}
	closeRaw()
	e.metrics.inFlight.Dec()
	took := time.Since(start)
	e.metrics.sendDuration.Observe(took.Seconds())
	now = e.clock.Now()
	var crash *panicError
	switch {
	case msg.err == nil:
	case errors.Is(msg.err, queue.ErrNotFound):
		return result{id: id, finished: true}
	case errors.As(msg.err, &crash):
		e.failPanic(entry, id, "converting", crash)
		return result{id: id, finished: true}
	default:
		e.fail(entry, id, failure{
			reason: "conversion failed: " + msg.err.Error(),
			plain:  "The gateway could not read the message.",
			status: "5.6.0",
		})
		return result{id: id, finished: true}
	}
	if errors.As(err, &crash) {
		e.failPanic(entry, id, "sending", crash)
		return result{id: id, finished: true}
	}
	if msg.result != nil {
		if n := len(msg.result.DroppedHeaders); n > 0 {
			e.log.Warn("X- headers dropped: Graph accepts at most five, and never Exchange's X-MS-*", "id", id,
				"count", n, "first", safetext.Log(strings.Join(msg.result.DroppedHeaders[:min(n, 5)], ", ")))
		}
	}

	v, ue := classify(ctx, err)
	if ue != nil {
		st.LastErrorCode, st.RequestID, st.ClientRequestID = cmp.Or(ue.AADSTS, ue.Code), ue.RequestID, ue.ClientRequestID
	}
	switch v {
	case delivered:
		if len(receipt.Refused) > 0 {
			e.bounceRefused(env, receipt.Refused)
		}
		sent = reserved
		if err := e.spool.Done(entry); err != nil && !errors.Is(err, queue.ErrNotFound) {
			// It stays on disk and may be sent again after its next
			// attempt time: at least once, never lost.
			e.log.Error("delivered but cannot remove from spool", "id", id, "error", err)
		}
		// Counted once the spool says so too, so that whoever sees the
		// count also sees the message gone.
		e.metrics.delivered.Inc()
		e.log.Info("delivered", "id", id, "mailbox", env.Mailbox, "status", receipt.Status,
			"reference", safetext.Log(receipt.RequestID), "attempts", st.Attempts, "duration_seconds", took.Seconds())
		e.traceOutcome(trace.Delivered, id, st.Attempts, receipt.RequestID, nil, "")
		return result{id: id, finished: true, accepted: true}

	case gone:
		return result{id: id, finished: true}

	case interrupted:
		// Not an attempt: undo its count and make it due at once.
		before.NextAttempt = now
		if err := entry.SaveState(before); err != nil && !errors.Is(err, queue.ErrNotFound) {
			e.log.Error("cannot record interrupted attempt", "id", id, "error", err)
		}
		e.log.Info("attempt interrupted by shutdown", "id", id, "mailbox", env.Mailbox)
		return result{id: id, next: now}

	case permanent:
		// Fail records it: Graph's IDs stay with the dead letter for
		// support cases.
		entry.State = st
		e.fail(entry, id, failure{reason: err.Error(), plain: explain(ue), status: ue.BounceStatus, cause: ue})
		// Graph judged the message, so it took the credential; a failure
		// before any answer says nothing about it.
		return result{id: id, finished: true, accepted: ue.Status != 0}
	}

	if !now.Before(ageStart(entry).Add(e.maxAge)) {
		e.giveUp(entry, st.Attempts, err)
		if v == refused {
			return result{id: id, finished: true, refused: ue}
		}
		return result{id: id, finished: true}
	}
	if v == refused {
		// The credential, not the message, failed: the attempt does not
		// count, and the message is due as soon as the hold ends.
		st.Attempts, st.NextAttempt = before.Attempts, now
		st.LastError = err.Error()
		if err := entry.SaveState(st); err != nil && !errors.Is(err, queue.ErrNotFound) {
			e.log.Error("cannot record refusal", "id", id, "error", err)
		}
		e.log.Warn("held: the credential was refused", "id", id, "mailbox", env.Mailbox, "reference", ue.RequestID, "error", err)
		e.traceOutcome(trace.Held, id, st.Attempts, "", ue, err.Error())
		return result{id: id, next: now, refused: ue}
	}

	// temporary
	r := result{id: id}
	if ue != nil && ue.RetryAfter > 0 {
		r.next = now.Add(ue.RetryAfter)
		if ue.Scope == upstream.ScopeMailbox {
			r.hold = r.next
		}
	} else {
		r.next = now.Add(e.backoff(st.Attempts))
	}
	st.NextAttempt = r.next
	st.LastError = err.Error()
	if err := entry.SaveState(st); err != nil {
		if errors.Is(err, queue.ErrNotFound) {
			return result{id: id, finished: true}
		}
		e.log.Error("cannot record deferral", "id", id, "error", err)
	}
	e.metrics.deferred.Inc()
	if ue != nil && ue.RetryAfter > 0 {
		e.metrics.throttled.Inc()
	}
	var reference string
	if ue != nil {
		reference = ue.RequestID
	}
	e.log.Warn("deferred", "id", id, "mailbox", env.Mailbox, "attempts", st.Attempts,
		"next_attempt", r.next, "reference", reference, "error", err)
	e.traceOutcome(trace.Deferred, id, st.Attempts, reference, nil, err.Error())
	return r
}

// pendingRecipients is env without the recipients that received the
// message in an earlier try.
func pendingRecipients(env *envelope.Envelope, delivered []string) *envelope.Envelope {
	if len(delivered) == 0 {
		return env
	}
	pending := *env
	pending.Recipients = nil
	for _, r := range env.Recipients {
		if !slices.ContainsFunc(delivered, func(d string) bool { return strings.EqualFold(d, r) }) {
			pending.Recipients = append(pending.Recipients, r)
		}
	}
	return &pending
}

// queuedMessage gives the target the form of the message it asks for,
// converting only when it asks for the conversion, and at most once.
type queuedMessage struct {
	raw     io.ReaderAt
	size    int64
	convert func() (*convert.Result, error)

	once   sync.Once
	result *convert.Result
	err    error // of the conversion; a panic in it is a *panicError
}

func (m *queuedMessage) Raw() (io.ReaderAt, int64) { return m.raw, m.size }

func (m *queuedMessage) Converted() (*convert.Result, error) {
	m.once.Do(func() {
		m.err = recovered(func() (err error) {
			m.result, err = m.convert()
			return err
		})
	})
	return m.result, m.err
}

// giveUp fails a message whose maximum age passed while it waited.
func (e *Engine) giveUp(entry *queue.Entry, attempts int, cause error) {
	e.fail(entry, entry.Envelope.ID, failure{
		reason: fmt.Sprintf("gave up after %s and %d attempts: %v", e.maxAge, attempts, cause),
		plain:  fmt.Sprintf("The gateway tried for %s and could not send the message.", e.maxAge),
		status: "5.4.7", // delivery time expired
	})
}

// reloadCredential has the target re-read its credential files before a
// probe, so that fixing the file is all an admin has to do.
func (e *Engine) reloadCredential() {
	r, ok := e.target.(upstream.CredentialReloader)
	if !ok {
		return
	}
	if err := r.ReloadCredential(); err != nil {
		e.log.Error("cannot read the credential files again; probing with the credential in use", "error", err)
	}
}

// ageStart is when the maximum age of a message starts counting: its
// reception, or when an admin last moved it back from the dead letters.
func ageStart(entry *queue.Entry) time.Time {
	if entry.State.Requeued.After(entry.Envelope.Received) {
		return entry.State.Requeued
	}
	return entry.Envelope.Received
}

// backoff is the wait after the given number of failed attempts: the
// minimum backoff doubling up to the maximum, then ±20% jitter so that a
// burst of failures does not retry in lockstep.
func (e *Engine) backoff(attempts int) time.Duration {
	d := e.minBackoff
	for i := 1; i < attempts && d < e.maxBackoff; i++ {
		d *= 2
	}
	d = min(d, e.maxBackoff)
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// failure describes why a message became a dead letter.
type failure struct {
	reason string          // technical: for the log, the dead letter and the bounce
	plain  string          // for the sender, in the bounce
	status string          // RFC 3463 status code for the bounce; default 5.0.0
	cause  *upstream.Error // Graph's refusal, if that is the reason
}

// fail moves a message to the dead letters, with the state its entry
// holds, and bounces it if it should. entry is nil when the message could
// not even be read: its state is lost with it.
func (e *Engine) fail(entry *queue.Entry, id string, f failure) {
	var st queue.State
	if entry != nil {
		st = entry.State
	}
	if err := e.spool.Fail(id, st, f.reason); err != nil {
		if !errors.Is(err, queue.ErrNotFound) {
			e.log.Error("cannot move message to failed", "id", id, "reason", f.reason, "error", err)
		}
		return
	}
	e.metrics.failed.Inc()
	if entry == nil {
		e.log.Error("delivery failed", "id", id, "reason", f.reason)
		e.traceOutcome(trace.Failed, id, 0, "", nil, f.reason)
		return
	}
	attrs := []any{"id", id, "mailbox", entry.Envelope.Mailbox, "attempts", entry.State.Attempts, "reason", f.reason}
	if f.cause != nil {
		attrs = append(attrs, "reference", f.cause.RequestID, "error", f.cause)
	}
	e.traceOutcome(trace.Failed, id, entry.State.Attempts, "", f.cause, f.reason)
	e.log.Error("delivery failed", attrs...)
	if e.bounce {
		// Who received the message in an earlier try is not told it failed.
		e.sendBounce(pendingRecipients(entry.Envelope, entry.State.Delivered), f)
	}
}

// panicError is a panic recovered while converting or sending one message.
type panicError struct {
	value any
	stack []byte
}

func (p *panicError) Error() string { return fmt.Sprintf("panic: %v", p.value) }

// recovered runs f and returns a panic inside it as a *panicError: a bug
// that one message trips must not take the gateway and every other message
// down with it.
func recovered(f func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &panicError{value: v, stack: debug.Stack()}
		}
	}()
	return f()
}

// failPanic logs a recovered panic with its stack and moves the message to
// the dead letters: trying it again would only panic again.
func (e *Engine) failPanic(entry *queue.Entry, id, while string, p *panicError) {
	e.log.Error("internal error while "+while+" a message", "id", id, "panic", fmt.Sprint(p.value), "stack", string(p.stack))
	e.fail(entry, id, failure{
		reason: "internal error while " + while + " the message: " + p.Error(),
		plain:  "The gateway could not process the message because of an internal error.",
		status: "5.3.0",
	})
}
