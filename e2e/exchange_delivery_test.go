package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/smtpgw/smtpgw/internal/dovecottest"
	"github.com/smtpgw/smtpgw/internal/graphtest"
	"github.com/smtpgw/smtpgw/internal/testtools"
)

// These tests follow messages through the whole gateway, its engine
// included, with send_via = "smtp": what Dovecot relays to its sink is
// what Exchange Online would deliver.

// waitQueueEmpty waits until the gateway has nothing left to send.
func waitQueueEmpty(t *testing.T, metrics string) {
	t.Helper()
	waitStatus(t, metrics, func(st status) bool { return st.Queue.Queued+st.Queue.Held == 0 })
}

// TestExchangeSMTPSignedMessageVerifies: an S/MIME signed message still
// verifies with openssl after the trip through the gateway and Exchange.
func TestExchangeSMTPSignedMessageVerifies(t *testing.T) {
	openssl := testtools.Require(t, "openssl", "apt-get install openssl")
	x := exchangeGateway(t, "")
	g := startGateway(t, x.dir, x.config, x.env)

	dir := t.TempDir()
	_, certKey := graphtest.NewCertificate(t)
	os.WriteFile(filepath.Join(dir, "signer.pem"), certKey, 0o600)
	os.WriteFile(filepath.Join(dir, "body.txt"), []byte("Content-Type: text/plain; charset=utf-8\r\n\r\nScan of the signed contract.\r\n.\r\n..leading dots\r\n"), 0o600)
	signed, err := exec.Command(openssl, "smime", "-sign", "-in", filepath.Join(dir, "body.txt"), "-signer", filepath.Join(dir, "signer.pem"),
		"-from", "noreply@contoso.com", "-to", "alice@example.com", "-subject", "signed scan", "-crlfeol").Output()
	if err != nil {
		t.Fatal(err)
	}
	// openssl ends the signature's base64 lines with LF alone; a client
	// sends every line with CRLF.
	signed = bytes.ReplaceAll(bytes.ReplaceAll(signed, []byte("\r\n"), []byte("\n")), []byte("\n"), []byte("\r\n"))
	mustSubmit(t, g.Addr[0], submission{From: "noreply@contoso.com", To: []string{"alice@example.com"}, Body: string(signed)})

	got := x.d.Sink.WaitTransactions(t, 1, deliveryTimeout)[0]
	if !bytes.HasSuffix(got.Data, signed) {
		t.Errorf("the signed message did not arrive byte for byte:\n%q", got.Data)
	}
	os.WriteFile(filepath.Join(dir, "relayed.eml"), got.Data, 0o600)
	out, err := exec.Command(openssl, "smime", "-verify", "-noverify", "-in", filepath.Join(dir, "relayed.eml")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Verification successful") {
		t.Fatalf("openssl smime -verify on what arrived: %v\n%s", err, out)
	}
}

// TestExchangeSMTPLargeAttachmentIntact: a message with a 20 MB
// attachment goes in one transaction and arrives byte for byte.
func TestExchangeSMTPLargeAttachmentIntact(t *testing.T) {
	const size = 20 << 20
	x := exchangeGateway(t, "")
	g := startGateway(t, x.dir, x.config, x.env)
	var msg bytes.Buffer
	if err := writeLargeMessage(&msg, size); err != nil {
		t.Fatal(err)
	}
	mustSubmit(t, g.Addr[0], submission{From: "noreply@contoso.com", To: []string{"alice@example.com"}, Body: msg.String()})

	got := x.d.Sink.WaitTransactions(t, 1, deliveryTimeout)
	if len(got) != 1 || !bytes.HasSuffix(got[0].Data, msg.Bytes()) {
		t.Fatalf("the %d-byte message arrived as %d transaction(s), the first of %d bytes, not intact", msg.Len(), len(got), len(got[0].Data))
	}
}

// TestExchangeSMTPRelayDownRetriedThenDeliveredOnce: while the relay
// behind Exchange is down the message is tried again; once it is back
// the message arrives, once.
func TestExchangeSMTPRelayDownRetriedThenDeliveredOnce(t *testing.T) {
	x := exchangeGateway(t, withMetrics)
	x.d.Sink.Down()
	g := startGateway(t, x.dir, x.config, x.env)
	metrics := g.MetricsURL()
	mustSubmit(t, g.Addr[0], submission{From: "noreply@contoso.com", To: []string{"alice@example.com"}, Body: "Subject: while down\r\n\r\nretried\r\n"})
	waitLog(t, g, `msg=deferred`, 2)

	x.d.Sink.Up(t)
	x.d.Sink.WaitTransactions(t, 1, deliveryTimeout)
	waitQueueEmpty(t, metrics)
	if got := x.d.Sink.Transactions(); len(got) != 1 || subjectOf(string(got[0].Data)) != "while down" {
		t.Errorf("%d transactions arrived, want the message once", len(got))
	}
	if n := strings.Count(g.logs.String(), `msg=delivered`); n != 1 {
		t.Errorf("%d delivered lines, want 1:\n%s", n, g.logs)
	}
}

// TestExchangeSMTPOneMailboxSessionsAndToken: 30 messages to one mailbox
// go through at most mailbox_concurrency sessions, reused, and one token.
func TestExchangeSMTPOneMailboxSessionsAndToken(t *testing.T) {
	const perMailbox, senders, perSender = 2, 5, 6
	x := exchangeGateway(t, "")
	x.config = strings.Replace(x.config, "[queue]", fmt.Sprintf("[queue]\nmailbox_concurrency = %d", perMailbox), 1)
	g := startGateway(t, x.dir, x.config, x.env)

	// Several clients at once, so that messages wait for the mailbox's
	// sessions.
	var wg sync.WaitGroup
	for s := range senders {
		wg.Go(func() {
			for i := range perSender {
				_, err := submit(g.Addr[0], submission{From: "noreply@contoso.com", To: []string{"alice@example.com"},
					Body: fmt.Sprintf("Subject: message %d-%d\r\n\r\nbody\r\n", s, i)})
				if err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	x.d.Sink.WaitTransactions(t, senders*perSender, deliveryTimeout)

	// Dovecot opens one relay connection per submission session.
	peak, sessions := x.d.Sink.PeakConnections(), x.d.Sink.Sessions()
	t.Logf("%d messages: %d sessions, at most %d at once, %d token request(s)", senders*perSender, sessions, peak, x.fake.TokenRequests())
	if peak > perMailbox || sessions > perMailbox {
		t.Errorf("%d sessions, %d at once; want at most mailbox_concurrency = %d, reused", sessions, peak, perMailbox)
	}
	if n := x.fake.TokenRequests(); n != 1 {
		t.Errorf("%d token requests, want 1", n)
	}
}

// TestExchangeSMTPRefusedRecipientBouncedOthersOnce: Exchange refuses one
// recipient for good, takes two per transaction, and fails the second
// transaction once. The others receive the message once each, the retry
// skipping those who got it, and the sender's bounce names only the
// refused one.
func TestExchangeSMTPRefusedRecipientBouncedOthersOnce(t *testing.T) {
	x := exchangeGateway(t, withMetrics)
	x.d.Sink.Refuse("nobody@example.com")
	x.d.Sink.LimitRecipients(2)
	x.d.Sink.FailNthData(2)
	g := startGateway(t, x.dir, x.config, x.env)
	metrics := g.MetricsURL()
	recipients := []string{"a@example.com", "nobody@example.com", "b@example.com", "c@example.com", "d@example.com"}
	mustSubmit(t, g.Addr[0], submission{From: "noreply@contoso.com", To: recipients, Body: "Subject: partly refused\r\n\r\nbody\r\n"})

	// a and b, then c and d after the failed try, then the bounce.
	x.d.Sink.WaitTransactions(t, 3, deliveryTimeout)
	waitQueueEmpty(t, metrics)
	received := map[string]int{}
	var bounces []dovecottest.Transaction
	for _, tx := range x.d.Sink.Transactions() {
		if subjectOf(string(tx.Data)) == "partly refused" {
			for _, to := range tx.To {
				received[to]++
			}
			continue
		}
		bounces = append(bounces, tx)
	}
	for _, r := range slices.Concat(recipients[:1], recipients[2:]) {
		if received[r] != 1 {
			t.Errorf("%s received the message %d times, want once (all: %v)", r, received[r], received)
		}
	}
	if received["nobody@example.com"] != 0 {
		t.Errorf("the refused recipient received it")
	}
	if !strings.Contains(g.logs.String(), "msg=deferred") {
		t.Errorf("the failed transaction was not deferred:\n%s", g.logs)
	}

	if len(bounces) != 1 || strings.Join(bounces[0].To, ",") != "noreply@contoso.com" {
		t.Fatalf("want one bounce to noreply@contoso.com, got %+v", bounces)
	}
	report := string(bounces[0].Data)
	for _, want := range []string{"Final-Recipient: rfc822; nobody@example.com", "Status: 5.1.1", "550 5.1.1"} {
		if !strings.Contains(report, want) {
			t.Errorf("the bounce lacks %q:\n%s", want, report)
		}
	}
	for _, r := range []string{"a@example.com", "b@example.com", "c@example.com", "d@example.com"} {
		if strings.Contains(report, "Final-Recipient: rfc822; "+r) {
			t.Errorf("the bounce names %s, who received the message", r)
		}
	}
}

// TestExchangeSMTPStatusNamesTheWayOut: /status and the status page name
// Exchange's SMTP and its address, and show a mailbox Exchange refuses as
// held, with its reply and the admin's fix, as for Graph.
func TestExchangeSMTPStatusNamesTheWayOut(t *testing.T) {
	x := exchangeGateway(t, withMetrics)
	x.d.AddMailbox(t, "scanner@contoso.com")
	g := startGateway(t, x.dir, x.config, x.env)
	metrics := g.MetricsURL()
	mustSubmit(t, g.Addr[1], submission{StartTLS: true, Username: "mfp", Password: "printer-secret", From: "scanner@contoso.com",
		To: []string{"bob@example.com"}, Body: "Subject: held\r\n\r\nheld until granted\r\n"})

	st := waitStatus(t, metrics, func(st status) bool { return len(st.Upstream.HeldMailboxes) == 1 })
	if w := st.Upstream.Way; w.Via != "smtp" || w.Address != x.d.SubmissionAddress {
		t.Errorf("/status names the way out %+v, want smtp at %s", w, x.d.SubmissionAddress)
	}
	held := st.Upstream.HeldMailboxes[0]
	if !st.Upstream.Up || held.Mailbox != "scanner@contoso.com" || held.Messages != 1 || !strings.HasPrefix(held.Code, "535") ||
		!strings.Contains(held.Explanation, "Add-MailboxPermission") {
		t.Errorf("/status upstream = %+v", st.Upstream)
	}
	_, page := httpGet(t, metrics+"/")
	for _, want := range []string{"Sends through Exchange SMTP at " + x.d.SubmissionAddress, "scanner@contoso.com", held.Code, "Add-MailboxPermission"} {
		if !strings.Contains(page, want) {
			t.Errorf("the status page lacks %q", want)
		}
	}
	_, m := httpGet(t, metrics+"/metrics")
	for _, want := range []string{"smtpgw_upstream_up 1", "smtpgw_upstream_held_mailboxes 1", `smtpgw_exchange_smtp_failures_total{code="` + held.Code + `",kind="credential"}`} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestExchangeSMTPLateRefusalBouncesOnlyTheRefused: after a first
// transaction reached two recipients and a second one failed, the third
// recipient is refused for good on the retry. The message fails, and the
// sender's bounce names the third alone: the others received it.
func TestExchangeSMTPLateRefusalBouncesOnlyTheRefused(t *testing.T) {
	x := exchangeGateway(t, withMetrics)
	x.d.Sink.LimitRecipients(2)
	x.d.Sink.FailNthData(2)
	g := startGateway(t, x.dir, x.config, x.env)
	metrics := g.MetricsURL()
	mustSubmit(t, g.Addr[0], submission{From: "noreply@contoso.com", To: []string{"a@example.com", "b@example.com", "c@example.com"},
		Body: "Subject: late refusal\r\n\r\nbody\r\n"})
	waitLog(t, g, "msg=deferred", 1)
	x.d.Sink.Refuse("c@example.com")

	bounce := x.d.Sink.WaitTransactions(t, 2, deliveryTimeout)[1]
	waitQueueEmpty(t, metrics)
	if got := x.d.Sink.Transactions(); len(got) != 2 || strings.Join(got[0].To, ",") != "a@example.com,b@example.com" {
		t.Fatalf("transactions: %+v", got)
	}
	report := string(bounce.Data)
	if !strings.Contains(report, "Final-Recipient: rfc822; c@example.com") {
		t.Errorf("the bounce does not name c@example.com:\n%s", report)
	}
	for _, r := range []string{"a@example.com", "b@example.com"} {
		if strings.Contains(report, "Final-Recipient: rfc822; "+r) {
			t.Errorf("the bounce names %s, who received the message:\n%s", r, report)
		}
	}
}
