//go:build unix

package trace

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// writeMonth writes 30 days of trace for a site sending perDay messages a
// day (each accepted, a tenth deferred once, then delivered) and returns
// its size in bytes.
func writeMonth(b *testing.B, dir string, perDay int) int64 {
	start := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	var size int64
	for d := range 30 {
		day := start.AddDate(0, 0, d)
		f, err := os.Create(filepath.Join(dir, fileName(day)))
		if err != nil {
			b.Fatal(err)
		}
		w := bufio.NewWriterSize(f, 1<<20)
		put := func(e Event) {
			line, err := marshal(e)
			if err != nil {
				b.Fatal(err)
			}
			w.Write(line)
			size += int64(len(line))
		}
		step := 24 * time.Hour / time.Duration(perDay)
		for i := range perDay {
			at := day.Add(time.Duration(i) * step)
			id := fmt.Sprintf("%013d%06x", at.UnixNano()/1000, i)
			device := i % 200
			put(Event{ID: id, Time: at, Kind: Accepted, Client: fmt.Sprintf("10.1.%d.%d:%d", device/250, device%250, 40000+i%20000),
				Identity: fmt.Sprintf("network:10.1.%d.0/24", device/250), Mailbox: "scans@contoso.com",
				From: fmt.Sprintf("device%d@contoso.com", device), To: []string{fmt.Sprintf("user%d@contoso.com", i%5000)},
				Size: 250_000 + int64(i%1000)*1000, MessageID: fmt.Sprintf("<%s.%d@device%d.contoso.com>", id, i, device)})
			attempts := 1
			if i%10 == 0 {
				put(Event{ID: id, Time: at.Add(time.Second), Kind: Deferred, Attempts: 1,
					Reason: "graph: 503 ServiceUnavailable: The service is temporarily unavailable (request-id 1b5c5a8e-2c0a-4f43-9d6b-6b0a3f2b8e11)"})
				attempts = 2
			}
			put(Event{ID: id, Time: at.Add(2 * time.Second), Kind: Delivered, Attempts: attempts,
				Reference: "1b5c5a8e-2c0a-4f43-9d6b-6b0a3f2b8e11"})
		}
		if err := w.Flush(); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
	return size
}

// BenchmarkSearchMonth measures a search over 30 days at 100,000 messages
// a day, the trace of a busy site; it reports the trace's size.
//
//	go test -run '^$' -bench SearchMonth -benchtime 3x ./internal/trace
func BenchmarkSearchMonth(b *testing.B) {
	dir := b.TempDir()
	const perDay = 100_000
	size := writeMonth(b, dir, perDay)
	for _, q := range []struct {
		name string
		q    Query
	}{
		{"to-address", Query{To: "user4321@contoso.com"}},
		{"to-address-limit", Query{To: "user4321@contoso.com", Limit: 1000}},
		{"to-domain", Query{To: "*@contoso.com", Limit: 1000}},
		{"to-domain-state", Query{To: "*@contoso.com", State: Delivered, Limit: 1000}},
		{"state-failed", Query{State: Failed, Limit: 1000}},
		{"from-domain-last-day", Query{From: "*@contoso.com", Since: time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC), Limit: 1000}},
		{"message-id", Query{MessageID: "<not-there@x>"}},
	} {
		b.Run(q.name, func(b *testing.B) {
			// CPU time, besides the elapsed time: on a shared machine it
			// is what a search costs.
			var before, after syscall.Rusage
			syscall.Getrusage(syscall.RUSAGE_SELF, &before)
			for b.Loop() {
				if _, err := Search(dir, q.q); err != nil {
					b.Fatal(err)
				}
			}
			syscall.Getrusage(syscall.RUSAGE_SELF, &after)
			cpu := after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano()
			b.ReportMetric(float64(cpu)/1e9/float64(b.N), "cpu-s/op")
			b.ReportMetric(float64(size)/(1<<20), "MiB/30days")
			b.ReportMetric(float64(size)/(30*perDay), "bytes/message")
		})
	}
}

// BenchmarkRecord is the cost of recording one accepted event.
func BenchmarkRecord(b *testing.B) {
	w, err := Open(b.TempDir(), 30, quiet)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	e := accepted("0000000000000abcdef", time.Now(), "scanner@contoso.com", "bob@contoso.com")
	for b.Loop() {
		w.Record(e)
	}
}
