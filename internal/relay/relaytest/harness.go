package relaytest

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smtpgw/smtpgw/internal/config"
	"github.com/smtpgw/smtpgw/internal/testlog"
)

// User and Password are the one account of Config and NewUpstream;
// Password has a space, a quote and a non-ASCII letter so that every
// quoting path is taken, and no log may ever show it.
const (
	User     = "app"
	Password = "pa ss\"wörd"
	Mailbox  = "helpdesk@example.com"
)

// passwordHash is a bcrypt hash (of another password: the fake upstream
// checks passwords itself; the hash only makes the configuration valid).
const passwordHash = "$2a$04$uV9ZIi0T0p1Ij1Bj9m0UNu3c7tTpVxgPOUUhpPCWq.C8tvUOwXO0m"

// Config loads, through the real loader, a configuration with one
// listener of protocol on a free loopback port with the given extra keys
// (for example `tls = "starttls"`), max_errors = 5, and a reading user.
func Config(t testing.TB, protocol, listenerKeys string) *config.Config {
	t.Helper()
	t.Setenv(config.ClientSecretEnv, "test-secret")
	cfg, err := config.Parse([]byte(`
[[listener]]
address = "127.0.0.1:0"
protocol = "`+protocol+`"
`+listenerKeys+`

[graph]
tenant_id = "contoso.onmicrosoft.com"
client_id = "00000000-0000-0000-0000-000000000001"

[limits]
max_errors = 5

[[user]]
username = "`+User+`"
password_hash = "`+passwordHash+`"
read_mailbox = "`+Mailbox+`"
`), "test.toml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// NewUpstream is an Exchange that knows User with Password and offers
// capabilities.
func NewUpstream(capabilities ...string) *Upstream {
	return &Upstream{Users: map[string]string{User: Password}, Mailbox: Mailbox, Capabilities: capabilities}
}

// Serve listens on address and runs serve for each connection until the
// test ends; then it stops, waits for the sessions, and checks that log
// never held Password. It returns the address listened on.
func Serve(t *testing.T, address string, log *testlog.Buffer, serve func(context.Context, net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", address)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { serve(ctx, conn) })
		}
	})
	t.Cleanup(func() {
		cancel()
		ln.Close()
		wg.Wait()
		if l := log.String(); ShowsPassword(l) || strings.Contains(l, Plain(User, Password)) {
			t.Errorf("the log holds the password:\n%s", l)
		}
	})
	return ln.Addr().String()
}

// Plain is a SASL PLAIN response, base64-encoded.
func Plain(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
}

// Client is a test's line-based client connection.
type Client struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

// Dial connects to addr; the connection closes when the test ends.
func Dial(t *testing.T, addr string) *Client {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	return &Client{t: t, conn: conn, r: bufio.NewReader(conn)}
}

// StartTLS does the client's TLS handshake.
func (c *Client) StartTLS(config *tls.Config) {
	c.t.Helper()
	tc := tls.Client(c.conn, config)
	if err := tc.Handshake(); err != nil {
		c.t.Fatal(err)
	}
	c.conn, c.r = tc, bufio.NewReader(tc)
}

// Send writes s as it is.
func (c *Client) Send(s string) {
	c.t.Helper()
	if _, err := c.conn.Write([]byte(s)); err != nil {
		c.t.Fatal(err)
	}
}

// Expect reads one line and checks that it starts with prefix.
func (c *Client) Expect(prefix string) string {
	c.t.Helper()
	line, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("waiting for %q: %v", prefix, err)
	}
	line = strings.TrimRight(line, "\r\n")
	if !strings.HasPrefix(line, prefix) {
		c.t.Fatalf("got %q, want %q…", line, prefix)
	}
	return line
}

// ExpectClosed checks that the server closed the connection.
func (c *Client) ExpectClosed() {
	c.t.Helper()
	if line, err := c.r.ReadString('\n'); err == nil {
		c.t.Fatalf("got %q, want the connection closed", line)
	}
}

// WaitForLog waits until log holds want (a session's line is written as
// it ends, just after the client saw the connection close).
func WaitForLog(t *testing.T, log *testlog.Buffer, want string) {
	t.Helper()
	for range 200 {
		if strings.Contains(log.String(), want) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("the log lacks %q:\n%s", want, log)
}

// RunSession runs serve on one end of a net.Pipe while input is written
// to the other, then closed, with the debug log on: the body of the front
// ends' fuzz targets. (Whether the log shows a password is checked by the
// unit tests: a fuzzer soon sends the password as a user name.)
func RunSession(up *Upstream, serve func(context.Context, net.Conn, *slog.Logger), input []byte) {
	logger := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelDebug}))
	clientEnd, serverEnd := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		serve(context.Background(), serverEnd, logger)
	}()
	go io.Copy(io.Discard, clientEnd)
	clientEnd.Write(input)
	clientEnd.Close()
	<-done
	up.Wait()
}

// ShowsPassword reports whether log holds Password, as it is or quoted.
func ShowsPassword(log string) bool {
	quoted := strconv.Quote(Password)
	return strings.Contains(log, Password) || strings.Contains(log, quoted[1:len(quoted)-1])
}
