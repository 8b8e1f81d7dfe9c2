package imapserver

import (
	"errors"
	"testing"

	"github.com/smtpgw/smtpgw/internal/config"
	"github.com/smtpgw/smtpgw/internal/relay/relaytest"
)

const testPassword = relaytest.Password

var plain = relaytest.Plain

func testUpstream() *relaytest.Upstream {
	return relaytest.NewUpstream("IMAP4rev1", "AUTH=PLAIN", "AUTH=XOAUTH2", "SASL-IR", "IDLE", "UIDPLUS")
}

// start serves an IMAP listener with the given extra keys (see
// relaytest.Config).
func start(t *testing.T, listenerKeys string, limitKeys ...string) *relaytest.Harness {
	t.Helper()
	return relaytest.Start(t, New, config.ProtocolIMAP, testUpstream(), listenerKeys, limitKeys...)
}

var errUnreachable = errors.New("dial tcp: connection refused")
