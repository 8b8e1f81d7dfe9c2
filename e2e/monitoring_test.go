package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smtpgw/smtpgw/internal/graphtest"
)

// chromium returns Debian's chromium. Without it the test is skipped on a
// developer's machine and fails under CI, which installs it (.ci/run).
func chromium(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("chromium is missing: .ci/run installs Debian's chromium package")
		}
		t.Skip("skipped: no chromium (apt-get install chromium)")
	}
	return path
}

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
	browser := chromium(t)
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

// monitoringNames are the smtpgw metric names the shipped dashboard and
// alert rules use.
func monitoringNames(t *testing.T) []string {
	t.Helper()
	var names []string
	for _, f := range []string{"smtpgw-dashboard.json", "smtpgw-alerts.yml"} {
		data, err := os.ReadFile(filepath.Join("..", "deploy", "monitoring", f))
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, regexp.MustCompile(`smtpgw_[a-z0-9_]*[a-z0-9]`).FindAllString(string(data), -1)...)
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// TestMonitoringNamesOnlyExportedMetrics checks every metric the dashboard
// and the alert rules name against the /metrics of two running gateways:
// one with a client certificate (so that its expiry is exported) that
// Entra ID refuses (so that token failures are), one with a client secret
// whose expiry the configuration gives.
func TestMonitoringNamesOnlyExportedMetrics(t *testing.T) {
	fake := graphtest.New(t)
	dir := t.TempDir()
	_, pemData := graphtest.NewCertificate(t)
	certFile := filepath.Join(dir, "client.pem")
	if err := os.WriteFile(certFile, pemData, 0o600); err != nil {
		t.Fatal(err)
	}
	target := fmt.Sprintf("[graph]\ntenant_id = %q\nclient_id = %q\ncertificate_file = %q\nauthority_host = %q\nendpoint = %q\n\n[metrics]\naddress = \"127.0.0.1:0\"\n",
		fake.TenantID, fake.ClientID, certFile, fake.URL+"/", fake.URL)
	g := startGateway(t, dir, gatewayConfig(t, dir, target), "SSL_CERT_FILE="+fake.WriteCAFile(dir))
	base := g.MetricsURL()
	mustSubmit(t, g.Addr[0], submission{From: "scanner@contoso.com", To: []string{"alice@contoso.com"}, Body: "Subject: x\n\ny\n"})
	var metrics string
	waitFor(t, deliveryTimeout, func() bool {
		_, metrics = httpGet(t, base+"/metrics")
		return strings.Contains(metrics, "smtpgw_token_failures_total{")
	})
	_, secretMetrics := httpGet(t, startWithWrongSecret(t).metrics+"/metrics")
	metrics += secretMetrics
	names := monitoringNames(t)
	if len(names) < 10 {
		t.Fatalf("found only %v in deploy/monitoring", names)
	}
	for _, name := range names {
		if !regexp.MustCompile(`(?m)^` + name + `[{ ]`).MatchString(metrics) {
			t.Errorf("deploy/monitoring uses %s, which the gateway does not export", name)
		}
	}
}
