package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smtpgw/smtpgw/internal/dovecottest"
	"github.com/smtpgw/smtpgw/internal/graphtest"
)

// These tests send through Exchange's SMTP (send_via = "smtp"), with
// Dovecot's submission service standing in for smtp.office365.com.

// exchangeGateway starts a fake Entra ID and Dovecot, and returns a
// gateway configuration in dir sending through Dovecot, with the
// environment that makes the gateway trust both.
func exchangeGateway(t *testing.T) (d *dovecottest.Server, dir, config, env string) {
	t.Helper()
	fake := graphtest.New(t)
	d = dovecottest.Start(t, fake)
	dir = t.TempDir()
	target := fake.GraphTOML(t) + fmt.Sprintf("\n[exchange]\nsmtp_address = %q\nsend_via = \"smtp\"\n", d.SubmissionAddress)
	fakeCA, err := os.ReadFile(fake.WriteCAFile(dir))
	if err != nil {
		t.Fatal(err)
	}
	dovecotCA, err := os.ReadFile(d.WriteCAFile(dir))
	if err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(dir, "ca-bundle.pem")
	if err := os.WriteFile(bundle, append(fakeCA, dovecotCA...), 0o600); err != nil {
		t.Fatal(err)
	}
	return d, dir, gatewayConfig(t, dir, target), "SSL_CERT_FILE=" + bundle
}

// TestExchangeSMTPWayOut: the message leaves unchanged but for Bcc, to
// every envelope recipient; a mailbox not granted is held and delivered
// once the grant is added.
func TestExchangeSMTPWayOut(t *testing.T) {
	d, dir, config, env := exchangeGateway(t)
	d.Grant(t, "noreply@contoso.com")
	d.AddMailbox(t, "scanner@contoso.com")
	g := startGateway(t, dir, config, env)

	body := "From: noreply@contoso.com\r\nTo: alice@example.com\r\nBcc: hidden@example.com\r\nSubject: way out\r\n\r\nfirst line\r\n..dot\r\n"
	mustSubmit(t, g.Addr[0], submission{From: "noreply@contoso.com", To: []string{"alice@example.com", "hidden@example.com"}, Body: body})
	got := d.Sink.WaitTransactions(t, 1, deliveryTimeout)[0]
	if got.From != "noreply@contoso.com" || strings.Join(got.To, ",") != "alice@example.com,hidden@example.com" {
		t.Errorf("envelope %s -> %v", got.From, got.To)
	}
	if strings.Contains(string(got.Data), "Bcc:") || !strings.HasSuffix(string(got.Data), "Subject: way out\r\n\r\nfirst line\r\n..dot\r\n") {
		t.Errorf("relayed message:\n%q", got.Data)
	}

	mustSubmit(t, g.Addr[1], submission{StartTLS: true, Username: "mfp", Password: "printer-secret", From: "scanner@contoso.com",
		To: []string{"bob@example.com"}, Body: "Subject: held\r\n\r\nheld until granted\r\n"})
	waitLog(t, g, "held: the credential was refused", 1)
	if !strings.Contains(g.logs.String(), "Add-MailboxPermission") {
		t.Errorf("the log does not name the admin's fix:\n%s", g.logs)
	}
	d.Grant(t, "scanner@contoso.com")
	got = d.Sink.WaitTransactions(t, 2, deliveryTimeout)[1]
	if got.From != "scanner@contoso.com" || !strings.Contains(string(got.Data), "held until granted") {
		t.Errorf("after the grant: %s -> %v", got.From, got.To)
	}
}

// TestExchangeSMTPCrashSafety: every message acknowledged before a SIGKILL
// reaches Exchange's SMTP after the restart.
func TestExchangeSMTPCrashSafety(t *testing.T) {
	d, dir, config, env := exchangeGateway(t)
	d.Grant(t, "noreply@contoso.com")
	g := startGateway(t, dir, config, env)

	acked := killDuringBurst(t, g, "noreply@contoso.com")
	startGateway(t, dir, config, env)
	waitFor(t, deliveryTimeout, func() bool {
		var got []string
		for _, tx := range d.Sink.Transactions() {
			got = append(got, subjectOf(string(tx.Data)))
		}
		return containsAll(got, acked)
	})
}

func subjectOf(message string) string {
	_, rest, _ := strings.Cut(message, "Subject: ")
	subject, _, _ := strings.Cut(rest, "\r\n")
	return subject
}

// TestExchangeSMTPCheckSendTest: check -send-test goes the configured way
// and names the admin's step for a mailbox not granted.
func TestExchangeSMTPCheckSendTest(t *testing.T) {
	d, dir, config, env := exchangeGateway(t)
	d.Grant(t, "noreply@contoso.com")
	d.AddMailbox(t, "scanner@contoso.com")
	path := filepath.Join(dir, "smtpgw.toml")
	os.WriteFile(path, []byte(config), 0o600)
	cmd := exec.Command(binary, "check", "-config", path, "-send-test", "admin@example.com")
	cmd.Env = append(os.Environ(), env)
	out, _ := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	for _, want := range []string{"noreply@contoso.com: sent a test message to admin@example.com", "scanner@contoso.com: not sent", "Add-MailboxPermission -Identity <mailbox>"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if got := d.Sink.Transactions(); len(got) != 1 || got[0].From != "noreply@contoso.com" {
		t.Errorf("sink got %+v", got)
	}
}
