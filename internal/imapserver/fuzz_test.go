package imapserver

import (
	"testing"

	"github.com/smtpgw/smtpgw/internal/config"
	"github.com/smtpgw/smtpgw/internal/relay/relaytest"
)

// FuzzSession feeds arbitrary client bytes to a session over net.Pipe,
// below the network, on a plaintext listener that allows passwords and on
// a STARTTLS one, with the debug log on.
func FuzzSession(f *testing.F) {
	seeds := []string{
		"a CAPABILITY\r\nb NOOP\r\nc ID (\"name\" {3}\r\nabc)\r\nd LOGOUT\r\n",
		"a LOGIN app \"" + testPassword[:5] + "\"\r\n",
		"a LOGIN {3}\r\napp {2+}\r\nxy\r\nb SELECT INBOX\r\n",
		"a AUTHENTICATE PLAIN\r\n" + plain("app", testPassword) + "\r\n",
		"a AUTHENTICATE PLAIN =\r\na AUTHENTICATE PLAIN\r\n*\r\n",
		"a LOGIN app {99999999999}\r\n",
		"a STARTTLS\r\n\x16\x03\x01\x00",
		"\r\n\n\x00 \"\\\r\n{1}\r\n",
	}
	relaytest.Fuzz(f, New, config.ProtocolIMAP, testUpstream(), seeds)
}
