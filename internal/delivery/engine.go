// Package delivery sends spooled messages through an upstream Target: per
// mailbox lanes that respect Graph's concurrency limit, a global worker
// limit, retries with Retry-After or jittered backoff, holds with probes
// while the credential is refused, dead letters and bounces.
//
// One goroutine (the scheduler loop in Run) owns every scheduling
// structure; each attempt runs in its own goroutine and reports back.
package delivery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smtpgw/smtpgw/internal/config"
	"github.com/smtpgw/smtpgw/internal/convert"
	"github.com/smtpgw/smtpgw/internal/envelope"
	"github.com/smtpgw/smtpgw/internal/queue"
	"github.com/smtpgw/smtpgw/internal/trace"
	"github.com/smtpgw/smtpgw/internal/upstream"
)

// How often the engine looks for changes admins made to the spool: a full
// rescan, and a cheaper check for a poke left by an admin command.
const (
	rescanInterval = 30 * time.Second
	pokeInterval   = time.Second
)

// Config is what an Engine needs.
type Config struct {
	Spool  *queue.Spool
	Target upstream.Target
	// Queue comes from config.Parse or config.ParseQueue, which apply its
	// defaults and check its ranges; New does not repeat them.
	Queue config.Queue
	// Hostname names this gateway in non-delivery reports: server.hostname,
	// which config defaults to os.Hostname().
	Hostname string
	Logger   *slog.Logger          // default slog.Default()
	Metrics  prometheus.Registerer // nil: metrics are kept but not registered
	Clock    Clock                 // nil: the real clock
	// MaxParts is passed to convert.Convert: the parts of a message beyond
	// it travel together as one attached .eml.
	MaxParts int
	// Convert turns a raw message into a Graph message; nil means
	// convert.Convert with MaxParts.
	Convert func(raw io.ReaderAt, size int64, env *envelope.Envelope) (*convert.Result, error)
	// Trace records each outcome; nil: no message trace.
	Trace *trace.Writer
}

// Engine delivers the spool's messages. Create it with New before the
// SMTP server accepts mail, so that no commit goes unnoticed.
type Engine struct {
	spool      *queue.Spool
	target     upstream.Target
	convert    func(io.ReaderAt, int64, *envelope.Envelope) (*convert.Result, error)
	clock      Clock
	log        *slog.Logger
	metrics    *metrics
	hostname   string
	bounce     bool
	trace      *trace.Writer
	perMailbox int
	workers    int
	maxAge     time.Duration
	minBackoff time.Duration
	maxBackoff time.Duration
	minProbe   time.Duration
	maxProbe   time.Duration
	mailboxes  *mailboxGuard

	// Messages committed since the loop last looked, and its wake-up call.
	mu        sync.Mutex
	committed []*queue.Entry
	cancel    context.CancelFunc // cancels attempts in flight; set by Run
	// credential is the latest news about the credential from outside
	// the sends (see CredentialRefused), not yet applied.
	credential *credentialNews
	wake       chan struct{}

	running  atomic.Bool
	stop     chan struct{} // closed by Shutdown
	stopOnce sync.Once
	done     chan struct{} // closed when Run returns
	results  chan result
	statusQs chan chan Status // Status asks the loop

	// Owned by the loop in Run.
	items    map[string]*item
	lanes    map[string]*lane
	order    []*lane // lanes in round-robin order
	cursor   int     // index in order of the lane served next
	waiting  itemHeap
	inFlight int
	outage   *hold // the target refuses the credential: only probes are sent
}

// item is one queued message as the scheduler sees it. It is in exactly
// one place: the waiting heap (next attempt in the future), its lane's
// ready heap, or in flight.
type item struct {
	id       string
	lane     *lane
	next     time.Time
	inFlight bool
	probeOf  *hold      // the hold this attempt in flight probes for
	received time.Time  // by the gateway
	expires  time.Time  // when its maximum age passes
	guarded  *guardHold // the mailbox guard holds it until next; nil when not
	// committed is the message as the spool committed it, until its first
	// attempt takes it instead of reading the file back; a rescan drops
	// it, since an admin command may have changed the message since.
	committed *queue.Entry
}

// lane holds the messages of one mailbox.
type lane struct {
	key       string // lower-case mailbox
	ready     itemHeap
	items     int // every item of the mailbox, wherever it is
	inFlight  int
	holdUntil time.Time // Graph throttled the mailbox: no new send before
	held      *hold     // Graph refuses the gateway this mailbox
}

// New returns an engine for cfg and subscribes it to the spool's commits.
func New(cfg Config) *Engine {
	q := cfg.Queue
	e := &Engine{
		spool:      cfg.Spool,
		target:     cfg.Target,
		convert:    cfg.Convert,
		clock:      cfg.Clock,
		log:        cfg.Logger,
		metrics:    newMetrics(cfg.Metrics),
		hostname:   cfg.Hostname,
		bounce:     q.BounceEnabled(),
		trace:      cfg.Trace,
		perMailbox: q.MailboxConcurrency,
		workers:    q.Workers,
		maxAge:     q.MaxAge.D(),
		minBackoff: q.MinBackoff.D(),
		maxBackoff: q.MaxBackoff.D(),
		minProbe:   q.MinProbeInterval.D(),
		maxProbe:   q.MaxProbeInterval.D(),
		mailboxes:  newMailboxGuard(),
		wake:       make(chan struct{}, 1),
		stop:       make(chan struct{}),
		done:       make(chan struct{}),
		results:    make(chan result),
		statusQs:   make(chan chan Status),
		items:      map[string]*item{},
		lanes:      map[string]*lane{},
		waiting:    itemHeap{less: nextFirst},
	}
	if e.convert == nil {
		opts := convert.Options{MaxParts: cfg.MaxParts}
		e.convert = func(raw io.ReaderAt, size int64, env *envelope.Envelope) (*convert.Result, error) {
			return convert.Convert(raw, size, env, opts)
		}
	}
	if e.clock == nil {
		e.clock = realClock{}
	}
	if e.log == nil {
		e.log = slog.Default()
	}
	e.metrics.register(cfg.Metrics, e.Status)
	cfg.Spool.OnCommit(e.notify)
	return e
}

// notify is the spool's OnCommit hook. It runs inside Commit, on the SMTP
// session's goroutine, so it only records the message and never blocks.
func (e *Engine) notify(entry *queue.Entry) {
	e.mu.Lock()
	e.committed = append(e.committed, entry)
	e.mu.Unlock()
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// Run loads the spool and delivers until ctx ends or Shutdown completes.
// When ctx ends, attempts in flight are cancelled; their messages stay in
// the spool. It returns an error only if the spool cannot be read at start.
func (e *Engine) Run(ctx context.Context) error {
	if !e.running.CompareAndSwap(false, true) {
		return errors.New("delivery: Run called twice")
	}
	defer close(e.done)
	attemptCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	e.mu.Lock()
	e.cancel = cancel
	e.mu.Unlock()

	now := e.clock.Now()
	if err := e.rescan(now); err != nil {
		return err
	}
	e.log.Info("delivery started", "queued", len(e.items), "mailbox_concurrency", e.perMailbox, "workers", e.workers)
	nextRescan, nextPokeCheck := now.Add(rescanInterval), now.Add(pokeInterval)

	var timer <-chan time.Time
	var timerAt time.Time
	stop, ctxDone := e.stop, ctx.Done()
	draining := false
	for {
		now = e.clock.Now()
		if !now.Before(nextPokeCheck) {
			nextPokeCheck = now.Add(pokeInterval)
			if e.spool.TakePoke() {
				nextRescan = now
			}
		}
		if !now.Before(nextRescan) {
			nextRescan = now.Add(rescanInterval)
			if err := e.rescan(now); err != nil {
				e.log.Error("cannot read the spool", "error", err)
			}
		}
		e.promote(now)
		if !draining {
			e.dispatch(attemptCtx, now)
		} else if e.inFlight == 0 {
			e.log.Info("delivery stopped", "queued", len(e.items))
			return nil
		}

		wakeAt := e.nextWake(now, minTime(nextRescan, nextPokeCheck))
		if !wakeAt.Equal(timerAt) {
			timerAt, timer = wakeAt, e.clock.After(wakeAt.Sub(now))
		}
		select {
		case r := <-e.results:
			e.finish(r, e.clock.Now())
		case <-e.wake:
			e.takeCommitted()
			e.takeCredentialNews(e.clock.Now())
		case reply := <-e.statusQs:
			reply <- e.status(e.clock.Now())
		case <-timer:
			timerAt = time.Time{}
		case <-stop:
			stop, draining = nil, true
		case <-ctxDone:
			ctxDone, draining = nil, true
		}
	}
}

// Shutdown stops starting attempts and waits for those in flight until ctx
// ends; then it cancels them (their messages stay in the spool, due at the
// next start) and waits for Run to return.
func (e *Engine) Shutdown(ctx context.Context) error {
	e.stopOnce.Do(func() { close(e.stop) })
	if !e.running.Load() {
		return nil
	}
	select {
	case <-e.done:
		return nil
	case <-ctx.Done():
		e.mu.Lock()
		if e.cancel != nil {
			e.cancel()
		}
		e.mu.Unlock()
		<-e.done
		return ctx.Err()
	}
}

// takeCommitted schedules the messages committed since the last call.
func (e *Engine) takeCommitted() {
	e.mu.Lock()
	entries := e.committed
	e.committed = nil
	e.mu.Unlock()
	now := e.clock.Now()
	for _, entry := range entries {
		if _, ok := e.items[entry.Envelope.ID]; !ok {
			it := e.track(entry)
			it.committed = entry
			e.schedule(it, now)
		}
	}
}

// add loads a message the scheduler does not know yet and schedules it.
func (e *Engine) add(id string, now time.Time) {
	if _, ok := e.items[id]; ok {
		return
	}
	entry, err := e.spool.Get(id)
	if errors.Is(err, queue.ErrNotFound) {
		return // delivered or removed already
	}
	if errors.Is(err, queue.ErrCorrupt) {
		// It can never be delivered; keep it for the admin rather than
		// stumbling on it at every rescan.
		e.fail(nil, id, failure{reason: err.Error()})
		return
	}
	if err != nil {
		e.log.Error("cannot load message; will try again at the next rescan", "id", id, "error", err)
		return
	}
	e.schedule(e.track(entry), now)
}

// track makes an item of a spooled message, in its mailbox's lane.
func (e *Engine) track(entry *queue.Entry) *item {
	key := strings.ToLower(entry.Envelope.Mailbox)
	l := e.lanes[key]
	if l == nil {
		l = &lane{key: key, ready: itemHeap{less: oldestFirst}}
		e.lanes[key] = l
		e.order = append(e.order, l)
	}
	it := &item{id: entry.Envelope.ID, lane: l, next: entry.State.NextAttempt,
		received: entry.Envelope.Received, expires: ageStart(entry).Add(e.maxAge)}
	if entry.State.Held != "" {
		// Held by the mailbox guard before a restart.
		it.guarded = &guardHold{identity: entry.Envelope.Identity, reason: entry.State.Held}
	}
	l.items++
	e.items[it.id] = it
	return it
}

// schedule puts an item that is not in flight where it belongs.
func (e *Engine) schedule(it *item, now time.Time) {
	if it.next.After(now) {
		e.waiting.push(it)
	} else {
		it.lane.ready.push(it)
	}
}

// promote moves the items whose time has come to their lanes.
func (e *Engine) promote(now time.Time) {
	for e.waiting.Len() > 0 && !e.waiting.peek().next.After(now) {
		it := e.waiting.pop()
		it.lane.ready.push(it)
	}
}

// dispatch starts attempts while workers are free, taking one message at a
// time from each lane in turn, so that a busy mailbox never starves
// another. Held lanes, and every lane in an outage, only get their probes.
func (e *Engine) dispatch(ctx context.Context, now time.Time) {
	if e.outage != nil {
		if l := e.oldestLane(now); l != nil && e.mayProbe(e.outage, now) {
			e.start(ctx, l, e.outage)
		}
		return
	}
	for e.inFlight < e.workers {
		l := e.nextLane(now)
		if l == nil {
			break
		}
		e.start(ctx, l, nil)
	}
	for _, l := range e.order {
		if l.held != nil && e.sendable(l, now) && e.mayProbe(l.held, now) {
			e.start(ctx, l, l.held)
		}
	}
}

// start sends the oldest ready message of lane l; probe is the hold it
// probes for, if any.
func (e *Engine) start(ctx context.Context, l *lane, probe *hold) {
	it := l.ready.pop()
	it.inFlight = true
	it.probeOf = probe
	if probe != nil {
		probe.probing = true
	}
	l.inFlight++
	e.inFlight++
	committed := it.committed
	it.committed = nil
	go func() { e.results <- e.attempt(ctx, it.id, committed, probe != nil) }()
}

// sendable reports whether lane l has a message ready and room to send it.
func (e *Engine) sendable(l *lane, now time.Time) bool {
	return l.ready.Len() > 0 && l.inFlight < e.perMailbox && !now.Before(l.holdUntil)
}

// nextLane returns the next lane in round-robin order that may start a
// send now, or nil.
func (e *Engine) nextLane(now time.Time) *lane {
	for range len(e.order) {
		l := e.order[e.cursor]
		e.cursor = (e.cursor + 1) % len(e.order)
		if l.held == nil && e.sendable(l, now) {
			return l
		}
	}
	return nil
}

// oldestLane returns the sendable lane whose next message is the oldest,
// or nil.
func (e *Engine) oldestLane(now time.Time) *lane {
	var oldest *lane
	for _, l := range e.order {
		if e.sendable(l, now) && (oldest == nil || oldestFirst(l.ready.peek(), oldest.ready.peek())) {
			oldest = l
		}
	}
	return oldest
}

// finish applies the outcome of an attempt.
func (e *Engine) finish(r result, now time.Time) {
	it := e.items[r.id]
	l := it.lane
	probe := it.probeOf
	it.inFlight, it.probeOf = false, nil
	l.inFlight--
	e.inFlight--
	if probe != nil {
		probe.probing = false
	}
	switch {
	case r.refused != nil:
		e.refuse(l, r.refused, probe, now)
	case r.accepted:
		e.accepted(l, now)
	case probe != nil:
		// The probe told nothing (Graph did not answer, say): another
		// one after the same interval.
		probe.nextProbe = now.Add(probe.interval)
	}
	if r.hold.After(l.holdUntil) {
		l.holdUntil = r.hold
	}
	it.guarded = r.guarded
	if r.finished {
		e.forget(it)
	} else {
		it.next = r.next
		e.schedule(it, now)
	}
}

func (e *Engine) forget(it *item) {
	delete(e.items, it.id)
	it.lane.items--
}

// nextWake returns when the loop must next look at the schedule: the
// earliest next attempt, the end of a throttle or the next probe on a lane
// with work, or the next periodic check.
func (e *Engine) nextWake(now, periodic time.Time) time.Time {
	wake := periodic
	if e.waiting.Len() > 0 {
		wake = minTime(wake, e.waiting.peek().next)
	}
	probeAt := func(h *hold) {
		if !h.probing && h.nextProbe.After(now) {
			wake = minTime(wake, h.nextProbe)
		}
	}
	for _, l := range e.order {
		if l.ready.Len() == 0 {
			continue
		}
		if l.holdUntil.After(now) {
			wake = minTime(wake, l.holdUntil)
		}
		switch {
		case e.outage != nil:
			probeAt(e.outage)
		case l.held != nil:
			probeAt(l.held)
		}
	}
	return wake
}

// rescan brings the schedule in line with the spool, which admins change
// behind the engine's back: messages that vanished are dropped, new ones
// (moved back from failed/) are added, and next attempt times are reread.
// Items in flight are left alone: only their attempt writes their state.
func (e *Engine) rescan(now time.Time) error {
	// Take the committed messages before listing the spool: one committed
	// after the listing would look vanished and be dropped until the next
	// rescan. One committed after this call waits in e.committed.
	e.takeCommitted()
	ids, err := e.spool.Queued()
	if err != nil {
		return fmt.Errorf("delivery: %w", err)
	}
	onDisk := make(map[string]bool, len(ids))
	for _, id := range ids {
		onDisk[id] = true
	}
	for id, it := range e.items {
		it.committed = nil
		if !onDisk[id] && !it.inFlight {
			e.forget(it)
		}
	}
	for _, id := range ids {
		it, ok := e.items[id]
		if !ok {
			e.add(id, now)
			continue
		}
		if it.inFlight {
			continue // only its attempt writes its state
		}
		if st, err := e.spool.State(id); err == nil {
			it.next = st.NextAttempt
			if st.Requeued.After(it.received) {
				it.expires = st.Requeued.Add(e.maxAge)
			}
		}
	}
	e.expireHeld(now)

	// Rebuild the heaps from the items and drop idle lanes.
	e.waiting.items = e.waiting.items[:0]
	order := e.order[:0]
	for _, l := range e.order {
		l.ready.items = l.ready.items[:0]
		// A held lane stays, empty or not, until a probe ends its hold.
		if l.items > 0 || l.holdUntil.After(now) || l.held != nil {
			order = append(order, l)
		} else {
			delete(e.lanes, l.key)
		}
	}
	clear(e.order[len(order):])
	e.order = order
	e.cursor = 0
	for _, it := range e.items {
		if !it.inFlight {
			e.schedule(it, now)
		}
	}
	return nil
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
