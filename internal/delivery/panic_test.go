package delivery

import (
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/smtpgw/smtpgw/internal/convert"
	"github.com/smtpgw/smtpgw/internal/envelope"
	"github.com/smtpgw/smtpgw/internal/queue"
	"github.com/smtpgw/smtpgw/internal/testlog"
)

// A panic while converting or sending one message sends that message to
// the dead letters with the reason and leaves the engine delivering the
// others.
func TestPanicGoesToDeadLetters(t *testing.T) {
	tests := []struct {
		name    string
		convert bool // panic in the converter, else in the target
		while   string
	}{
		{"converter", true, "converting"},
		{"target", false, "sending"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			convertFn := fakeConvert
			if tt.convert {
				convertFn = func(raw io.ReaderAt, size int64, env *envelope.Envelope) (*convert.Result, error) {
					res, err := fakeConvert(raw, size, env)
					if err == nil && res.Message.Subject == "poison" {
						panic("index out of range [3] with length 3")
					}
					return res, err
				}
			}
			logs := &testlog.Buffer{}
			h := start(t, options{convert: convertFn, before: func(h *harness) {
				h.engine.log = slog.New(slog.NewTextHandler(logs, nil))
			}})
			if !tt.convert {
				h.target.answer = func(env *envelope.Envelope, attempt int) error {
					if env.Identity != "bounce" && len(h.target.callsFor(env.ID)) == 1 && strings.Contains(h.target.callsFor(env.ID)[0].subject, "poison") {
						panic("index out of range [3] with length 3")
					}
					return nil
				}
			}
			poison := h.submit(mailbox, sender, "Subject: poison")
			good := h.submit(mailbox, sender)
			h.waitCount("the good message", h.engine.metrics.delivered, 1)
			h.waitCount("the dead letter", h.engine.metrics.failed, 1)
			h.stop()

			d, err := h.spool.Show(poison)
			if err != nil {
				t.Fatal(err)
			}
			want := "internal error while " + tt.while + " the message: panic: index out of range"
			if d.State != queue.StateFailed || !strings.HasPrefix(d.LastError, want) || d.Attempts != 1 {
				t.Errorf("dead letter = %+v, want failed after 1 attempt with %q", d.Info, want)
			}
			if _, err := h.spool.Show(good); err == nil {
				t.Errorf("the good message %s is still in the spool", good)
			}
			log := logs.String()
			if !strings.Contains(log, "id="+poison) || !strings.Contains(log, "stack=") {
				t.Errorf("the panic is not logged with the queue ID and stack:\n%s", log)
			}
		})
	}
}

// The attempt is on disk before conversion starts: a message that takes
// the whole process down waits for its next attempt after a restart
// instead of crashing it again at once.
func TestAttemptRecordedBeforeConversion(t *testing.T) {
	var recorded queue.State
	var h *harness
	converted := make(chan struct{}, 1)
	h = start(t, options{convert: func(raw io.ReaderAt, size int64, env *envelope.Envelope) (*convert.Result, error) {
		st, err := h.spool.State(env.ID)
		if err != nil {
			t.Error(err)
		}
		recorded = st
		converted <- struct{}{}
		return fakeConvert(raw, size, env)
	}})
	h.submit(mailbox, sender)
	<-converted
	h.waitCount("delivery", h.engine.metrics.delivered, 1)
	if recorded.Attempts != 1 || !recorded.NextAttempt.After(t0) {
		t.Errorf("state seen by the converter = %+v, want the attempt recorded with a later next attempt", recorded)
	}
}
