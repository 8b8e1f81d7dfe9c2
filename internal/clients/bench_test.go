package clients

import (
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// BenchmarkLoginUnderGuessing measures the login of a printer that logged
// in before, from its usual address, with the default [limits] and a
// password hashed at bcrypt's default cost, its password not among those
// verified lately (as an hour after its last login), so that bcrypt runs
// in the pool: quiet, and while 90 guessers try its password from a new
// address in a new /24 each time, enough to keep every auth_workers slot
// busy. It reports the printer's median and 95th percentile latency
// (p50-ms, p95-ms); a success waits for no auth_min_duration:
//
//	go test -run '^$' -bench LoginUnderGuessing -benchtime 20x ./internal/clients
func BenchmarkLoginUnderGuessing(b *testing.B) {
	for _, guessers := range []int{0, 90} {
		b.Run(fmt.Sprintf("guessers=%d", guessers), func(b *testing.B) {
			g, err := New(testConfig(b, bcrypt.DefaultCost, ""), slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				b.Fatal(err)
			}
			const printer = "192.0.2.10"
			printerLogin(b, g, printer) // its address is known to log in
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for i := range guessers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					guess(g, i, guessers, stop)
				}()
			}
			defer func() {
				close(stop)
				wg.Wait()
			}()
			if guessers > 0 {
				waitForStorm(b, g)
			}
			latencies := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				g.verified.mu.Lock()
				delete(g.verified.entries, printerUser)
				g.verified.mu.Unlock()
				start := time.Now()
				printerLogin(b, g, printer)
				latencies = append(latencies, time.Since(start))
			}
			b.StopTimer()
			slices.Sort(latencies)
			b.ReportMetric(float64(latencies[len(latencies)/2].Milliseconds()), "p50-ms")
			b.ReportMetric(float64(latencies[(len(latencies)*95)/100].Milliseconds()), "p95-ms")
		})
	}
}

// printerLogin logs the printer in on a new connection from addr.
func printerLogin(b *testing.B, g *Gate, addr string) {
	c := admit(b, g, addr)
	defer c.Close()
	if _, err := g.Login(c, printerUser, printerPassword); err != nil {
		b.Fatal(err)
	}
}

// guess tries the printer's password until stop closes, each time from a
// new address in a new /24 (10.x.y.1), as a botnet does: guesser i of n
// takes addresses i, i+n, i+2n…
func guess(g *Gate, i, n int, stop <-chan struct{}) {
	for k := i; k < 1<<16; k += n {
		select {
		case <-stop:
			return
		default:
		}
		addr := netip.AddrFrom4([4]byte{10, byte(k >> 8), byte(k), 1})
		c, err := g.Admit(from(addr.String()), smtpAdmission)
		if err != nil {
			continue
		}
		// Closing the connection at stop cuts short its wait in the pool.
		done := make(chan struct{})
		go func() {
			select {
			case <-stop:
				c.Close()
			case <-done:
			}
		}()
		g.Login(c, printerUser, fmt.Sprintf("guess %d", k))
		close(done)
		c.Close()
	}
}

// waitForStorm waits until the guessers' failures reach
// auth_failures_global: from then on, the steady state of a long attack.
func waitForStorm(b *testing.B, g *Gate) {
	l := g.Limits()
	deadline := time.Now().Add(time.Minute)
	for g.authFailures.Count(globalKey, time.Now(), l.AuthFailureWindow.D()) < l.AuthFailuresGlobal {
		if time.Now().After(deadline) {
			b.Fatal("the guessers did not reach auth_failures_global within a minute")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
