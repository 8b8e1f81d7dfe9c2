package pop3server

import (
	"testing"

	"github.com/smtpgw/smtpgw/internal/config"
	"github.com/smtpgw/smtpgw/internal/relay/relaytest"
)

// start serves a POP3 listener with the given extra listener keys (see
// relaytest.Config).
func start(t *testing.T, listenerKeys string) *relaytest.Harness {
	t.Helper()
	return relaytest.Start(t, New, config.ProtocolPOP3, relaytest.NewUpstream(), listenerKeys)
}
