package e2e

import (
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/smtpgw/smtpgw/internal/graphtest"
	"github.com/smtpgw/smtpgw/internal/relay/relaytest"
	"github.com/smtpgw/smtpgw/internal/testtools"
)

// browse loads url in headless Chromium with a fresh profile and no
// network of its own, with extra flags (--dump-dom, --screenshot=…), and
// returns what it printed.
func browse(t *testing.T, browser, url string, extra ...string) string {
	t.Helper()
	profile := t.TempDir()
	args := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + profile}, extra...)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, browser, append(args, url)...)
	cmd.Env = append(os.Environ(), "HOME="+profile)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %v: %v", extra, err)
	}
	return string(out)
}

// TestStatusPageInBrowserDuringOutage loads the status page of a gateway
// whose client secret Entra ID refuses in a real browser: it names the
// AADSTS code and what to do, and shows the held message's events.
// SMTPGW_STATUS_SCREENSHOT=FILE also saves a phone-sized screenshot (the
// one in docs/).
func TestStatusPageInBrowserDuringOutage(t *testing.T) {
	browser := testtools.Require(t, "chromium", "apt-get install chromium")
	o := startWithWrongSecret(t)
	id := mustSubmit(t, o.g.Addr[0], submission{From: "scanner@contoso.com", To: []string{"alice@contoso.com"},
		Body: "Subject: scan\n\npage\n"})
	waitStatus(t, o.metrics, func(st status) bool { return !st.Upstream.Up && st.Queue.Held == 1 })

	dom := browse(t, browser, o.metrics+"/", "--dump-dom")
	secret := fmt.Sprintf("expires in %d day(s)", secretDaysLeft)
	for _, want := range []string{"upstream down", "AADSTS7000215", "client_secret_file", id, "alice@contoso.com", "accepted", "held", "graph client secret", secret} {
		if !strings.Contains(dom, want) {
			t.Errorf("the rendered page lacks %q:\n%s", want, dom)
		}
	}
	if path := os.Getenv("SMTPGW_STATUS_SCREENSHOT"); path != "" {
		abs, err := filepath.Abs(path)
		if err != nil {
			t.Fatal(err)
		}
		browse(t, browser, o.metrics+"/", "--screenshot="+abs, "--window-size=390,1300", "--hide-scrollbars")
	}
}

// metricName is an smtpgw metric name as a page or a rule writes it.
var metricName = regexp.MustCompile(`smtpgw_[a-z0-9_]*[a-z0-9]`)

// namedMetrics returns the smtpgw metric names that files name, each with
// the first file that names it.
func namedMetrics(t *testing.T, files []string) map[string]string {
	t.Helper()
	names := map[string]string{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range metricName.FindAllString(string(data), -1) {
			if _, seen := names[name]; !seen {
				names[name] = strings.TrimPrefix(f, "../")
			}
		}
	}
	return names
}

// monitoringNames are the smtpgw metric names the shipped dashboard and
// alert rules use and the pages of docs/ name, each with where it is named.
func monitoringNames(t *testing.T) map[string]string {
	t.Helper()
	deploy := namedMetrics(t, []string{
		filepath.Join("..", "deploy", "monitoring", "smtpgw-dashboard.json"),
		filepath.Join("..", "deploy", "monitoring", "smtpgw-alerts.yml"),
	})
	if len(deploy) < 10 {
		t.Fatalf("found only %v in deploy/monitoring", slices.Sorted(maps.Keys(deploy)))
	}
	pages, err := filepath.Glob(filepath.Join("..", "docs", "*.md"))
	if err != nil || len(pages) == 0 {
		t.Fatalf("no pages in docs/ (%v)", err)
	}
	for name, where := range namedMetrics(t, append(pages, filepath.Join("..", "README.md"))) {
		if _, seen := deploy[name]; !seen {
			deploy[name] = where
		}
	}
	return deploy
}

// TestMonitoringNamesOnlyExportedMetrics checks every metric the dashboard,
// the alert rules and the docs name against the /metrics of four running
// gateways: one with a client certificate (so that its expiry is
// exported) that Entra ID refuses (so that token failures are), which
// also refuses a client without identity, a wrong password and a 21st
// connection from one address; one with a client secret whose expiry the
// configuration gives; one that reads for IMAP clients (one session
// relayed); one that sends through Exchange's SMTP (one message delivered,
// one refused).
func TestMonitoringNamesOnlyExportedMetrics(t *testing.T) {
	fake := graphtest.New(t)
	dir := t.TempDir()
	_, pemData := graphtest.NewCertificate(t)
	certFile := filepath.Join(dir, "client.pem")
	if err := os.WriteFile(certFile, pemData, 0o600); err != nil {
		t.Fatal(err)
	}
	target := fmt.Sprintf("[graph]\ntenant_id = %q\nclient_id = %q\ncertificate_file = %q\nauthority_host = %q\nendpoint = %q\n",
		fake.TenantID, fake.ClientID, certFile, fake.URL+"/", fake.URL) + withMetrics
	g := startGateway(t, dir, gatewayConfig(t, dir, target), "SSL_CERT_FILE="+fake.WriteCAFile(dir))
	base := g.MetricsURL()
	mustSubmit(t, g.Addr[0], submission{From: "scanner@contoso.com", To: []string{"alice@contoso.com"}, Body: "Subject: x\n\ny\n"})
	refuseOnce(t, g)
	var metrics string
	waitFor(t, deliveryTimeout, func() bool {
		_, metrics = httpGet(t, base+"/metrics")
		return strings.Contains(metrics, "smtpgw_token_failures_total{")
	})
	_, secretMetrics := httpGet(t, startWithWrongSecret(t).metrics+"/metrics")
	metrics += secretMetrics
	metrics += readerMetrics(t)
	metrics += exchangeSMTPMetrics(t)
	for name, where := range monitoringNames(t) {
		// A histogram is exported as its _bucket, _sum and _count series.
		if !regexp.MustCompile(`(?m)^` + name + `(_bucket|_sum|_count)?[{ ]`).MatchString(metrics) {
			t.Errorf("%s names %s, which the gateway does not export", where, name)
		}
	}
}

// refuseOnce has g refuse a MAIL FROM without identity, a wrong AUTH
// password and a connection over connections_per_address.
func refuseOnce(t *testing.T, g *gateway) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 5 * time.Second}
	conn, err := d.Dial("tcp", g.Addr[0])
	if err != nil {
		t.Fatal(err)
	}
	c := smtp.NewClient(conn)
	defer c.Close()
	if err := c.Mail("app@contoso.com", nil); err == nil || !strings.Contains(err.Error(), "530") {
		t.Errorf("MAIL FROM without identity: %v, want 530", err)
	}
	if _, err := submit(g.Addr[1], submission{StartTLS: true, Username: "mfp", Password: "wrong", From: "scanner@contoso.com",
		To: []string{"alice@contoso.com"}, Body: "Subject: x\n\ny\n"}); err == nil {
		t.Error("a wrong password was accepted")
	}
	if held := holdIdle(t, g.Addr[0], "127.0.0.3", 21); len(held) != 20 {
		t.Errorf("%d of 21 connections from one address admitted, want 20", len(held))
	}
}

// readerMetrics returns the /metrics of a gateway that relayed one IMAP
// session to Dovecot.
func readerMetrics(t *testing.T) string {
	t.Helper()
	r := startReaders(t, graphtest.ExchangeAudience+"/.default")
	c := relaytest.Dial(t, r.imapPlain)
	c.Expect("* OK ")
	c.Send("a LOGIN helpdesk-app \"" + strings.ReplaceAll(readPassword, `"`, `\"`) + "\"\r\n")
	c.Expect("a OK ")
	c.Send("b LOGOUT\r\n")
	for !strings.HasPrefix(c.Expect(""), "b OK") {
	}
	_, metrics := httpGet(t, r.g.MetricsURL()+"/metrics")
	return metrics
}

// exchangeSMTPMetrics returns the /metrics of a gateway sending through
// Dovecot's submission, as through Exchange's SMTP, once it delivered one
// message and had one refused (a mailbox the app was not granted).
func exchangeSMTPMetrics(t *testing.T) string {
	t.Helper()
	x := exchangeGateway(t, withMetrics)
	x.d.AddMailbox(t, "scanner@contoso.com")
	g := startGateway(t, x.dir, x.config, x.env)
	mustSubmit(t, g.Addr[0], submission{From: "noreply@contoso.com", To: []string{"alice@example.com"}, Body: "Subject: sent\r\n\r\nbody\r\n"})
	mustSubmit(t, g.Addr[1], submission{StartTLS: true, Username: "mfp", Password: "printer-secret", From: "scanner@contoso.com",
		To: []string{"bob@example.com"}, Body: "Subject: held\r\n\r\nbody\r\n"})
	x.d.Sink.WaitTransactions(t, 1, deliveryTimeout)
	var metrics string
	waitFor(t, deliveryTimeout, func() bool {
		_, metrics = httpGet(t, g.MetricsURL()+"/metrics")
		return strings.Contains(metrics, "smtpgw_exchange_smtp_failures_total{")
	})
	return metrics
}
