package pop3server

import (
	"testing"

	"github.com/smtpgw/smtpgw/internal/config"
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
	relaytest.Fuzz(f, New, config.ProtocolPOP3, relaytest.NewUpstream(), seeds)
}
