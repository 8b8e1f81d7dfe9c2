package upstream

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/smtpgw/smtpgw/internal/config"
	"github.com/smtpgw/smtpgw/internal/relay"
	"github.com/smtpgw/smtpgw/internal/relay/relaytest"
)

// step is one exchange of a scripted Exchange: it waits for a line
// starting with expect ("" for none: the greeting), then sends answer.
type step struct{ expect, answer string }

// scripted runs a TLS server on a free loopback port that plays script
// once, then echoes, and returns a dialer for it with token.
func scripted(t *testing.T, token string, script ...step) *MailboxDialer {
	t.Helper()
	serverTLS, clientTLS := relaytest.TLS(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		tc := tls.Server(conn, serverTLS)
		r := bufio.NewReader(tc)
		for _, s := range script {
			if s.expect != "" {
				line, err := r.ReadString('\n')
				if err != nil || !strings.HasPrefix(line, s.expect) {
					t.Errorf("upstream got %q, want %q…", line, s.expect)
					return
				}
			}
			io.WriteString(tc, s.answer)
		}
		io.Copy(tc, r)
	}()
	return &MailboxDialer{
		IMAPAddress: ln.Addr().String(),
		POP3Address: ln.Addr().String(),
		Token:       func(context.Context) (string, error) { return token, nil },
		TLS:         clientTLS,
		Timeout:     5 * time.Second,
	}
}

// fakeToken is a JWT-shaped token with the claims the refusal explains.
func fakeToken(roles ...string) string {
	payload, _ := json.Marshal(map[string]any{"appid": "11111111-aaaa", "oid": "22222222-bbbb", "roles": roles})
	return "eyJhbGciOiJub25lIn0." + base64.RawURLEncoding.EncodeToString(payload) + ".sig"
}

func TestIMAPLoginWithInitialResponse(t *testing.T) {
	d := scripted(t, fakeToken("IMAP.AccessAsApp"),
		step{"", "* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2] ready\r\n"},
		step{"g1 AUTHENTICATE XOAUTH2 " + base64.StdEncoding.EncodeToString([]byte("user=helpdesk@example.com\x01auth=Bearer "+fakeToken("IMAP.AccessAsApp")+"\x01\x01")),
			"g1 OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n* 1 EXISTS\r\n"},
	)
	conn, caps, err := d.Dial(context.Background(), config.ProtocolIMAP, "helpdesk@example.com")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if strings.Join(caps, " ") != "IMAP4rev1 IDLE" {
		t.Errorf("capabilities %q", caps)
	}
	// What came right after the login reaches the client first.
	r := bufio.NewReader(conn)
	if line, _ := r.ReadString('\n'); line != "* 1 EXISTS\r\n" {
		t.Errorf("first relayed line %q", line)
	}
}

// Exchange lists no capabilities in its greeting nor in its OK: the
// gateway authenticates in two steps and asks.
func TestIMAPLoginInTwoSteps(t *testing.T) {
	d := scripted(t, "opaque-token",
		step{"", "* OK The Microsoft Exchange IMAP4 service is ready.\r\n"},
		step{"g1 AUTHENTICATE XOAUTH2\r\n", "+ \r\n"},
		step{base64.StdEncoding.EncodeToString([]byte("user=a@example.com\x01auth=Bearer opaque-token\x01\x01")), "g1 OK AUTHENTICATE completed.\r\n"},
		step{"g2 CAPABILITY", "* CAPABILITY IMAP4 IMAP4rev1 AUTH=PLAIN AUTH=XOAUTH2 SASL-IR UIDPLUS ID UNSELECT CHILDREN IDLE NAMESPACE LITERAL+\r\ng2 OK CAPABILITY completed.\r\n"},
	)
	conn, caps, err := d.Dial(context.Background(), config.ProtocolIMAP, "a@example.com")
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if len(caps) != 12 || caps[1] != "IMAP4rev1" {
		t.Errorf("capabilities %q", caps)
	}
}

func TestIMAPRefusals(t *testing.T) {
	tests := []struct {
		name    string
		token   string
		script  []step
		refused bool
		want    string
	}{
		{"mailbox not granted", fakeToken("IMAP.AccessAsApp"), []step{
			{"", "* OK [CAPABILITY IMAP4rev1 SASL-IR] ready\r\n"},
			{"g1 AUTHENTICATE", "+ eyJzdGF0dXMiOiI0MDEifQ==\r\n"},
			{"\r\n", "g1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"},
		}, true, "Add-MailboxPermission -Identity a@example.com -User 22222222-bbbb -AccessRights FullAccess"},
		{"no consent", fakeToken("SMTP.SendAsApp"), []step{
			{"", "* OK ready\r\n"},
			{"g1 AUTHENTICATE", "+ \r\n"},
			{"", "g1 NO AUTHENTICATE failed.\r\n"},
		}, true, "no IMAP.AccessAsApp role"},
		{"throttled", fakeToken("IMAP.AccessAsApp"), []step{
			{"", "* OK ready\r\n"},
			{"g1 AUTHENTICATE", "+ \r\n"},
			{"", "* BAD Request is throttled. Suggested Backoff Time: 89117 milliseconds\r\n* BYE\r\n"},
		}, false, "throttled"},
		{"greeting bye", "secret-token", []step{{"", "* BYE overloaded\r\n"}}, false, "not available"},
		{"line over 4 KiB", "secret-token", []step{{"", "* OK " + strings.Repeat("x", 4<<10) + "\r\n"}}, false, "overlong line"},
		// XOAUTH2 has one error challenge; another is not answered again.
		{"challenge after the empty answer", fakeToken("IMAP.AccessAsApp"), []step{
			{"", "* OK [CAPABILITY IMAP4rev1 SASL-IR] ready\r\n"},
			{"g1 AUTHENTICATE", "+ e30=\r\n"},
			{"\r\n", "+ e30=\r\n"},
		}, false, `answered XOAUTH2 with "+ e30="`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := scripted(t, tt.token, tt.script...)
			_, _, err := d.Dial(context.Background(), config.ProtocolIMAP, "a@example.com")
			if err == nil {
				t.Fatal("no error")
			}
			if errors.Is(err, relay.ErrUpstreamRefused) != tt.refused || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q: want refused=%v and %q", err, tt.refused, tt.want)
			}
			if strings.Contains(err.Error(), tt.token) {
				t.Error("the error holds the token")
			}
		})
	}
}

func TestPOP3Login(t *testing.T) {
	d := scripted(t, "tok",
		step{"", "+OK The Microsoft Exchange POP3 service is ready.\r\n"},
		step{"AUTH XOAUTH2\r\n", "+ \r\n"},
		step{base64.StdEncoding.EncodeToString([]byte("user=a@example.com\x01auth=Bearer tok\x01\x01")), "+OK User successfully authenticated.\r\n"},
	)
	conn, _, err := d.Dial(context.Background(), config.ProtocolPOP3, "a@example.com")
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()

	d = scripted(t, fakeToken("POP.AccessAsApp"),
		step{"", "+OK ready\r\n"},
		step{"AUTH XOAUTH2\r\n", "+\r\n"},
		step{"", "-ERR Authentication failure: unknown user name or bad password.\r\n"},
	)
	_, _, err = d.Dial(context.Background(), config.ProtocolPOP3, "a@example.com")
	if !errors.Is(err, relay.ErrUpstreamRefused) || !strings.Contains(err.Error(), "New-ServicePrincipal -AppId 11111111-aaaa -ObjectId 22222222-bbbb") {
		t.Errorf("error %v", err)
	}
}

func TestUnreachable(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	d := &MailboxDialer{IMAPAddress: addr, Token: func(context.Context) (string, error) { return "t", nil }, Timeout: time.Second}
	_, _, err := d.Dial(context.Background(), config.ProtocolIMAP, "a@example.com")
	if err == nil || errors.Is(err, relay.ErrUpstreamRefused) {
		t.Errorf("error %v, want a temporary one", err)
	}
}
