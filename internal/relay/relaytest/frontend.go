package relaytest

import (
	"crypto/tls"
	"io"
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smtpgw/smtpgw/internal/clients"
	"github.com/smtpgw/smtpgw/internal/config"
	"github.com/smtpgw/smtpgw/internal/relay"
	"github.com/smtpgw/smtpgw/internal/testlog"
)

// Harness is a front end listening on a free loopback port, with the real
// gate, an Upstream as Exchange and the debug log on.
type Harness struct {
	Addr      string
	Gate      *clients.Gate
	Up        *Upstream
	Log       *testlog.Buffer
	Metrics   *prometheus.Registry // the front end's, registered alone
	ClientTLS *tls.Config          // trusts the listener's certificate
}

// Start serves the front end that newFrontend (imapserver.New,
// pop3server.New) makes for a listener of protocol with the given extra
// keys (see Config), with up as Exchange, until the test ends.
func Start(t *testing.T, newFrontend func(relay.Frontend) *relay.Frontend, protocol string, up *Upstream, listenerKeys string, limitKeys ...string) *Harness {
	t.Helper()
	cfg := Config(t, protocol, listenerKeys, limitKeys...)
	serverTLS, clientTLS := TLS(t)
	h := &Harness{Up: up, Log: &testlog.Buffer{}, Metrics: prometheus.NewPedanticRegistry(), ClientTLS: clientTLS}
	m := relay.NewMetrics()
	if err := m.Register(h.Metrics); err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(h.Log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h.Gate = newGate(t, cfg, logger)
	fe := newFrontend(frontend(cfg, h.Gate, up, m, serverTLS, logger))
	h.Addr = serve(t, cfg.Listeners[0].Address, h.Log, fe.Accept)
	t.Cleanup(up.Wait)
	return h
}

// Dial connects to the front end.
func (h *Harness) Dial(t *testing.T) *Client { return Dial(t, h.Addr) }

// Fuzz feeds arbitrary client bytes, starting from seeds, to sessions of
// the front end newFrontend makes, over net.Pipe, below the network: on a
// plaintext listener that allows passwords and on a STARTTLS one, with
// the debug log on.
func Fuzz(f *testing.F, newFrontend func(relay.Frontend) *relay.Frontend, protocol string, up *Upstream, seeds []string) {
	for _, s := range seeds {
		f.Add(false, []byte(s))
		f.Add(true, []byte(s))
	}
	serverTLS, _ := TLS(f)
	logger := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var servers [2]*relay.Frontend
	var gates [2]*clients.Gate
	for i, keys := range []string{"allow_insecure_auth = true", `tls = "starttls"`} {
		cfg := Config(f, protocol, keys)
		gates[i] = newGate(f, cfg, logger)
		servers[i] = newFrontend(frontend(cfg, gates[i], up, relay.NewMetrics(), serverTLS, logger))
	}
	f.Fuzz(func(t *testing.T, useStartTLS bool, input []byte) {
		i := 0
		if useStartTLS {
			i = 1
		}
		runSession(t, gates[i], up, protocol, servers[i].Serve, input)
	})
}

// frontend is the relay.Frontend of cfg's listener, with the real gate
// and up as Exchange.
func frontend(cfg *config.Config, gate *clients.Gate, up *Upstream, m *relay.Metrics, serverTLS *tls.Config, logger *slog.Logger) relay.Frontend {
	return relay.Frontend{
		Listener: cfg.Listeners[0],
		TLS:      func() *tls.Config { return serverTLS },
		Backend:  up.Backend(gate, m),
		Logger:   logger,
	}
}
