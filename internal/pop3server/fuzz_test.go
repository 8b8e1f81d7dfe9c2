package pop3server

import (
	"io"
	"log/slog"
	"testing"

	"github.com/smtpgw/smtpgw/internal/clients"
	"github.com/smtpgw/smtpgw/internal/config"
	"github.com/smtpgw/smtpgw/internal/relay"
	"github.com/smtpgw/smtpgw/internal/relay/relaytest"
)

// FuzzSession feeds arbitrary client bytes to a session over net.Pipe,
// below the network, on a plaintext listener that allows passwords and on
// an STLS one, with the debug log on.
func FuzzSession(f *testing.F) {
	seeds := []string{
		"CAPA\r\nNOOP\r\nAUTH\r\nQUIT\r\n",
		"USER app\r\nPASS " + relaytest.Password + "\r\nSTAT\r\n",
		"AUTH PLAIN " + relaytest.Plain("app", relaytest.Password) + "\r\n",
		"AUTH PLAIN\r\n*\r\nAUTH PLAIN =\r\nAUTH LOGIN\r\n",
		"STLS\r\n\x16\x03\x01\x00",
		"PASS\twörd\r\n\n\r\x00\r\n",
	}
	for _, s := range seeds {
		f.Add(false, []byte(s))
		f.Add(true, []byte(s))
	}
	serverTLS, _ := relaytest.TLS(f)
	logger := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var servers [2]*Server
	var gates [2]*clients.Gate
	up := relaytest.NewUpstream()
	for i, keys := range []string{"allow_insecure_auth = true", `tls = "starttls"`} {
		cfg := relaytest.Config(f, config.ProtocolPOP3, keys)
		gates[i] = relaytest.Gate(f, cfg, logger)
		servers[i] = testServer(cfg, gates[i], up, relay.NewMetrics(), serverTLS, logger)
	}
	f.Fuzz(func(t *testing.T, useSTLS bool, input []byte) {
		i := 0
		if useSTLS {
			i = 1
		}
		relaytest.RunSession(t, gates[i], up, config.ProtocolPOP3, servers[i].Serve, input)
	})
}
