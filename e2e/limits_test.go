package e2e

import (
	"bufio"
	"crypto/tls"
	"flag"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/smtpgw/smtpgw/internal/graphtest"
	"github.com/smtpgw/smtpgw/internal/testtools"
)

// The cases of the limits' "done when", against the built binary with the
// default [limits]: what a real site sends is never refused, and one
// hostile address does not lock out the others.

// authLoadSeconds is how long TestAuthenticatedConnectionPerMessage runs;
// `-auth-load-seconds 60` is the full case (20 messages a second for a
// minute), the default a short sample of it. The sample's 80 connections
// are more than the default connections_per_minute (60), so a gateway
// that counted logged-in connections against it would refuse some.
var authLoadSeconds = flag.Int("auth-load-seconds", 4, "duration of the one-connection-per-message AUTH load")

// TestNetworkBurst: 40 connections at once from one [[network]] address,
// each sending a message, all get 250.
func TestNetworkBurst(t *testing.T) {
	fake := graphtest.New(t)
	g := startWithGraph(t, fake)
	const parallel = 40
	errs := make(chan error, parallel)
	var wg sync.WaitGroup
	for i := range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := submit(g.Addr[0], submission{From: "app@contoso.com", To: []string{"alice@contoso.com"},
				Body: fmt.Sprintf("Subject: burst %d\n\nbody\n", i)})
			errs <- err
		}()
	}
	wg.Wait()
	reportErrors(t, errs)
	fake.WaitSent(t, parallel, deliveryTimeout)
}

// TestSMTPSourceFromNetwork: Postfix's smtp-source pushing 2,000 10 KB
// messages over 20 sessions from a [[network]] address: every one is
// accepted and delivered.
func TestSMTPSourceFromNetwork(t *testing.T) {
	if testing.Short() {
		t.Skip("2,000 messages: not in -short")
	}
	source := testtools.Require(t, smtpSource, "apt-get install postfix")
	fake := graphtest.New(t)
	g := startWithGraph(t, fake)
	out, err := exec.Command(source, "-s", "20", "-m", "2000", "-l", "10240",
		"-f", "app@contoso.com", "-t", "alice@contoso.com", g.Addr[0]).CombinedOutput()
	if err != nil {
		t.Fatalf("smtp-source: %v\n%s", err, out)
	}
	fake.WaitSent(t, 2000, 2*time.Minute)
	if strings.Contains(g.logs.String(), "connection refused") {
		t.Errorf("connections refused:\n%s", g.logs)
	}
}

// TestAuthenticatedConnectionPerMessage: a script outside every
// [[network]] that logs in with AUTH LOGIN over STARTTLS on a new
// connection for each message, 20 messages a second: every message 250.
// Such a client is judged by its logins, not by how many connections its
// address opens.
func TestAuthenticatedConnectionPerMessage(t *testing.T) {
	fake := graphtest.New(t)
	g := startWithGraph(t, fake)
	const perSecond = 20
	total := perSecond * *authLoadSeconds
	tick := time.NewTicker(time.Second / perSecond)
	defer tick.Stop()
	errs := make(chan error, total)
	var wg sync.WaitGroup
	for i := range total {
		<-tick.C
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- sendAuthLogin(g.Addr[1], "127.0.0.2", i)
		}()
	}
	wg.Wait()
	reportErrors(t, errs)
	fake.WaitSent(t, total, deliveryTimeout)
}

// reportErrors reports every error the senders left in errs.
func reportErrors(t *testing.T, errs chan error) {
	t.Helper()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

// sendAuthLogin sends one message from source over STARTTLS with AUTH
// LOGIN, as a printer or PowerShell's Send-MailMessage does.
func sendAuthLogin(addr, source string, n int) error {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(source)}, Timeout: 10 * time.Second}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return err
	}
	c, err := smtp.NewClientStartTLS(conn, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		conn.Close()
		return fmt.Errorf("message %d: %w", n, err)
	}
	defer c.Close()
	if err := c.Auth(sasl.NewLoginClient("mfp", "printer-secret")); err != nil {
		return fmt.Errorf("message %d: AUTH: %w", n, err)
	}
	if _, err := sendOn(c, submission{From: "scanner@contoso.com", To: []string{"alice@contoso.com"},
		Body: fmt.Sprintf("Subject: scan %d\n\nscan\n", n)}); err != nil {
		return fmt.Errorf("message %d: %w", n, err)
	}
	return c.Quit()
}

// TestIdleConnectionsDoNotLockOut: an address outside every [[network]]
// opening 100 connections and holding them gets its per-address share
// (connections_per_address, default 20) and no more; another address, and
// the network's clients, are still served.
func TestIdleConnectionsDoNotLockOut(t *testing.T) {
	dir := t.TempDir()
	g := startGateway(t, dir, gatewayConfig(t, dir, outboxTarget(dir)))
	const perAddress = 20
	if held := len(holdIdle(t, g.Addr[0], "127.0.0.2", 100)); held != perAddress {
		t.Errorf("idle connections admitted from one address: %d, want connections_per_address (%d)", held, perAddress)
	}
	for _, source := range []string{"127.0.0.3", "127.0.0.1"} {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(source)}, Timeout: 5 * time.Second}
		conn, err := d.Dial("tcp", g.Addr[0])
		if err != nil {
			t.Fatal(err)
		}
		c := smtp.NewClient(conn)
		if err := c.Hello("client.test"); err != nil {
			t.Errorf("%s locked out: %v", source, err)
		}
		c.Close()
	}
}

// TestFewAddressesDoNotFillTheServer: a handful of addresses outside every
// [[network]] holding all the idle connections they can get do not take
// max_connections from the identified clients: a [[network]] client and a
// printer that logs in (it did earlier today) still get 250.
func TestFewAddressesDoNotFillTheServer(t *testing.T) {
	dir := t.TempDir()
	// A small max_connections keeps the test cheap: 5 addresses of 20
	// connections (connections_per_address) could fill it twice over.
	config := strings.Replace(gatewayConfig(t, dir, outboxTarget(dir)), "[server]", "[server]\nmax_connections = 40", 1)
	g := startGateway(t, dir, config)
	const printer = "127.0.3.1"
	if err := sendAuthLogin(g.Addr[1], printer, 0); err != nil {
		t.Fatalf("before the idle connections: %v", err)
	}
	held := 0
	for i := 1; i <= 5; i++ {
		held += len(holdIdle(t, g.Addr[0], fmt.Sprintf("127.0.2.%d", i), 20))
	}
	if held == 100 {
		t.Fatal("every idle connection was admitted: max_connections = 40 did not apply")
	}
	t.Logf("idle connections admitted: %d of 100", held)
	if _, err := submit(g.Addr[0], submission{From: "app@contoso.com", To: []string{"alice@contoso.com"},
		Body: "Subject: app server\n\nbody\n"}); err != nil {
		t.Errorf("[[network]] client: %v", err)
	}
	if err := sendAuthLogin(g.Addr[1], printer, 1); err != nil {
		t.Errorf("AUTH client: %v", err)
	}
}

// holdIdle opens n connections from source to addr and holds, until the
// test ends, those greeted with 220; it returns them.
func holdIdle(t *testing.T, addr, source string, n int) []net.Conn {
	t.Helper()
	var held []net.Conn
	t.Cleanup(func() {
		for _, c := range held {
			c.Close()
		}
	})
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(source)}, Timeout: 5 * time.Second}
	for range n {
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		banner, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || !strings.HasPrefix(banner, "220") {
			c.Close()
			continue
		}
		c.SetReadDeadline(time.Time{})
		held = append(held, c)
	}
	return held
}
