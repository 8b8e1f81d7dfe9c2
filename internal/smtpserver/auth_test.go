package smtpserver

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/emersion/go-sasl"

	"github.com/smtpgw/smtpgw/internal/config"
)

func TestLoginServer(t *testing.T) {
	tests := []struct {
		name      string
		responses [][]byte // nil first: no initial response
		prompts   []string // challenges expected before the last response
	}{
		{"initial response", [][]byte{[]byte("user"), []byte("pw")}, []string{"Password:"}},
		{"challenges", [][]byte{nil, []byte("user"), []byte("pw")}, []string{"Username:", "Password:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var gotUser, gotPassword string
			l := &loginServer{authenticate: func(u, p string) error { gotUser, gotPassword = u, p; return nil }}
			for i, resp := range tt.responses {
				challenge, done, err := l.Next(resp)
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				last := i == len(tt.responses)-1
				if done != last {
					t.Fatalf("step %d: done %v", i, done)
				}
				if !last && string(challenge) != tt.prompts[i] {
					t.Fatalf("step %d: challenge %q, want %q", i, challenge, tt.prompts[i])
				}
			}
			if gotUser != "user" || gotPassword != "pw" {
				t.Errorf("authenticated %q/%q", gotUser, gotPassword)
			}
			if _, _, err := l.Next([]byte("more")); !errors.Is(err, sasl.ErrUnexpectedClientResponse) {
				t.Errorf("response after the end: %v", err)
			}
		})
	}
}

// TestAuthAdvertised checks where AUTH is offered: only where it may run.
func TestAuthAdvertised(t *testing.T) {
	withUsers := startServer(t, testConfig(t))
	noUsersCfg := testConfig(t)
	noUsersCfg.Users = nil
	noUsers := startServer(t, noUsersCfg)
	tests := []struct {
		name      string
		ts        *testServer
		listener  int
		wantAuth  bool
		wantReply string // to AUTH PLAIN with valid credentials
	}{
		{"plain", withUsers, plainListener, false, "538 5.7.11 "},
		{"plain with allow_insecure_auth", withUsers, insecureAuthListener, true, "235 2.0.0 "},
		{"starttls before TLS", withUsers, startTLSListener, false, "538 5.7.11 "},
		{"implicit TLS", withUsers, implicitListener, true, "235 2.0.0 "},
		{"implicit TLS, no accounts", noUsers, implicitListener, false, "502 5.5.1 "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tlsConfig = clientTLS()
			if tt.ts.cfg.Listeners[tt.listener].TLS != config.TLSImplicit {
				tlsConfig = nil
			}
			r := dialRaw(t, tt.ts.addrs[tt.listener], tlsConfig, nil)
			ehlo := r.greet()
			if got := strings.Contains(ehlo, "AUTH PLAIN LOGIN"); got != tt.wantAuth {
				t.Errorf("AUTH advertised %v, want %v:\n%s", got, tt.wantAuth, ehlo)
			}
			if wantStartTLS := tt.listener == startTLSListener; strings.Contains(ehlo, "STARTTLS") != wantStartTLS {
				t.Errorf("STARTTLS advertised %v, want %v", !wantStartTLS, wantStartTLS)
			}
			r.cmd("AUTH PLAIN "+plainIR(scannerUser, scannerPassword), tt.wantReply)
		})
	}
}

func TestLoginIsLogged(t *testing.T) {
	ts := startServer(t, testConfig(t))
	r := dialRaw(t, ts.addrs[implicitListener], clientTLS(), nil)
	r.greet()
	r.cmd("AUTH PLAIN "+plainIR(scannerUser, "a secret guess"), "535 5.7.8 ")
	r.cmd("AUTH PLAIN "+plainIR(scannerUser, scannerPassword), "235 2.0.0 ")
	logs := ts.logs.String()
	if !strings.Contains(logs, `msg="authentication failed" conn=1 client=127.0.0.1:`) || !strings.Contains(logs, `username `+scannerUser) {
		t.Errorf("failure not logged with connection, client and username:\n%s", logs)
	}
	if bytes.Contains([]byte(logs), []byte("a secret guess")) || strings.Contains(logs, scannerPassword) {
		t.Error("log contains a password")
	}
}

// TestOverlongUsername: a username past 256 bytes is refused unchecked, so
// it never reaches bcrypt or the log.
func TestOverlongUsername(t *testing.T) {
	ts := startServer(t, testConfig(t))
	r := dialRaw(t, ts.addrs[implicitListener], clientTLS(), nil)
	r.greet()
	long := strings.Repeat("u", 257)
	r.cmd("AUTH PLAIN "+plainIR(long, scannerPassword), "501 5.5.2 ")
	if strings.Contains(ts.logs.String(), long) {
		t.Error("the overlong username was logged")
	}
}
