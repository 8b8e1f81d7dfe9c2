package upstream

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/smtpgw/smtpgw/internal/config"
	"github.com/smtpgw/smtpgw/internal/convert"
	"github.com/smtpgw/smtpgw/internal/envelope"
	"github.com/smtpgw/smtpgw/internal/graphtest"
	"github.com/smtpgw/smtpgw/internal/relay/relaytest"
)

// The two ways out, each to a fake that answers at once: Graph (convert,
// then sendMail or draft plus uploads) and Exchange's SMTP (the bytes as
// they are). Compare them in one run:
//
//	go test -run '^$' -bench WaysOut -benchtime 1x ./internal/upstream

const (
	wayMessages    = 2000
	wayConcurrency = 4 // mailbox_concurrency: every message goes to one mailbox
)

func BenchmarkWaysOut(b *testing.B) {
	small := []byte("From: scanner@contoso.com\r\nTo: alice@contoso.com\r\nSubject: load\r\n\r\n" +
		strings.Repeat(strings.Repeat("0123456789", 7)+"\r\n", 10*1024/72))
	var large bytes.Buffer
	large.WriteString("From: scanner@contoso.com\r\nTo: alice@contoso.com\r\nSubject: large\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nscan attached\r\n--b\r\n" +
		"Content-Type: application/pdf; name=scan.pdf\r\nContent-Disposition: attachment; filename=scan.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	for enc := bytes.NewBufferString(base64.StdEncoding.EncodeToString(patterned(15 << 20))); enc.Len() > 0; {
		large.Write(enc.Next(76))
		large.WriteString("\r\n")
	}
	large.WriteString("--b--\r\n")

	for _, way := range []struct {
		name  string
		start func(b *testing.B) Target
	}{
		{"graph", startInstantGraph},
		{"smtp", startInstantSMTP},
	} {
		b.Run(way.name+"/2000x10KB", func(b *testing.B) {
			target := way.start(b)
			for b.Loop() {
				start := time.Now()
				sendConcurrently(b, target, small, wayMessages)
				b.ReportMetric(wayMessages/time.Since(start).Seconds(), "msgs/s")
			}
		})
		b.Run(way.name+"/1x20MB", func(b *testing.B) {
			target := way.start(b)
			for b.Loop() {
				start := time.Now()
				sendConcurrently(b, target, large.Bytes(), 1)
				b.ReportMetric(time.Since(start).Seconds(), "s/msg")
			}
		})
	}
}

func sendConcurrently(b *testing.B, target Target, raw []byte, n int) {
	next := make(chan int)
	var wg sync.WaitGroup
	for range wayConcurrency {
		wg.Go(func() {
			for i := range next {
				env := &envelope.Envelope{ID: fmt.Sprint(i), Mailbox: "scanner@contoso.com", AllowedSenders: []string{"scanner@contoso.com"},
					MailFrom: "scanner@contoso.com", Recipients: []string{"alice@contoso.com"}}
				if _, err := target.Send(context.Background(), env, &benchMessage{raw: raw, env: env}); err != nil {
					b.Error(err)
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

// benchMessage converts when asked, as the delivery engine does.
type benchMessage struct {
	raw []byte
	env *envelope.Envelope
}

func (m *benchMessage) Raw() (io.ReaderAt, int64) { return bytes.NewReader(m.raw), int64(len(m.raw)) }

func (m *benchMessage) Converted() (*convert.Result, error) {
	return convert.Convert(bytes.NewReader(m.raw), int64(len(m.raw)), m.env, convert.Options{})
}

func startInstantGraph(b *testing.B) Target {
	fake := graphtest.New(b)
	g, err := NewGraph(fake.GraphConfig(b), Options{RootCAs: fake.CertPool()})
	if err != nil {
		b.Fatal(err)
	}
	return g
}

// startInstantSMTP serves SMTP with STARTTLS and XOAUTH2 that takes any
// token and discards every message as soon as it is read.
func startInstantSMTP(b *testing.B) Target {
	fake := graphtest.New(b)
	serverTLS, clientTLS := relaytest.TLS(b)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	s := smtp.NewServer(instantBackend{})
	s.Domain = "instant.localhost"
	s.TLSConfig = serverTLS
	s.MaxMessageBytes = 100 << 20
	go s.Serve(l)
	b.Cleanup(func() { s.Close() })
	toml := fake.GraphTOML(b) + "\n[exchange]\nsmtp_address = \"" + l.Addr().String() + "\"\nsend_via = \"smtp\"\n\n[[listener]]\naddress = \"127.0.0.1:0\"\n\n[[network]]\ncidrs = [\"127.0.0.1\"]\nmailbox = \"scanner@contoso.com\"\n"
	cfg, err := config.Parse([]byte(toml), "bench.toml")
	if err != nil {
		b.Fatal(err)
	}
	g, err := NewGraph(cfg.Graph, Options{RootCAs: fake.CertPool()})
	if err != nil {
		b.Fatal(err)
	}
	x, err := NewExchangeSMTP(cfg.Exchange, g, cfg.Queue.MailboxConcurrency, Options{RootCAs: clientTLS.RootCAs})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { x.Close() })
	return x
}

type instantBackend struct{}

func (instantBackend) NewSession(*smtp.Conn) (smtp.Session, error) { return &instantSession{}, nil }

type instantSession struct{}

func (*instantSession) AuthMechanisms() []string { return []string{"XOAUTH2"} }

// Auth takes the two-step form: an empty challenge, then the token.
func (*instantSession) Auth(string) (sasl.Server, error) { return &instantXOAUTH2{}, nil }

type instantXOAUTH2 struct{ challenged bool }

func (x *instantXOAUTH2) Next(response []byte) ([]byte, bool, error) {
	if !x.challenged && response == nil {
		x.challenged = true
		return []byte{}, false, nil
	}
	return nil, true, nil
}

func (*instantSession) Mail(string, *smtp.MailOptions) error { return nil }
func (*instantSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (*instantSession) Data(r io.Reader) error {
	_, err := io.Copy(io.Discard, r)
	return err
}
func (*instantSession) Reset()        {}
func (*instantSession) Logout() error { return nil }
