package relaytest

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/crypto/bcrypt"

	"github.com/smtpgw/smtpgw/internal/clients"
	"github.com/smtpgw/smtpgw/internal/config"
	"github.com/smtpgw/smtpgw/internal/relay"
	"github.com/smtpgw/smtpgw/internal/testlog"
)

// The accounts of Config: User reads Mailbox; Sender may only send.
// Password has a space, a quote and a non-ASCII letter so that every
// quoting path is taken, and no log may ever show it.
const (
	User     = "app"
	Sender   = "printer"
	Password = "pa ss\"wörd"
	Mailbox  = "helpdesk@example.com"
)

// Config loads, through the real loader, a configuration with one
// listener of protocol on a free loopback port with the given extra keys
// (for example `tls = "starttls"`), max_errors = 5, per-address limits
// that a fuzzer's thousands of sessions a second stay under (and
// limitKeys), a reading user and a sending one, both with Password.
func Config(t testing.TB, protocol, listenerKeys string, limitKeys ...string) *config.Config {
	t.Helper()
	t.Setenv(config.ClientSecretEnv, "test-secret")
	hash, err := bcrypt.GenerateFromPassword([]byte(Password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
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
errors_before_delay = 5
auth_min_duration = "1ms"
connections_per_address = 100000
connections_per_minute = 100000000
`+strings.Join(limitKeys, "\n")+`

[[user]]
username = "`+User+`"
password_hash = "`+string(hash)+`"
read_mailbox = "`+Mailbox+`"

[[user]]
username = "`+Sender+`"
password_hash = "`+string(hash)+`"
mailbox = "printer@example.com"
`), "test.toml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// NewUpstream is an Exchange that offers capabilities after login.
func NewUpstream(capabilities ...string) *Upstream {
	return &Upstream{Capabilities: capabilities}
}

// newGate is the real gate of cfg, logging to logger.
func newGate(t testing.TB, cfg *config.Config, logger *slog.Logger) *clients.Gate {
	t.Helper()
	gate, err := clients.New(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	return gate
}

// serve listens on address and runs accept (a front end's Accept) until
// the test ends; then it stops, waits for the sessions, and checks that
// log, a debug log, holds the clients' lines but never Password. It
// returns the address listened on.
func serve(t *testing.T, address string, log *testlog.Buffer, accept func(context.Context, net.Listener)) string {
	t.Helper()
	ln, err := net.Listen("tcp", address)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { accept(ctx, ln) })
	t.Cleanup(func() {
		cancel()
		ln.Close()
		wg.Wait()
		l := log.String()
		if !strings.Contains(l, "dir=C") {
			t.Errorf("the debug log holds no line from a client, so the password check below proves nothing:\n%s", l)
		}
		if ShowsPassword(l) || strings.Contains(l, Plain(User, Password)) {
			t.Errorf("the log holds the password:\n%s", l)
		}
	})
	return ln.Addr().String()
}

// Plain is a SASL PLAIN response, base64-encoded.
func Plain(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
}

// Quote writes s as an IMAP quoted string.
func Quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
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

// Close closes the connection, as a client that leaves.
func (c *Client) Close() { c.conn.Close() }

// ExpectClosed checks that the server closed the connection.
func (c *Client) ExpectClosed() {
	c.t.Helper()
	line, err := c.r.ReadString('\n')
	var timeout net.Error
	switch {
	case err == nil:
		c.t.Fatalf("got %q, want the connection closed", line)
	case errors.As(err, &timeout) && timeout.Timeout():
		c.t.Fatal("the connection stayed open")
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

// runSession admits one end of a net.Pipe through gate and runs serve
// on it while input is written to the other end, then closed: the body of
// Fuzz. (Whether the log shows a password is checked by the unit tests: a
// fuzzer soon sends the password as a user name.)
func runSession(t *testing.T, gate *clients.Gate, up *Upstream, protocol string, serve func(context.Context, *clients.Conn), input []byte) {
	clientEnd, serverEnd := net.Pipe()
	c, err := gate.Admit(serverEnd, clients.Admission{Protocol: protocol})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		serve(context.Background(), c)
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

// CheckMetrics checks the reading front ends' metrics in reg after one
// login over protocol with outcome, and when it succeeded the bytes
// relayed: in from the client, out to it.
func CheckMetrics(t *testing.T, reg prometheus.Gatherer, protocol, outcome string, in, out int) {
	t.Helper()
	want := fmt.Sprintf(`# HELP smtpgw_read_logins_total IMAP and POP3 logins by outcome: ok, bad_credentials, throttled, upstream_refused, upstream_unavailable.
# TYPE smtpgw_read_logins_total counter
smtpgw_read_logins_total{outcome=%q,protocol=%q} 1
`, outcome, protocol)
	if outcome == relay.LoginOK {
		want += fmt.Sprintf(`# HELP smtpgw_read_relayed_bytes_total Bytes relayed between reading clients and Exchange; direction in is from the client.
# TYPE smtpgw_read_relayed_bytes_total counter
smtpgw_read_relayed_bytes_total{direction="in",protocol=%[1]q} %[2]d
smtpgw_read_relayed_bytes_total{direction="out",protocol=%[1]q} %[3]d
`, protocol, in, out)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "smtpgw_read_logins_total", "smtpgw_read_relayed_bytes_total"); err != nil {
		t.Error(err)
	}
}
