package smtpserver

import (
	"encoding/base64"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
)

func TestDebugConversation(t *testing.T) {
	cfg := testConfig(t)
	cfg.Log.DebugPrefixes = []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}
	ts := startServerLogging(t, cfg, slog.LevelDebug)
	credentials := base64.StdEncoding.EncodeToString([]byte("\x00" + scannerUser + "\x00" + scannerPassword))

	c := dialRaw(t, ts.addrs[insecureAuthListener], nil, &net.TCPAddr{IP: net.ParseIP("127.0.0.2")})
	c.greet()
	c.cmd("AUTH PLAIN "+credentials, "235 ")
	c.cmd("MAIL FROM:<"+scannerMailbox+">", "250 ")
	c.cmd("RCPT TO:<someone@example.com>", "250 ")
	c.data("Subject: scan\r\n\r\nconfidential body\r\n", "250 ")
	c.cmd("QUIT", "221 ")

	// Not in debug_clients: not logged line by line.
	other := dialRaw(t, ts.addrs[insecureAuthListener], nil, &net.TCPAddr{IP: net.ParseIP("127.0.0.3")})
	other.greet()
	other.cmd("NOOP", "250 ")

	logs := ts.logs.String()
	for _, want := range []string{`line="AUTH PLAIN [redacted]"`, `line="MAIL FROM:<` + scannerMailbox + `>"`, "data_bytes=", `line="235 2.0.0 Authentication succeeded"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
	for _, secret := range []string{credentials, "confidential body", "NOOP"} {
		if strings.Contains(logs, secret) {
			t.Errorf("log holds %q:\n%s", secret, logs)
		}
	}
}
