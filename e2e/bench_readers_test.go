package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smtpgw/smtpgw/internal/graphtest"
	"github.com/smtpgw/smtpgw/internal/relay/relaytest"
	"github.com/smtpgw/smtpgw/internal/upstream"
)

// imapClient is a minimal IMAP client for the benchmarks: commands one at
// a time, literals read into io.Discard.
type imapClient struct {
	conn net.Conn
	r    *bufio.Reader
}

func dialIMAP(tb testing.TB, addr string) *imapClient {
	tb.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		tb.Fatal(err)
	}
	c := &imapClient{conn: conn, r: bufio.NewReaderSize(conn, 64<<10)}
	if line, err := c.r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "* OK") {
		tb.Fatalf("greeting %q, %v", line, err)
	}
	return c
}

// command sends "t <cmd>" and reads to the tagged answer, skipping
// literals; it returns the literal bytes read.
func (c *imapClient) command(tb testing.TB, cmd string) int64 {
	tb.Helper()
	if _, err := io.WriteString(c.conn, "t "+cmd+"\r\n"); err != nil {
		tb.Fatal(err)
	}
	var literal int64
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			tb.Fatalf("%s: %v", cmd, err)
		}
		if strings.HasPrefix(line, "t ") {
			if !strings.HasPrefix(line, "t OK") {
				tb.Fatalf("%s: %s", cmd, line)
			}
			return literal
		}
		if i := strings.LastIndex(line, "{"); i >= 0 && strings.HasSuffix(line, "}\r\n") {
			n, _ := strconv.ParseInt(line[i+1:len(line)-3], 10, 64)
			m, err := io.CopyN(io.Discard, c.r, n)
			literal += m
			if err != nil {
				tb.Fatal(err)
			}
		}
	}
}

// BenchmarkReaders measures the gateway against Dovecot in one run: a 30
// MB FETCH directly and through it (the time ratio, and the gateway's
// peak memory over idle), and the median of 100 logins, direct XOAUTH2
// with a token at hand versus LOGIN through the gateway with its token
// cached, the default auth_min_duration and a hash-password hash.
func BenchmarkReaders(b *testing.B) {
	r := startReaders(b, graphtest.ExchangeAudience+"/.default")
	raw := testMessage(30 << 20)
	r.d.AddMessage(b, readMailbox, raw)
	graph, err := upstream.NewGraph(r.fake.GraphConfig(b), upstream.Options{RootCAs: r.fake.CertPool()})
	if err != nil {
		b.Fatal(err)
	}
	token, err := graph.Token(context.Background(), graphtest.ExchangeAudience+"/.default")
	if err != nil {
		b.Fatal(err)
	}
	xoauth2 := base64.StdEncoding.EncodeToString(upstream.XOAUTH2(readMailbox, token))
	login := fmt.Sprintf("LOGIN helpdesk-app %q", readPassword)
	direct := func() *imapClient {
		c := dialIMAP(b, r.d.IMAPAddress)
		c.command(b, "AUTHENTICATE XOAUTH2 "+xoauth2)
		return c
	}
	gateway := func() *imapClient {
		c := dialIMAP(b, r.imapTLS)
		c.command(b, login)
		return c
	}
	fetch := func(c *imapClient) time.Duration {
		c.command(b, "EXAMINE INBOX")
		start := time.Now()
		if n := c.command(b, "UID FETCH 1 BODY.PEEK[]"); n != int64(len(raw)) {
			b.Fatalf("fetched %d bytes, want %d", n, len(raw))
		}
		elapsed := time.Since(start)
		c.command(b, "LOGOUT")
		c.conn.Close()
		return elapsed
	}
	gateway().command(b, "LOGOUT") // the token is cached from here on
	time.Sleep(time.Second)
	idle := procStatus(b, r.g, "VmRSS")

	b.ResetTimer()
	var viaDirect, viaGateway time.Duration
	for range b.N {
		viaDirect += fetch(direct())
		viaGateway += fetch(gateway())
	}
	b.StopTimer()
	peak := procStatus(b, r.g, "VmHWM")
	b.ReportMetric(float64(viaGateway)/float64(viaDirect), "fetch-gateway/direct")
	b.ReportMetric(float64(peak-idle)/(1<<20), "peak-over-idle-MB")

	timeLogin := func(open func() *imapClient) time.Duration {
		var times []time.Duration
		for range 100 {
			start := time.Now()
			c := open()
			times = append(times, time.Since(start))
			c.conn.Close()
		}
		slices.Sort(times)
		return times[50]
	}
	d, g := timeLogin(direct), timeLogin(gateway)
	b.ReportMetric(float64(d.Microseconds())/1000, "login-direct-ms")
	b.ReportMetric(float64(g.Microseconds())/1000, "login-gateway-ms")
}

// BenchmarkIdleIMAPSessions reports what 1,000 logged-in, idle IMAP
// sessions cost the gateway (VmRSS over its idle footprint). Exchange is
// a stand-in that accepts any XOAUTH2 and then stays silent: a thousand
// Dovecot processes would measure Dovecot.
func BenchmarkIdleIMAPSessions(b *testing.B) {
	const sessions = 1000
	fake := graphtest.New(b)
	dir := b.TempDir()
	serverTLS, _ := relaytest.TLS(b)
	exchange, err := tls.Listen("tcp", "127.0.0.1:0", serverTLS)
	if err != nil {
		b.Fatal(err)
	}
	defer exchange.Close()
	go silentExchange(exchange)
	caFile := filepath.Join(dir, "ca.pem")
	fakeCA, _ := os.ReadFile(fake.WriteCAFile(dir))
	if err := os.WriteFile(caFile, append(fakeCA, relaytest.CertificatePEM(serverTLS)...), 0o600); err != nil {
		b.Fatal(err)
	}
	config := fmt.Sprintf(`
[server]
max_connections = 2000

[[listener]]
address = "127.0.0.1:0"
protocol = "imap"
tls = "implicit"

[queue]
dir = %q

[exchange]
imap_address = %q

[limits]
connections_per_address = 2000
connections_per_minute = 100000
auth_min_duration = "1ms"

[[user]]
username = "helpdesk-app"
password_hash = %q
read_mailbox = %q

%s`, filepath.Join(dir, "spool"), exchange.Addr().String(), bcryptHash(b, readPassword), readMailbox, fake.GraphTOML(b))
	g := startGateway(b, dir, config, "SSL_CERT_FILE="+caFile)
	login := fmt.Sprintf("LOGIN helpdesk-app %q", readPassword)
	first := dialIMAP(b, g.Addr[0]) // the token is cached from here on
	first.command(b, login)
	time.Sleep(time.Second)
	idle := procStatus(b, g, "VmRSS")
	b.ResetTimer()
	for range b.N {
		clients := make([]*imapClient, 0, sessions)
		for range sessions {
			c := dialIMAP(b, g.Addr[0])
			c.command(b, login)
			clients = append(clients, c)
		}
		time.Sleep(time.Second)
		b.StopTimer()
		b.ReportMetric(float64(procStatus(b, g, "VmRSS")-idle)/(1<<20), "MB-per-1000-sessions")
		for _, c := range clients {
			c.conn.Close()
		}
		b.StartTimer()
	}
}

// silentExchange accepts every XOAUTH2 login and then says nothing more,
// as an idle mailbox.
func silentExchange(ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer conn.Close()
			io.WriteString(conn, "* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2 IDLE] ready\r\n")
			r := bufio.NewReader(conn)
			if _, err := r.ReadString('\n'); err != nil {
				return
			}
			io.WriteString(conn, "g1 OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n")
			io.Copy(io.Discard, r)
		}()
	}
}
