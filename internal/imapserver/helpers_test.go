package imapserver

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smtpgw/smtpgw/internal/clients"
	"github.com/smtpgw/smtpgw/internal/config"
	"github.com/smtpgw/smtpgw/internal/relay"
	"github.com/smtpgw/smtpgw/internal/relay/relaytest"
	"github.com/smtpgw/smtpgw/internal/testlog"
)

const testPassword = relaytest.Password

var plain = relaytest.Plain

type harness struct {
	gate      *clients.Gate
	up        *relaytest.Upstream
	log       *testlog.Buffer
	addr      string
	clientTLS *tls.Config
	metrics   *prometheus.Registry
}

// testServer is the server of cfg's listener, with the real gate and up
// as Exchange.
func testServer(cfg *config.Config, gate *clients.Gate, up *relaytest.Upstream, m *relay.Metrics, serverTLS *tls.Config, logger *slog.Logger) *Server {
	return New(relay.Frontend{
		Listener: cfg.Listeners[0],
		TLS:      func() *tls.Config { return serverTLS },
		Backend:  up.Backend(gate, m),
		Logger:   logger,
	})
}

func testUpstream() *relaytest.Upstream {
	return relaytest.NewUpstream("IMAP4rev1", "AUTH=PLAIN", "AUTH=XOAUTH2", "SASL-IR", "IDLE", "UIDPLUS")
}

// start serves an IMAP listener with the given extra listener keys on a
// free loopback port, with the debug log.
func start(t *testing.T, listenerKeys string, limitKeys ...string) *harness {
	t.Helper()
	cfg := relaytest.Config(t, config.ProtocolIMAP, listenerKeys, limitKeys...)
	serverTLS, clientTLS := relaytest.TLS(t)
	h := &harness{up: testUpstream(), log: &testlog.Buffer{}, clientTLS: clientTLS, metrics: prometheus.NewPedanticRegistry()}
	m := relay.NewMetrics()
	if err := m.Register(h.metrics); err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(h.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h.gate = relaytest.Gate(t, cfg, logger)
	srv := testServer(cfg, h.gate, h.up, m, serverTLS, logger)
	h.addr = relaytest.Serve(t, cfg.Listeners[0].Address, h.log, srv.Accept)
	t.Cleanup(h.up.Wait)
	return h
}

func (h *harness) dial(t *testing.T) *relaytest.Client { return relaytest.Dial(t, h.addr) }

// dialTLS connects with implicit TLS.
func (h *harness) dialTLS(t *testing.T) *relaytest.Client {
	c := h.dial(t)
	c.StartTLS(h.clientTLS)
	return c
}

var errUnreachable = errors.New("dial tcp: connection refused")

// quote writes s as an IMAP quoted string.
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}
