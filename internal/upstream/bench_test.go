package upstream

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/smtpgw/smtpgw/internal/convert"
	"github.com/smtpgw/smtpgw/internal/envelope"
	"github.com/smtpgw/smtpgw/internal/queue"
)

// BenchmarkSpoolToRequest is the per-message work between the spool and
// the wire for the common message, a 10 KB text mail: load the entry,
// convert, size the request and stream it. Profile it with
//
//	go test -run '^$' -bench SpoolToRequest -cpuprofile cpu.out ./internal/upstream
func BenchmarkSpoolToRequest(b *testing.B) {
	spool, err := queue.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	env := &envelope.Envelope{Identity: "network:127.0.0.1/32", Mailbox: "scanner@contoso.com",
		AllowedSenders: []string{"*@contoso.com"}, MailFrom: "scanner@contoso.com",
		Recipients: []string{"alice@contoso.com"}, Received: time.Now()}
	in, err := spool.Create(env)
	if err != nil {
		b.Fatal(err)
	}
	io.WriteString(in, "From: scanner@contoso.com\r\nTo: alice@contoso.com\r\nSubject: load\r\n\r\n"+
		strings.Repeat(strings.Repeat("0123456789", 7)+"\r\n", 10*1024/72))
	id, err := in.Commit()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		entry, err := spool.Get(id)
		if err != nil {
			b.Fatal(err)
		}
		msg, err := convert.Convert(entry.Raw(), entry.Envelope)
		if err != nil {
			b.Fatal(err)
		}
		if msg.SendMailRequestSize(false) > smallMessageLimit {
			b.Fatal("a 10 KB message took the draft path")
		}
		if err := msg.WriteSendMailRequest(io.Discard, false); err != nil {
			b.Fatal(err)
		}
	}
}
