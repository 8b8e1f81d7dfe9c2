package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/smtpgw/smtpgw/internal/convert"
	"github.com/smtpgw/smtpgw/internal/graphtest"
)

// deliveryTimeout bounds how long a test waits for messages to reach the
// fake Graph.
const deliveryTimeout = 30 * time.Second

// gatewayConfig is a configuration for tests: listeners on 127.0.0.1:0, a
// spool in dir, one AUTH user "mfp" (password "printer-secret") sending as
// scanner@contoso.com, and 127.0.0.1 allowed without AUTH as
// noreply@contoso.com. target is a [graph] or [outbox] section.
func gatewayConfig(t testing.TB, dir, target string) string {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte("printer-secret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf(`
[server]
hostname = "smtpgw.test"
max_message_size = "60MiB"

[[listener]]
address = "127.0.0.1:0"
tls = "none"

[[listener]]
address = "127.0.0.1:0"
tls = "starttls"

[queue]
dir = %q
min_backoff = "1s"
max_backoff = "2s"
min_probe_interval = "1s"
max_probe_interval = "2s"

[[user]]
username = "mfp"
password_hash = %q
mailbox = "scanner@contoso.com"

[[network]]
cidrs = ["127.0.0.1/32"]
mailbox = "noreply@contoso.com"
allowed_senders = ["*@contoso.com"]
%s
%s
`, filepath.Join(dir, "spool"), hash, raisedLimits, target)
}

// raisedLimits lifts the per-address limits of gatewayConfig's network for
// the tests that connect from its one address like a branch office behind
// NAT. The load benchmarks run without it, on the shipped defaults.
const raisedLimits = `connections_per_address = 100
connections_per_minute = 10000`

// defaultLimitsConfig is gatewayConfig with the shipped [limits].
func defaultLimitsConfig(t testing.TB, dir, target string) string {
	return strings.Replace(gatewayConfig(t, dir, target), raisedLimits, "", 1)
}

// startWithGraph starts a gateway sending to fake, trusting its certificate.
func startWithGraph(t testing.TB, fake *graphtest.Server) *gateway {
	dir := t.TempDir()
	return startGateway(t, dir, gatewayConfig(t, dir, fake.GraphTOML(t)), "SSL_CERT_FILE="+fake.WriteCAFile(dir))
}

// TestQuickStart follows the README: `smtpgw serve` on the built-in example
// config, a message from swaks, and its Graph request body in ./outbox.
func TestQuickStart(t *testing.T) {
	dir := t.TempDir()
	g := startGateway(t, dir, "")
	out := swaks(t, "--server", g.Addr[0], "--from", "scanner@example.com", "--to", "someone@example.com",
		"--header", "Subject: quick start", "--body", "Hello from the quick start.")
	if !strings.Contains(out, "queued as") {
		t.Fatalf("swaks did not see the message queued:\n%s", out)
	}
	var req convert.SendMailRequest
	readOutbox(t, filepath.Join(dir, "outbox"), &req)
	m := req.Message
	if m.Subject != "quick start" || len(m.ToRecipients) != 1 || m.ToRecipients[0].EmailAddress.Address != "someone@example.com" {
		t.Errorf("outbox message = %+v", m)
	}
	if m.From == nil || m.From.EmailAddress.Address != "scanner@example.com" {
		t.Errorf("from = %+v, want the allowed header From", m.From)
	}
	if !strings.Contains(m.Body.Content, "Hello from the quick start.") || !req.SaveToSentItems {
		t.Errorf("body/saveToSentItems = %+v / %v", m.Body, req.SaveToSentItems)
	}
}

// TestSwaksAuthLoginOverSTARTTLS drives the binary with swaks as a printer
// would: STARTTLS, AUTH LOGIN, then delivery through Graph.
func TestSwaksAuthLoginOverSTARTTLS(t *testing.T) {
	fake := graphtest.New(t)
	g := startWithGraph(t, fake)
	swaks(t, "--server", g.Addr[1], "--tls", "--auth", "LOGIN", "--auth-user", "mfp", "--auth-password", "printer-secret",
		"--from", "scanner@contoso.com", "--to", "alice@contoso.com", "--header", "Subject: Scan from MFP", "--body", "scan attached")
	sent := fake.WaitSent(t, 1, deliveryTimeout)
	if sent[0].Mailbox != "scanner@contoso.com" || sent[0].Message.Subject != "Scan from MFP" {
		t.Errorf("sent = %+v", sent[0])
	}
	if strings.Contains(g.logs.String(), "printer-secret") || strings.Contains(g.logs.String(), fake.ClientSecret) {
		t.Error("a secret reached the log")
	}
}

// TestPipeline sends a realistic message (text and HTML, an attachment, an
// envelope-only Bcc) with AUTH PLAIN over STARTTLS and checks the Graph
// request that results.
func TestPipeline(t *testing.T) {
	fake := graphtest.New(t)
	g := startWithGraph(t, fake)
	pdf := bytes.Repeat([]byte("%PDF-1.4 scan\x00\x01\x02\xff"), 500)
	body := "From: Floor 3 Scanner <scanner@contoso.com>\n" +
		"To: Alice <alice@contoso.com>\n" +
		"Cc: bob@contoso.com, nobody@elsewhere.example\n" +
		"Subject: =?UTF-8?B?U2NhbiDinJM=?=\n" +
		"MIME-Version: 1.0\n" +
		"Content-Type: multipart/mixed; boundary=outer\n\n" +
		"--outer\nContent-Type: multipart/alternative; boundary=inner\n\n" +
		"--inner\nContent-Type: text/plain; charset=utf-8\n\nPlain body\n" +
		"--inner\nContent-Type: text/html; charset=utf-8\n\n<p>HTML body</p>\n" +
		"--inner--\n" +
		"--outer\nContent-Type: application/pdf\nContent-Disposition: attachment; filename=\"scan.pdf\"\nContent-Transfer-Encoding: base64\n\n" +
		wrap(base64.StdEncoding.EncodeToString(pdf)) +
		"--outer--\n"
	id := mustSubmit(t, g.Addr[1], submission{
		From: "scanner@contoso.com", To: []string{"alice@contoso.com", "bob@contoso.com", "audit@contoso.com"},
		Body: body, StartTLS: true, Username: "mfp", Password: "printer-secret",
	})
	sent := fake.WaitSent(t, 1, deliveryTimeout)[0]
	m := sent.Message
	checks := []struct {
		name      string
		got, want any
	}{
		{"mailbox", sent.Mailbox, "scanner@contoso.com"},
		{"subject", m.Subject, "Scan ✓"},
		{"body type", m.Body.ContentType, "html"},
		{"to", addresses(m.ToRecipients), "alice@contoso.com"},
		{"cc", addresses(m.CcRecipients), "bob@contoso.com"},
		{"bcc", addresses(m.BccRecipients), "audit@contoso.com"},
		{"from", m.From.EmailAddress.Name + " <" + m.From.EmailAddress.Address + ">", "Floor 3 Scanner <scanner@contoso.com>"},
		{"attachments", len(m.Attachments), 1},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if len(m.Attachments) == 1 {
		a := m.Attachments[0]
		if a.Name != "scan.pdf" || a.ContentType != "application/pdf" || !bytes.Equal(a.ContentBytes, pdf) {
			t.Errorf("attachment %q %q: %d bytes, want scan.pdf application/pdf with the %d bytes sent", a.Name, a.ContentType, len(a.ContentBytes), len(pdf))
		}
	}
	// One log line for the acceptance and one for the delivery, both with
	// the queue ID.
	waitLog(t, g, "id="+id, 2)
}

// TestCertificateCredential authenticates to Entra ID with a certificate
// instead of a secret.
func TestCertificateCredential(t *testing.T) {
	cert, pemBytes := graphtest.NewCertificate(t)
	fake := graphtest.New(t, graphtest.WithCertificate(cert))
	dir := t.TempDir()
	certFile := filepath.Join(dir, "client.pem")
	if err := os.WriteFile(certFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	graph := fmt.Sprintf("[graph]\ntenant_id = %q\nclient_id = %q\ncertificate_file = %q\nauthority_host = %q\nendpoint = %q\n",
		fake.TenantID, fake.ClientID, certFile, fake.URL+"/", fake.URL)
	g := startGateway(t, dir, gatewayConfig(t, dir, graph), "SSL_CERT_FILE="+fake.WriteCAFile(dir), "SMTPGW_CLIENT_SECRET=")
	mustSubmit(t, g.Addr[0], submission{From: "scanner@contoso.com", To: []string{"alice@contoso.com"}, Body: "Subject: cert\n\nbody\n"})
	if sent := fake.WaitSent(t, 1, deliveryTimeout); sent[0].Mailbox != "noreply@contoso.com" {
		t.Errorf("sent as %q, want the network's mailbox", sent[0].Mailbox)
	}
	check := exec.Command(binary, "check", "-config", filepath.Join(dir, "smtpgw.toml"))
	check.Env = append(os.Environ(), "SSL_CERT_FILE="+fake.WriteCAFile(dir), "SMTPGW_CLIENT_SECRET=")
	out, err := check.CombinedOutput()
	if days := int(time.Until(cert.NotAfter).Hours() / 24); err != nil || !strings.Contains(string(out), fmt.Sprintf("the Graph client certificate %s expires in %d day", certFile, days)) {
		t.Errorf("check: %v\n%s", err, out)
	}
}

// TestCheck runs `smtpgw check` against the fake Entra ID.
func TestCheck(t *testing.T) {
	tests := []struct {
		name     string
		roles    []string
		wantCode int
		want     []string
	}{
		{"granted", []string{"Mail.Send", "Mail.ReadWrite"}, 0, []string{"token OK", "Mail.Send"}},
		{"no Mail.ReadWrite", []string{"Mail.Send"}, 0, []string{"warning: Mail.ReadWrite is not granted"}},
		{"no Mail.Send", []string{"User.Read.All"}, 0, []string{"warning: the token carries no Mail.Send"}},
		{"wrong secret", nil, 1, []string{"Entra ID refused the token request", "invalid_client", "AADSTS7000215"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := graphtest.New(t, graphtest.WithRoles(tt.roles...))
			dir := t.TempDir()
			graph := fake.GraphTOML(t)
			if tt.roles == nil {
				secret := filepath.Join(dir, "wrong-secret")
				os.WriteFile(secret, []byte("wrong"), 0o600)
				graph = fmt.Sprintf("[graph]\ntenant_id = %q\nclient_id = %q\nclient_secret_file = %q\nauthority_host = %q\nendpoint = %q\n",
					fake.TenantID, fake.ClientID, secret, fake.URL+"/", fake.URL)
			}
			path := filepath.Join(dir, "smtpgw.toml")
			os.WriteFile(path, []byte(gatewayConfig(t, dir, graph)), 0o600)
			cmd := exec.Command(binary, "check", "-config", path)
			cmd.Env = append(os.Environ(), "SSL_CERT_FILE="+fake.WriteCAFile(dir))
			out, _ := cmd.CombinedOutput()
			if code := cmd.ProcessState.ExitCode(); code != tt.wantCode {
				t.Errorf("exit code %d, want %d:\n%s", code, tt.wantCode, out)
			}
			if tt.wantCode == 0 {
				tt.want = append(tt.want, fake.TenantID)
			}
			for _, w := range tt.want {
				if !bytes.Contains(out, []byte(w)) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

// TestCrashSafety kills the gateway while a burst is being delivered: every
// message that got a 250 must reach Graph after a restart.
func TestCrashSafety(t *testing.T) {
	fake := graphtest.New(t)
	fake.SetLatency(200 * time.Millisecond)
	dir := t.TempDir()
	config := gatewayConfig(t, dir, fake.GraphTOML(t))
	env := "SSL_CERT_FILE=" + fake.WriteCAFile(dir)
	g := startGateway(t, dir, config, env)

	const senders, perSender = 4, 15
	var mu sync.Mutex
	var acked []string
	var wg sync.WaitGroup
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perSender {
				subject := fmt.Sprintf("burst %d-%d", s, i)
				_, err := submit(g.Addr[0], submission{From: "scanner@contoso.com", To: []string{"alice@contoso.com"},
					Body: "Subject: " + subject + "\n\nbody\n"})
				if err != nil {
					return // the gateway was killed
				}
				mu.Lock()
				acked = append(acked, subject)
				mu.Unlock()
			}
		}()
	}
	waitFor(t, deliveryTimeout, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) >= senders*perSender/2
	})
	g.Kill()
	wg.Wait()
	mu.Lock()
	want := append([]string(nil), acked...)
	mu.Unlock()

	startGateway(t, dir, config, env)
	waitFor(t, deliveryTimeout, func() bool {
		got := map[string]bool{}
		for _, s := range fake.Sent() {
			got[s.Message.Subject] = true
		}
		for _, subject := range want {
			if !got[subject] {
				return false
			}
		}
		return true
	})
	t.Logf("%d messages acknowledged before the kill, all delivered after restart (%d sends in all)", len(want), len(fake.Sent()))
}

// TestGracefulStop: SIGTERM ends the process with exit code 0.
func TestGracefulStop(t *testing.T) {
	dir := t.TempDir()
	g := startGateway(t, dir, gatewayConfig(t, dir, "[outbox]\ndir = \"outbox\"\n"))
	g.Stop()
	if code := g.ExitCode(); code != 0 {
		t.Errorf("exit code %d after SIGTERM:\n%s", code, g.logs)
	}
}

func swaks(t *testing.T, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("swaks"); err != nil {
		t.Fatal("swaks is not installed (.ci/run installs it)")
	}
	cmd := exec.Command("swaks", append([]string{"--timeout", "20"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	return string(out)
}

// readOutbox waits for the one request body in dir and decodes it into v.
func readOutbox(t *testing.T, dir string, v any) {
	t.Helper()
	var files []string
	waitFor(t, deliveryTimeout, func() bool {
		files, _ = filepath.Glob(filepath.Join(dir, "*.json"))
		return len(files) > 0
	})
	if len(files) != 1 {
		t.Fatalf("want one file in the outbox, got %v", files)
	}
	data, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("outbox file is not JSON: %v\n%s", err, data)
	}
}

// waitLog waits until the gateway has logged at least n lines containing s.
func waitLog(t *testing.T, g *gateway, s string, n int) {
	t.Helper()
	waitFor(t, deliveryTimeout, func() bool { return strings.Count(g.logs.String(), s) >= n })
}

// waitFor polls cond every 20 ms until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func addresses(rs []convert.Recipient) string {
	var list []string
	for _, r := range rs {
		list = append(list, r.EmailAddress.Address)
	}
	return strings.Join(list, ",")
}

// wrap breaks base64 into 76-character lines, as mail clients send it.
func wrap(s string) string {
	var b strings.Builder
	for len(s) > 76 {
		b.WriteString(s[:76] + "\n")
		s = s[76:]
	}
	b.WriteString(s + "\n")
	return b.String()
}

// TestLargeAttachment sends a 12 MB scan through the binary: it must reach
// Graph byte for byte through an upload session, even when one chunk upload
// fails on the way.
func TestLargeAttachment(t *testing.T) {
	const size = 12 << 20
	fake := graphtest.New(t)
	fake.FailNext(graphtest.RouteUpload, 1, graphtest.Failure{Status: 503})
	g := startWithGraph(t, fake)
	var body strings.Builder
	if err := writeLargeMessage(&body, size); err != nil {
		t.Fatal(err)
	}
	mustSubmit(t, g.Addr[0], submission{From: "scanner@contoso.com", To: []string{"alice@contoso.com"}, Body: body.String()})
	sent := fake.WaitSent(t, 1, deliveryTimeout)[0]
	if sent.Kind != "draft" || len(sent.Message.Attachments) != 1 {
		t.Fatalf("sent %s with %d attachments, want a draft with one", sent.Kind, len(sent.Message.Attachments))
	}
	if got := sent.Message.Attachments[0].ContentBytes; !bytes.Equal(got, largeContent(size)) {
		t.Errorf("attachment: %d bytes arrived, not the %d sent", len(got), size)
	}
	if fake.Calls(graphtest.RouteUpload) < 2 {
		t.Error("the failed chunk was not sent again")
	}
}

// TestQueueCommands lists, shows, retries and deletes messages of a
// running gateway's spool with `smtpgw queue`.
func TestQueueCommands(t *testing.T) {
	fake := graphtest.New(t)
	fake.FailNext(graphtest.RouteSendMail, 1, graphtest.Failure{Status: 404, Code: "ErrorInvalidUser"})
	dir := t.TempDir()
	config := strings.Replace(gatewayConfig(t, dir, fake.GraphTOML(t)), "[queue]", "[queue]\nbounce = false", 1)
	g := startGateway(t, dir, config, "SSL_CERT_FILE="+fake.WriteCAFile(dir))
	id := mustSubmit(t, g.Addr[0], submission{From: "scanner@contoso.com", To: []string{"ghost@contoso.com"}, Body: "Subject: to nobody\n\nx\n"})
	waitLog(t, g, "delivery failed", 1)

	queue := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(binary, append([]string{"queue"}, append(args, "-config", filepath.Join(dir, "smtpgw.toml"))...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("queue %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	if out := queue("list"); !strings.Contains(out, id) || !strings.Contains(out, "failed") || !strings.Contains(out, "ErrorInvalidUser") {
		t.Errorf("queue list:\n%s", out)
	}
	if out := queue("list", "-state", "failed"); !strings.Contains(out, id) || !strings.Contains(out, "<scanner@contoso.com>") || !strings.Contains(out, "1 message(s)") {
		t.Errorf("queue list -state failed:\n%s", out)
	}
	var listed []struct {
		ID         string   `json:"id"`
		State      string   `json:"state"`
		MailFrom   string   `json:"mail_from"`
		Recipients []string `json:"recipients"`
	}
	if err := json.Unmarshal([]byte(queue("list", "-json")), &listed); err != nil || len(listed) != 1 || listed[0].ID != id || listed[0].State != "failed" || len(listed[0].Recipients) != 1 {
		t.Errorf("queue list -json: %+v, %v", listed, err)
	}
	if out := queue("show", id); !strings.Contains(out, "ghost@contoso.com") || !strings.Contains(out, "Subject: to nobody") || !strings.Contains(out, "Next attempt: none") {
		t.Errorf("queue show:\n%s", out)
	}
	queue("retry-failed")
	if sent := fake.WaitSent(t, 1, deliveryTimeout); sent[0].Message.Subject != "to nobody" {
		t.Errorf("retried message = %+v", sent[0].Message)
	}
	waitFor(t, deliveryTimeout, func() bool { return strings.Contains(queue("list"), "0 message(s)") })
}
