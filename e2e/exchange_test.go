package e2e

import (
	"fmt"
	"maps"
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

// exchangeSetup is a fake Entra ID, Dovecot, and a gateway configuration
// in dir sending through Dovecot, with the environment that makes the
// gateway trust both.
type exchangeSetup struct {
	fake                         *graphtest.Server
	d                            *dovecottest.Server
	dir, config, env, secretFile string
}

// exchangeGateway prepares an exchangeSetup whose app is granted
// noreply@contoso.com, the [[network]]'s mailbox; extra is added to the
// configuration.
func exchangeGateway(t *testing.T, extra string) *exchangeSetup {
	t.Helper()
	x := &exchangeSetup{fake: graphtest.New(t), dir: t.TempDir()}
	x.d = dovecottest.Start(t, x.fake)
	x.d.Grant(t, "noreply@contoso.com")
	x.secretFile = x.fake.WriteSecretFile(x.dir)
	target := x.fake.GraphTOMLWithSecretFile(x.secretFile) + extra +
		fmt.Sprintf("\n[exchange]\nsmtp_address = %q\nsend_via = \"smtp\"\n", x.d.SubmissionAddress)
	fakeCA, err := os.ReadFile(x.fake.WriteCAFile(x.dir))
	if err != nil {
		t.Fatal(err)
	}
	dovecotCA, err := os.ReadFile(x.d.WriteCAFile(x.dir))
	if err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(x.dir, "ca-bundle.pem")
	if err := os.WriteFile(bundle, append(fakeCA, dovecotCA...), 0o600); err != nil {
		t.Fatal(err)
	}
	x.config, x.env = gatewayConfig(t, x.dir, target), "SSL_CERT_FILE="+bundle
	return x
}

// TestExchangeSMTPWayOut: the message leaves unchanged but for Bcc, to
// every envelope recipient; a mailbox not granted is held and delivered
// once the grant is added.
func TestExchangeSMTPWayOut(t *testing.T) {
	x := exchangeGateway(t, "")
	d := x.d
	d.AddMailbox(t, "scanner@contoso.com")
	g := startGateway(t, x.dir, x.config, x.env)

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
	x := exchangeGateway(t, "")
	d := x.d
	g := startGateway(t, x.dir, x.config, x.env)

	acked := killDuringBurst(t, g, "noreply@contoso.com")
	startGateway(t, x.dir, x.config, x.env)
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
	x := exchangeGateway(t, "")
	d := x.d
	d.AddMailbox(t, "scanner@contoso.com")
	path := filepath.Join(x.dir, "smtpgw.toml")
	os.WriteFile(path, []byte(x.config), 0o600)
	cmd := exec.Command(binary, "check", "-config", path, "-send-test", "admin@example.com")
	cmd.Env = append(os.Environ(), x.env)
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

// TestExchangeSMTPWrongSecretHoldsUntilFixed: with a secret Entra ID
// refuses, every message waits, /status says why, and after the fix and a
// reload each arrives once.
func TestExchangeSMTPWrongSecretHoldsUntilFixed(t *testing.T) {
	x := exchangeGateway(t, withMetrics)
	if err := os.WriteFile(x.secretFile, []byte("not-the-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	g := startGateway(t, x.dir, x.config, x.env)
	metrics := g.MetricsURL()
	for n := range 3 {
		mustSubmit(t, g.Addr[0], submission{From: "noreply@contoso.com", To: []string{"alice@example.com"},
			Body: fmt.Sprintf("Subject: scan %d\r\n\r\npage\r\n", n)})
	}
	st := waitStatus(t, metrics, func(st status) bool { return !st.Upstream.Up && st.Queue.Held == 3 })
	if st.Upstream.Down == nil || st.Upstream.Down.AADSTS != "AADSTS7000215" {
		t.Errorf("/status upstream = %+v", st.Upstream)
	}
	if n := len(x.d.Sink.Transactions()); n != 0 {
		t.Fatalf("%d messages sent with a refused secret", n)
	}

	x.fake.WriteSecretFile(x.dir)
	g.reload(t, 1)
	x.d.Sink.WaitTransactions(t, 3, deliveryTimeout)
	waitStatus(t, metrics, func(st status) bool { return st.Upstream.Up && st.Queue.Queued+st.Queue.Held == 0 })
	subjects := map[string]int{}
	for _, tx := range x.d.Sink.Transactions() {
		subjects[subjectOf(string(tx.Data))]++
	}
	if want := map[string]int{"scan 0": 1, "scan 1": 1, "scan 2": 1}; !maps.Equal(subjects, want) {
		t.Errorf("arrived: %v, want scan 0, 1 and 2 once each", subjects)
	}
}
