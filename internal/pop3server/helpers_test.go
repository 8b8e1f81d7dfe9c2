package pop3server

import (
	"crypto/tls"
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smtpgw/smtpgw/internal/clients"
	"github.com/smtpgw/smtpgw/internal/config"
	"github.com/smtpgw/smtpgw/internal/relay"
	"github.com/smtpgw/smtpgw/internal/relay/relaytest"
	"github.com/smtpgw/smtpgw/internal/testlog"
)

type harness struct {
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

// start serves a POP3 listener with the given extra listener keys on a
// free loopback port, with the debug log.
func start(t *testing.T, listenerKeys string) *harness {
	t.Helper()
	cfg := relaytest.Config(t, config.ProtocolPOP3, listenerKeys)
	serverTLS, clientTLS := relaytest.TLS(t)
	h := &harness{up: relaytest.NewUpstream(), log: &testlog.Buffer{}, clientTLS: clientTLS, metrics: prometheus.NewPedanticRegistry()}
	m := relay.NewMetrics()
	if err := m.Register(h.metrics); err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(h.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv := testServer(cfg, relaytest.Gate(t, cfg, logger), h.up, m, serverTLS, logger)
	h.addr = relaytest.Serve(t, cfg.Listeners[0].Address, h.log, srv.Accept)
	t.Cleanup(h.up.Wait)
	return h
}

func (h *harness) dial(t *testing.T) *relaytest.Client { return relaytest.Dial(t, h.addr) }
