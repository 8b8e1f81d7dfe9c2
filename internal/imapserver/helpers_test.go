package imapserver

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smtpgw/smtpgw/internal/config"
	"github.com/smtpgw/smtpgw/internal/relay"
	"github.com/smtpgw/smtpgw/internal/relay/relaytest"
	"github.com/smtpgw/smtpgw/internal/testlog"
)

// testHash is a bcrypt hash of "secret"; the fake upstream checks
// passwords itself, the hash only makes the configuration valid.
const testHash = "$2a$04$uV9ZIi0T0p1Ij1Bj9m0UNu3c7tTpVxgPOUUhpPCWq.C8tvUOwXO0m"

// testPassword is the one password the tests' user has; the debug log
// must never show it.
const testPassword = "pa ss\"wörd"

type harness struct {
	up        *relaytest.Upstream
	log       *testlog.Buffer
	addr      string
	clientTLS *tls.Config
}

// testConfig loads a configuration with one IMAP listener having the
// given extra keys (for example `tls = "starttls"`).
func testConfig(t testing.TB, listenerKeys string) *config.Config {
	t.Helper()
	t.Setenv(config.ClientSecretEnv, "test-secret")
	cfg, err := config.Parse([]byte(`
[[listener]]
address = "127.0.0.1:0"
protocol = "imap"
`+listenerKeys+`

[graph]
tenant_id = "contoso.onmicrosoft.com"
client_id = "00000000-0000-0000-0000-000000000001"

[limits]
max_errors = 5

[[user]]
username = "app"
password_hash = "`+testHash+`"
read_mailbox = "helpdesk@example.com"
`), "test.toml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// testServer is the server of cfg's listener, with up as Exchange.
func testServer(cfg *config.Config, up *relaytest.Upstream, serverTLS *tls.Config, logger *slog.Logger) *Server {
	return New(Config{
		Listener:        cfg.Listeners[0],
		TLS:             func() *tls.Config { return serverTLS },
		Limits:          cfg.Limits,
		MaxAuthFailures: cfg.Server.MaxAuthFailures,
		Backend:         up.Backend(relay.NewMetrics()),
		Logger:          logger,
	})
}

func testUpstream() *relaytest.Upstream {
	return &relaytest.Upstream{
		Users:        map[string]string{"app": testPassword},
		Mailbox:      "helpdesk@example.com",
		Capabilities: []string{"IMAP4rev1", "AUTH=PLAIN", "AUTH=XOAUTH2", "SASL-IR", "IDLE", "UIDPLUS"},
	}
}

// start serves an IMAP listener with the given extra listener keys on a
// free loopback port, with the debug log.
func start(t *testing.T, listenerKeys string) *harness {
	t.Helper()
	cfg := testConfig(t, listenerKeys)
	serverTLS, clientTLS := relaytest.TLS(t)
	h := &harness{up: testUpstream(), log: &testlog.Buffer{}, clientTLS: clientTLS}
	logger := slog.New(slog.NewTextHandler(h.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv := testServer(cfg, h.up, serverTLS, logger)
	ln, err := net.Listen("tcp", cfg.Listeners[0].Address)
	if err != nil {
		t.Fatal(err)
	}
	h.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { srv.Serve(ctx, conn, "c1", logger) })
		}
	})
	t.Cleanup(func() {
		cancel()
		ln.Close()
		wg.Wait()
		h.up.Wait()
		if l := h.log.String(); strings.Contains(l, "wörd") || strings.Contains(l, plain("app", testPassword)) {
			t.Errorf("the log holds the password:\n%s", h.log)
		}
	})
	return h
}

// client is a test's IMAP client connection.
type client struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func (h *harness) dial(t *testing.T) *client {
	t.Helper()
	conn, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	return &client{t: t, conn: conn, r: bufio.NewReader(conn)}
}

// dialTLS connects with implicit TLS.
func (h *harness) dialTLS(t *testing.T) *client {
	c := h.dial(t)
	c.startTLS(h.clientTLS)
	return c
}

func (c *client) startTLS(config *tls.Config) {
	c.t.Helper()
	tc := tls.Client(c.conn, config)
	if err := tc.Handshake(); err != nil {
		c.t.Fatal(err)
	}
	c.conn, c.r = tc, bufio.NewReader(tc)
}

func (c *client) send(s string) {
	c.t.Helper()
	if _, err := c.conn.Write([]byte(s)); err != nil {
		c.t.Fatal(err)
	}
}

// expect reads one line and checks that it starts with prefix.
func (c *client) expect(prefix string) string {
	c.t.Helper()
	line, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("waiting for %q: %v", prefix, err)
	}
	line = strings.TrimRight(line, "\r\n")
	if !strings.HasPrefix(line, prefix) {
		c.t.Fatalf("got %q, want %q…", line, prefix)
	}
	return line
}

// expectClosed checks that the gateway closed the connection.
func (c *client) expectClosed() {
	c.t.Helper()
	if line, err := c.r.ReadString('\n'); err == nil {
		c.t.Fatalf("got %q, want the connection closed", line)
	}
}

var errUnreachable = errors.New("dial tcp: connection refused")

// waitForLog waits until the log holds want (the session line is written
// as the session ends, just after the client saw the connection close).
func waitForLog(t *testing.T, h *harness, want string) {
	t.Helper()
	for range 200 {
		if strings.Contains(h.log.String(), want) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("the log lacks %q:\n%s", want, h.log)
}
