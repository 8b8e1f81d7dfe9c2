package smtpserver

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/smtpgw/smtpgw/internal/config"
	"github.com/smtpgw/smtpgw/internal/trace"
)

// Intake load of the trace benchmark: like the side-by-side with Postfix,
// 10 KB messages over 20 sessions.
const (
	benchSessions = 20
	benchPerRound = 400
	benchRounds   = 3
)

// BenchmarkIntakeTraceCost measures intake throughput (SMTP to fsynced
// spool) with the message trace off and on, in alternating rounds on one
// server, and reports the trace's cost in percent.
//
//	go test -run '^$' -bench IntakeTraceCost -benchtime 1x ./internal/smtpserver
func BenchmarkIntakeTraceCost(b *testing.B) {
	cfg, err := config.Parse([]byte(`
[server]
hostname = "smtpgw.test"
[[listener]]
address = "127.0.0.1:0"
[outbox]
dir = "unused"
[queue]
min_free_space = 1
[[network]]
cidrs = ["127.0.0.1"]
mailbox = "noreply@contoso.com"
allowed_senders = ["*@contoso.com"]
`), "bench.toml")
	if err != nil {
		b.Fatal(err)
	}
	srv := startServer(b, cfg)
	w, err := trace.Open(b.TempDir(), 30, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	addr := srv.addrs[0]
	msg := "From: scanner@contoso.com\r\nTo: alice@contoso.com\r\nMessage-ID: <load@contoso.com>\r\nSubject: load\r\n\r\n" +
		strings.Repeat(strings.Repeat("0123456789", 7)+"\r\n", 10*1024/72)

	sendRound(b, addr, msg) // warm up: connections, caches, the spool's folders
	var off, on time.Duration
	for range b.N {
		for round := range benchRounds {
			// Alternate which goes first, so that a trend in the
			// machine's load does not favour one.
			for i := range 2 {
				if (round+i)%2 == 0 {
					srv.SetTrace(nil)
					off += sendRound(b, addr, msg)
				} else {
					srv.SetTrace(w)
					on += sendRound(b, addr, msg)
				}
			}
		}
	}
	rate := func(d time.Duration) float64 { return float64(b.N*benchRounds*benchPerRound) / d.Seconds() }
	b.ReportMetric(rate(off), "msgs/s-without-trace")
	b.ReportMetric(rate(on), "msgs/s-with-trace")
	b.ReportMetric(100*(1-rate(on)/rate(off)), "trace-cost-%")
}

// sendRound sends benchPerRound messages over benchSessions connections
// and returns how long it took.
func sendRound(b *testing.B, addr, msg string) time.Duration {
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, benchSessions)
	for range benchSessions {
		wg.Go(func() {
			c, err := smtp.Dial(addr)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			for i := range benchPerRound / benchSessions {
				if _, err := send(c, "scanner@contoso.com", []string{"alice@contoso.com"}, msg); err != nil {
					errs <- fmt.Errorf("message %d: %w", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	return time.Since(start)
}
