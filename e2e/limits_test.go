package e2e

import (
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
)

// The cases of the limits' "done when", against the built binary with the
// default [limits]: what a real site sends is never refused, and one
// hostile address does not lock out the others.

// authLoadSeconds is how long TestAuthenticatedConnectionPerMessage runs;
// `-auth-load-seconds 60` is the full case (20 messages a second for a
// minute), the default a short sample of it.
var authLoadSeconds = flag.Int("auth-load-seconds", 3, "duration of the one-connection-per-message AUTH load")

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
	if _, err := exec.LookPath(smtpSource); err != nil {
		t.Skipf("smtp-source is not installed (%v): apt-get install postfix", err)
	}
	fake := graphtest.New(t)
	g := startWithGraph(t, fake)
	out, err := exec.Command(smtpSource, "-s", "20", "-m", "2000", "-l", "10240",
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
// opening 100 connections and holding them gets its per-address share;
// another address, and the network's clients, are still served.
func TestIdleConnectionsDoNotLockOut(t *testing.T) {
	dir := t.TempDir()
	g := startGateway(t, dir, gatewayConfig(t, dir, outboxTarget(dir)))
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 5 * time.Second}
	for range 100 {
		c, err := d.Dial("tcp", g.Addr[0])
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
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
