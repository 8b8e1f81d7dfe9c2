package imapserver

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/smtpgw/smtpgw/internal/relay/relaytest"
	"github.com/smtpgw/smtpgw/internal/testlog"
)

// FuzzSession feeds arbitrary client bytes to a session over net.Pipe,
// below the network, on a plaintext listener that allows passwords and on
// a STARTTLS one, and checks that no password reaches the debug log.
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
	for _, s := range seeds {
		f.Add(false, []byte(s))
		f.Add(true, []byte(s))
	}
	serverTLS, _ := relaytest.TLS(f)
	none, starttls := testConfig(f, "allow_insecure_auth = true"), testConfig(f, `tls = "starttls"`)
	f.Fuzz(func(t *testing.T, useStartTLS bool, input []byte) {
		cfg := none
		if useStartTLS {
			cfg = starttls
		}
		log := &testlog.Buffer{}
		logger := slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug}))
		up := testUpstream()
		srv := testServer(cfg, up, serverTLS, logger)
		clientEnd, serverEnd := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			srv.Serve(context.Background(), serverEnd, "fuzz", logger)
		}()
		go io.Copy(io.Discard, clientEnd)
		clientEnd.Write(input)
		clientEnd.Close()
		<-done
		up.Wait()
		if strings.Contains(log.String(), "wörd") {
			t.Fatalf("the log holds the password:\n%s", log)
		}
	})
}
