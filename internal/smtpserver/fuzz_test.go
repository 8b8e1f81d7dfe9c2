package smtpserver

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/smtpgw/smtpgw/internal/config"
	"github.com/smtpgw/smtpgw/internal/queue"
)

// fuzzConfig serves one plain listener where AUTH is allowed, so that a
// client may reach every command without TLS. One server answers every
// input of a fuzzing process, all from 127.0.0.1, so the per-address
// limits are far above what a run reaches, and the delays that slow down
// errors and AUTH are near zero: each input then takes about a
// millisecond.
func fuzzConfig(t testing.TB) *config.Config {
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
connections_per_minute = 1000000000

[limits]
connections_per_minute = 1000000000
auth_failures = 1000000000
error_delay = "1us"
auth_min_duration = "1us"
idle_timeout = "2s"
`), "fuzz.toml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// FuzzSession sends arbitrary input to a real server as one client, and
// checks that the server neither panics nor leaves a goroutine behind once
// the conversation ends. One server, started before the first input,
// serves every input; each input is one connection.
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
	spool, err := queue.Open(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	logs := &panicWatch{}
	cfg := fuzzConfig(f)
	logger := slog.New(slog.NewTextHandler(logs, nil))
	srv, err := New(cfg, spool, testGate(f, cfg), testCerts(f, cfg, spool.Dir(), logger), logger)
	if err != nil {
		f.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			f.Errorf("Shutdown: %v", err)
		}
	})
	addr := srv.Addrs()[0].String()
	f.Fuzz(func(t *testing.T, input []byte) {
		idle := runtime.NumGoroutine()
		converse(t, addr, input)
		if line := logs.panicLine(); line != nil {
			t.Fatalf("server panicked:\n%s", line)
		}
		waitForGoroutines(t, idle)
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
	written := make(chan struct{})
	go func() {
		defer close(written)
		conn.Write(input)
		conn.(*net.TCPConn).CloseWrite()
	}()
	io.Copy(io.Discard, conn)
	conn.Close()
	<-written
}

// waitForGoroutines waits until no more goroutines run than before the
// conversation, when the server was idle: the connection's have ended. It polls often, since it runs
// after every input.
func waitForGoroutines(t *testing.T, idle int) {
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > idle {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines still run after the connection closed, %d when idle", runtime.NumGoroutine(), idle)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// panicWatch is the log of the fuzzed server: it keeps only the first line
// that reports a panic in this module's code, so that a long run does not
// hold every log line. go-smtp recovers and logs panics of its own too: its
// BDAT goroutine calls the session after a connection closing at that
// moment has already dropped it (go-smtp v0.25.1, conn.go:1059), a race
// found by this target that no code of ours takes part in.
type panicWatch struct {
	mu    sync.Mutex
	first []byte
}

// ownCode marks a stack frame of this module.
var ownCode = []byte("github.com/smtpgw/smtpgw/")

func (w *panicWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.first == nil && bytes.Contains(p, []byte("panic")) && bytes.Contains(p, ownCode) {
		w.first = bytes.Clone(p)
	}
	return len(p), nil
}

func (w *panicWatch) panicLine() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.first
}
