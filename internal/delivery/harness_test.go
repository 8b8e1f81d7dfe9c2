package delivery

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/smtpgw/smtpgw/internal/config"
	"github.com/smtpgw/smtpgw/internal/convert"
	"github.com/smtpgw/smtpgw/internal/envelope"
	"github.com/smtpgw/smtpgw/internal/queue"
	"github.com/smtpgw/smtpgw/internal/upstream"
)

// t0 is when every fake-clock test starts.
var t0 = time.Date(2025, 3, 3, 8, 0, 0, 0, time.UTC)

// fakeClock only moves when the test says so.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []fakeTimer
}

type fakeTimer struct {
	at time.Time
	c  chan time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
	} else {
		c.timers = append(c.timers, fakeTimer{c.now.Add(d), ch})
	}
	return ch
}

// Set moves the clock to t (never back) and fires the timers due by then.
func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.After(c.now) {
		c.now = t
	}
	kept := c.timers[:0]
	for _, tm := range c.timers {
		if tm.at.After(c.now) {
			kept = append(kept, tm)
		} else {
			tm.c <- c.now
		}
	}
	c.timers = kept
}

func (c *fakeClock) Advance(d time.Duration) { c.Set(c.Now().Add(d)) }

// call is one Send the fake target received.
type call struct {
	id       string
	env      *envelope.Envelope
	subject  string
	at       time.Time // on the engine's clock
	attempt  int       // 1 for the first call for this message
	answered error
}

// fakeTarget answers each Send with answer(env, attempt) after delay, and
// counts sends in flight per mailbox.
type fakeTarget struct {
	clock  Clock
	answer func(env *envelope.Envelope, attempt int) error
	delay  time.Duration
	block  chan struct{} // when set, each Send waits for it to close (or ctx)

	mu       sync.Mutex
	calls    []call
	inFlight map[string]int
	peak     map[string]int
	reloads  int
}

// ReloadCredential counts the engine's requests to re-read the credential.
func (f *fakeTarget) ReloadCredential() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reloads++
	return nil
}

func (f *fakeTarget) reloadCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reloads
}

func (f *fakeTarget) Way() upstream.Way {
	return upstream.Way{Via: "graph", Address: "https://graph.test"}
}

func (f *fakeTarget) Send(ctx context.Context, env *envelope.Envelope, m upstream.Message) (upstream.Receipt, error) {
	msg, err := m.Converted()
	if err != nil {
		return upstream.Receipt{}, err
	}
	f.mu.Lock()
	attempt := 1
	for _, c := range f.calls {
		if c.id == env.ID {
			attempt++
		}
	}
	f.inFlight[env.Mailbox]++
	f.peak[env.Mailbox] = max(f.peak[env.Mailbox], f.inFlight[env.Mailbox])
	f.calls = append(f.calls, call{id: env.ID, env: env, subject: msg.Message.Subject, at: f.clock.Now(), attempt: attempt})
	n := len(f.calls) - 1
	f.mu.Unlock()

	if f.block != nil {
		select {
		case <-f.block:
		case <-ctx.Done():
			err = &upstream.Error{Kind: upstream.KindTransient, Err: ctx.Err()}
		}
	}
	if f.delay > 0 {
		time.Sleep(f.delay)
	}
	if err == nil && f.answer != nil {
		err = f.answer(env, attempt)
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	f.inFlight[env.Mailbox]--
	f.calls[n].answered = err
	var custom *receiptAnswer
	if errors.As(err, &custom) {
		return custom.receipt, custom.err
	}
	if err != nil {
		return upstream.Receipt{}, err
	}
	return upstream.Receipt{Status: 202, RequestID: "req-" + env.ID}, nil
}

// receiptAnswer makes fakeTarget answer receipt and err (nil: success),
// for ways out that tell recipients apart.
type receiptAnswer struct {
	receipt upstream.Receipt
	err     error
}

func (r *receiptAnswer) Error() string { return "receipt answer" }

// callsFor returns the calls for message id, or all calls when id is "".
func (f *fakeTarget) callsFor(id string) []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []call
	for _, c := range f.calls {
		if id == "" || c.id == id {
			out = append(out, c)
		}
	}
	return out
}

func (f *fakeTarget) peakFor(mailbox string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.peak[mailbox]
}

// fakeConvert stands in for convert.Convert: it reads the raw message
// and keeps only the subject and the recipients.
func fakeConvert(raw io.ReaderAt, size int64, env *envelope.Envelope) (*convert.Result, error) {
	h, err := textproto.NewReader(bufio.NewReader(io.NewSectionReader(raw, 0, size))).ReadMIMEHeader()
	if err != nil && err != io.EOF {
		return nil, err
	}
	msg := convert.Message{Subject: h.Get("Subject")}
	for _, rcpt := range env.Recipients {
		msg.BccRecipients = append(msg.BccRecipients, convert.Recipient{EmailAddress: convert.EmailAddress{Address: rcpt}})
	}
	return &convert.Result{Message: msg}, nil
}

type harness struct {
	t      *testing.T
	spool  *queue.Spool
	clock  *fakeClock // nil with the real clock
	target *fakeTarget
	engine *Engine
	runErr chan error
}

type options struct {
	queue     string          // [queue] lines of the configuration, e.g. `workers = 4`
	spool     *queue.Spool    // default: a new one
	target    upstream.Target // default: h.target, a fakeTarget
	realClock bool
	convert   func(io.ReaderAt, int64, *envelope.Envelope) (*convert.Result, error)
	before    func(h *harness) // runs before the engine starts
}

// loadConfig builds a configuration through the real loader, so that the
// engine sees the defaults and checks the gateway applies. queue holds the
// [queue] lines; the rest is the least a valid file needs (nothing
// listens: only the engine runs).
func loadConfig(tb testing.TB, queue string) *config.Config {
	tb.Helper()
	data := fmt.Sprintf(`
[server]
hostname = "gw.example.com"

[[listener]]
address = "127.0.0.1:2525"

[outbox]
dir = %q

[[network]]
cidrs = ["127.0.0.1"]
mailbox = %q

[queue]
%s
`, tb.TempDir(), mailbox, queue)
	cfg, err := config.Parse([]byte(data), "delivery_test.toml")
	if err != nil {
		tb.Fatal(err)
	}
	return cfg
}

// start runs an engine on a fresh spool with a fake target. The test
// sets h.target's answer, delay or block before sending anything.
func start(t *testing.T, opts options) *harness {
	t.Helper()
	spool := opts.spool
	if spool == nil {
		var err error
		if spool, err = queue.Open(t.TempDir()); err != nil {
			t.Fatal(err)
		}
	}
	h := &harness{t: t, spool: spool, runErr: make(chan error, 1)}
	var clock Clock = realClock{}
	if !opts.realClock {
		h.clock = &fakeClock{now: t0}
		clock = h.clock
	}
	h.target = &fakeTarget{clock: clock, inFlight: map[string]int{}, peak: map[string]int{}}
	target := opts.target
	if target == nil {
		target = h.target
		if opts.convert == nil {
			opts.convert = fakeConvert
		}
	}
	cfg := loadConfig(t, opts.queue)
	h.engine = New(Config{
		Spool:    spool,
		Target:   target,
		Queue:    cfg.Queue,
		Hostname: cfg.Server.Hostname,
		Logger:   slog.New(slog.NewTextHandler(t.Output(), nil)),
		Metrics:  prometheus.NewRegistry(),
		Clock:    clock,
		Convert:  opts.convert,
	})
	if opts.before != nil {
		opts.before(h)
	}
	go func() { h.runErr <- h.engine.Run(context.Background()) }()
	t.Cleanup(func() { h.stop() })
	return h
}

// stop shuts the engine down and waits for Run to return.
func (h *harness) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.engine.Shutdown(ctx); err != nil {
		h.t.Errorf("Shutdown: %v", err)
	}
	select {
	case err := <-h.runErr:
		if err != nil {
			h.t.Errorf("Run: %v", err)
		}
		h.runErr <- nil // for a later stop
	case <-time.After(5 * time.Second):
		h.t.Fatal("Run did not return after Shutdown")
	}
}

// submit spools a message as the SMTP server would.
func (h *harness) submit(mailbox, mailFrom string, header ...string) string {
	h.t.Helper()
	now := time.Now()
	if h.clock != nil {
		now = h.clock.Now()
	}
	return h.submitEnvelope(&envelope.Envelope{
		Identity:       "network:127.0.0.1/32",
		Mailbox:        mailbox,
		AllowedSenders: []string{mailbox},
		MailFrom:       mailFrom,
		Recipients:     []string{"rcpt@example.net", "other@example.net"},
		Received:       now,
	}, header...)
}

// submitEnvelope spools a message with the given envelope.
func (h *harness) submitEnvelope(env *envelope.Envelope, header ...string) string {
	h.t.Helper()
	mailbox := env.Mailbox
	in, err := h.spool.Create(env)
	if err != nil {
		h.t.Fatal(err)
	}
	if len(header) == 0 {
		header = []string{"Subject: scan " + env.ID}
	}
	raw := "From: " + mailbox + "\r\nTo: rcpt@example.net\r\nMessage-ID: <" + env.ID + "@device>\r\n" +
		strings.Join(header, "\r\n") + "\r\n\r\nbody\r\n"
	io.WriteString(in, raw)
	id, err := in.Commit()
	if err != nil {
		h.t.Fatal(err)
	}
	return id
}

// waitFor waits until cond holds, failing the test after a few seconds.
func (h *harness) waitFor(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func (h *harness) waitCalls(id string, n int) []call {
	h.t.Helper()
	h.waitFor("send calls", func() bool { return len(h.target.callsFor(id)) >= n })
	return h.target.callsFor(id)
}

func (h *harness) count(c prometheus.Collector) int { return int(testutil.ToFloat64(c)) }

func (h *harness) waitCount(what string, c prometheus.Collector, n int) {
	h.t.Helper()
	h.waitFor(what, func() bool { return h.count(c) >= n })
}

func (h *harness) state(id string) queue.State {
	h.t.Helper()
	st, err := h.spool.State(id)
	if err != nil {
		h.t.Fatal(err)
	}
	return st
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// quiet gives the engine a moment to act wrongly, for tests asserting that
// something does not happen.
func quiet() { time.Sleep(50 * time.Millisecond) }
