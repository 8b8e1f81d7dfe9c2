package e2e

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"golang.org/x/crypto/bcrypt"

	"github.com/smtpgw/smtpgw/internal/graphtest"
)

// Messages of the shape that costs JSON the most: five text parts of
// 7,000,000 bytes each (35 MB, just under the default 35 MiB limit) of
// characters that encoding/json escapes to six bytes each.
const (
	textParts    = 5
	textPartSize = 7_000_000
)

// BenchmarkMemory reports how far the gateway's peak memory (VmHWM) rises
// over its idle footprint while it takes in and delivers one such message,
// and sixteen at once (to four mailboxes, so that sixteen Graph calls can
// be in flight), with parts of NUL bytes and of `<>&"`.
func BenchmarkMemory(b *testing.B) {
	for _, fill := range []struct{ name, text string }{{"nul", "\x00"}, {"html-chars", `<>&"`}} {
		for _, n := range []int{1, 16} {
			b.Run(fmt.Sprintf("%s/messages=%d", fill.name, n), func(b *testing.B) {
				memoryRun(b, fill.text, n)
			})
		}
	}
}

func memoryRun(b *testing.B, fill string, n int) {
	fake := graphtest.New(b)
	dir := b.TempDir()
	// A user without a mailbox sends as its envelope sender: one mailbox
	// per sender address.
	config := gatewayConfig(b, dir, fake.GraphTOML(b)) + `
[[user]]
username = "app"
password_hash = "` + bcryptHash(b, "app-secret") + `"
allowed_senders = ["*@contoso.com"]
`
	g := startGateway(b, dir, config, "SSL_CERT_FILE="+fake.WriteCAFile(dir))
	time.Sleep(time.Second) // let start-up garbage settle before measuring idle
	idle := procStatus(b, g, "VmRSS")

	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- sendTextParts(g.Addr[1], fmt.Sprintf("app%d@contoso.com", i%4), fill)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	for _, sent := range fake.WaitSent(b, n, 10*time.Minute) {
		total := len(sent.Message.Body.Content)
		for _, a := range sent.Message.Attachments {
			total += len(a.ContentBytes)
		}
		// Each part loses its last line end to the delimiter.
		if want := textParts * (textPartSize - 2); total < want {
			b.Fatalf("%d bytes of text arrived, want at least %d", total, want)
		}
	}
	peak := procStatus(b, g, "VmHWM")
	b.ReportMetric(time.Since(start).Seconds(), "e2e-s")
	b.ReportMetric(float64(idle)/(1<<20), "idle-RSS-MB")
	b.ReportMetric(float64(peak-idle)/(1<<20), "peak-over-idle-MB")
}

// sendTextParts submits one message of textParts parts of fill, as the
// app user over STARTTLS, streaming it rather than building it.
func sendTextParts(addr, from, fill string) error {
	c, err := smtp.DialStartTLS(addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Auth(sasl.NewPlainClient("", "app", "app-secret")); err != nil {
		return err
	}
	w, err := openData(c, from, "alice@contoso.com")
	if err != nil {
		return err
	}
	if err := writeTextParts(w, from, fill); err != nil {
		return err
	}
	return w.Close()
}

func writeTextParts(w io.Writer, from, fill string) error {
	bw := bufio.NewWriterSize(w, 1<<16)
	fmt.Fprintf(bw, "From: %s\r\nTo: alice@contoso.com\r\nSubject: text parts\r\nMIME-Version: 1.0\r\n"+
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n", from)
	line := strings.Repeat(fill, 998/len(fill)) + "\r\n"
	for range textParts {
		bw.WriteString("--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
		for written := 0; written < textPartSize; written += len(line) {
			bw.WriteString(line)
		}
	}
	bw.WriteString("--b--\r\n")
	return bw.Flush()
}

func bcryptHash(b *testing.B, password string) string {
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		b.Fatal(err)
	}
	return string(hash)
}
