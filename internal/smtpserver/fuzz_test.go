package smtpserver

import (
	"context"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/smtpgw/smtpgw/internal/config"
	"github.com/smtpgw/smtpgw/internal/queue"
	"github.com/smtpgw/smtpgw/internal/testlog"
)

// fuzzConfig serves one plain listener where AUTH is allowed, so that a
// client may reach every command without TLS.
func fuzzConfig(t *testing.T) *config.Config {
	h, err := hashes()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse([]byte(`
[server]
hostname = "smtpgw.test"
max_message_size = 4096
max_recipients = 3

[[listener]]
address = "127.0.0.1:0"
allow_insecure_auth = true

[outbox]
dir = "unused"

[queue]
min_free_space = 1

[[user]]
username = "`+scannerUser+`"
password_hash = "`+h[scannerUser]+`"
mailbox = "`+scannerMailbox+`"
header_from = "reject"

[[network]]
cidrs = ["127.0.0.1"]
mailbox = "noreply@contoso.com"
allowed_senders = ["*@contoso.com"]

[limits]
error_delay = "1ms"
auth_min_duration = "1ms"
idle_timeout = "2s"
`), "fuzz.toml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// FuzzSession sends arbitrary input to a real server as one client, and
// checks that the server neither panics nor leaves goroutines behind.
func FuzzSession(f *testing.F) {
	for _, seed := range []string{
		"EHLO c\r\nMAIL FROM:<a@contoso.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nFrom: a@contoso.com\r\n\r\nhi\r\n.\r\nQUIT\r\n",
		"EHLO c\r\nAUTH PLAIN " + plainIR(scannerUser, scannerPassword) + "\r\nMAIL FROM:<" + scannerMailbox + ">\r\nRCPT TO:<b@example.com>\r\nBDAT 5\r\nFrom:BDAT 3 LAST\r\n x\n",
		"EHLO c\r\nAUTH LOGIN\r\n" + b64(scannerUser) + "\r\n*\r\nAUTH LOGIN " + b64("x") + "\r\n" + b64("y") + "\r\n",
		"EHLO c\r\nMAIL FROM:<a@contoso.com> SIZE=99999\r\nRSET\r\nNOOP\r\nBDAT 0 LAST\r\nSTARTTLS\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"HELO c\r\nMAIL FROM:<a@contoso.com>\r\nRCPT TO:<b@example.com>\r\nBDAT 99999999 LAST\r\nxxxx",
		"EHLO c\r\nMAIL FROM:<\x1b]0;x@contoso.com>\r\nVRFY x\r\n\x00\xff\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, input []byte) {
		before := runtime.NumGoroutine()
		spool, err := queue.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		logs := &testlog.Buffer{}
		srv, err := New(fuzzConfig(t), spool, testGate(t, fuzzConfig(t)), slog.New(slog.NewTextHandler(logs, nil)))
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		converse(t, srv.Addrs()[0].String(), input)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		if strings.Contains(logs.String(), "panic") {
			t.Fatalf("server panicked:\n%s", logs)
		}
		waitForServer(t, "the server's goroutines end", func() bool { return runtime.NumGoroutine() <= before })
	})
}

// converse sends input, then reads replies until the server closes or
// stops answering.
func converse(t *testing.T, addr string, input []byte) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(3 * time.Second))
	go func() {
		conn.Write(input)
		conn.(*net.TCPConn).CloseWrite()
	}()
	io.Copy(io.Discard, conn)
}
