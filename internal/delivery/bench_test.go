package delivery

import (
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/smtpgw/smtpgw/internal/envelope"
	"github.com/smtpgw/smtpgw/internal/queue"
)

// BenchmarkDelivery measures the spool and the engine together: 10 KB
// messages committed by 20 parallel sessions to one mailbox, until an
// instant target has received them all.
func BenchmarkDelivery(b *testing.B) {
	spool, err := queue.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	target := &fakeTarget{clock: realClock{}, inFlight: map[string]int{}, peak: map[string]int{}}
	cfg := loadConfig(b, "")
	e := New(Config{Spool: spool, Target: target, Queue: cfg.Queue, Hostname: cfg.Server.Hostname, Convert: fakeConvert, Logger: discardLogger()})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go e.Run(ctx)

	raw := "Subject: load\r\n\r\n" + strings.Repeat(strings.Repeat("x", 78)+"\r\n", 10<<10/80)
	b.SetBytes(int64(len(raw)))
	b.ResetTimer()
	var wg sync.WaitGroup
	for w := range 20 {
		wg.Go(func() {
			for i := w; i < b.N; i += 20 {
				in, err := spool.Create(&envelope.Envelope{Mailbox: mailbox, MailFrom: sender, Recipients: []string{"r@example.net"}, Received: time.Now()})
				if err != nil {
					b.Error(err)
					return
				}
				io.WriteString(in, raw)
				if _, err := in.Commit(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	deadline := time.Now().Add(time.Minute)
	for testutil.ToFloat64(e.metrics.delivered) < float64(b.N) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	if peak := target.peakFor(mailbox); peak > 4 {
		b.Errorf("peak in flight %d", peak)
	}
}
