package upstream

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smtpgw/smtpgw/internal/config"
	"github.com/smtpgw/smtpgw/internal/convert"
	"github.com/smtpgw/smtpgw/internal/dovecottest"
	"github.com/smtpgw/smtpgw/internal/envelope"
	"github.com/smtpgw/smtpgw/internal/graphtest"
)

// exchangeConfig is a configuration loaded through the loader that sends
// through d's submission service with fake's credential.
func exchangeConfig(t *testing.T, fake *graphtest.Server, d *dovecottest.Server, secretFile string, perMailbox int) *config.Config {
	t.Helper()
	toml := fake.GraphTOMLWithSecretFile(secretFile) + fmt.Sprintf(`
[exchange]
smtp_address = %q
send_via = "smtp"

[queue]
mailbox_concurrency = %d

[[listener]]
address = "127.0.0.1:0"

[[network]]
cidrs = ["127.0.0.1"]
mailbox = "scanner@contoso.com"
`, d.SubmissionAddress, perMailbox)
	cfg, err := config.Parse([]byte(toml), "exchange.toml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// startExchange runs Dovecot and returns a target sending through it.
func startExchange(t *testing.T, perMailbox int) (*ExchangeSMTP, *dovecottest.Server, *graphtest.Server, string) {
	t.Helper()
	fake := graphtest.New(t)
	d := dovecottest.Start(t, fake)
	secretFile := fake.WriteSecretFile(t.TempDir())
	cfg := exchangeConfig(t, fake, d, secretFile, perMailbox)
	g, err := NewGraph(cfg.Graph, Options{RootCAs: fake.CertPool()})
	if err != nil {
		t.Fatal(err)
	}
	x, err := NewExchangeSMTP(cfg.Exchange, g, cfg.Queue.MailboxConcurrency, Options{RootCAs: d.CertPool()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { x.Close() })
	return x, d, fake, secretFile
}

// rawMessage is a Message of bytes only, as the Exchange target wants it.
type rawMessage []byte

func (r rawMessage) Converted() (*convert.Result, error) { return nil, errors.New("not converted") }
func (r rawMessage) Raw() (io.ReaderAt, int64)           { return bytes.NewReader(r), int64(len(r)) }

func smtpEnv(id string, recipients ...string) *envelope.Envelope {
	return &envelope.Envelope{ID: id, Mailbox: "scanner@contoso.com", MailFrom: "scanner@contoso.com", Recipients: recipients}
}

func TestExchangeSMTPSendsTheBytesToEveryRecipientWithoutBcc(t *testing.T) {
	x, d, _, _ := startExchange(t, 4)
	d.Grant(t, "scanner@contoso.com")
	header := "From: Scanner <scanner@contoso.com>\r\nTo: alice@example.com\r\nBcc: carol@example.com,\r\n dave@example.com\r\nSubject: scan\r\nBCC: eve@example.com\r\nX-Odd:  spaced \t\r\n"
	body := "\r\nline one\r\n.leading dot\r\n\r\nlast line without end"
	msg := rawMessage(header + body)
	receipt, err := x.Send(context.Background(), smtpEnv("q1", "alice@example.com", "carol@example.com", "dave@example.com"), msg)
	if err != nil {
		t.Fatal(err)
	}
	if receipt.Status != 250 || !strings.HasPrefix(receipt.RequestID, "250 ") {
		t.Errorf("receipt = %+v", receipt)
	}
	got := d.Sink.WaitTransactions(t, 1, 10*time.Second)[0]
	if got.From != "scanner@contoso.com" || strings.Join(got.To, ",") != "alice@example.com,carol@example.com,dave@example.com" {
		t.Errorf("envelope = %s -> %v", got.From, got.To)
	}
	want := "From: Scanner <scanner@contoso.com>\r\nTo: alice@example.com\r\nSubject: scan\r\nX-Odd:  spaced \t\r\n" + body + "\r\n"
	if !bytes.HasSuffix(got.Data, []byte(want)) {
		t.Errorf("relayed message:\n%q\nwant it to end with:\n%q", got.Data, want)
	}
}

func TestExchangeSMTPHoldsAMailboxNotGrantedUntilItIs(t *testing.T) {
	x, d, _, _ := startExchange(t, 4)
	d.AddMailbox(t, "scanner@contoso.com")
	_, err := x.Send(context.Background(), smtpEnv("q1", "alice@example.com"), rawMessage("Subject: x\r\n\r\nx\r\n"))
	var e *Error
	if !errors.As(err, &e) || e.Kind != KindCredential || e.Scope != ScopeMailbox || !strings.HasPrefix(e.Code, "535") ||
		!strings.Contains(e.Explanation, "Add-MailboxPermission") {
		t.Fatalf("error = %#v", err)
	}
	d.Grant(t, "scanner@contoso.com")
	if _, err := x.Send(context.Background(), smtpEnv("q1", "alice@example.com"), rawMessage("Subject: x\r\n\r\nx\r\n")); err != nil {
		t.Fatalf("after the grant: %v", err)
	}
}

func TestExchangeSMTPWrongSecretHoldsEverythingUntilFixed(t *testing.T) {
	x, d, fake, secretFile := startExchange(t, 4)
	d.Grant(t, "scanner@contoso.com")
	os.WriteFile(secretFile, []byte("wrong\n"), 0o600)
	if err := x.ReloadCredential(); err != nil {
		t.Fatal(err)
	}
	_, err := x.Send(context.Background(), smtpEnv("q1", "alice@example.com"), rawMessage("Subject: x\r\n\r\nx\r\n"))
	var e *Error
	if !errors.As(err, &e) || e.Kind != KindCredential || e.Scope != ScopeTarget || e.AADSTS != "AADSTS7000215" {
		t.Fatalf("error = %#v", err)
	}
	fake.WriteSecretFile(filepath.Dir(secretFile))
	if err := x.ReloadCredential(); err != nil {
		t.Fatal(err)
	}
	if _, err := x.Send(context.Background(), smtpEnv("q1", "alice@example.com"), rawMessage("Subject: x\r\n\r\nx\r\n")); err != nil {
		t.Fatalf("after the fix: %v", err)
	}
}

func TestExchangeSMTPRelayDownIsTransient(t *testing.T) {
	x, d, _, _ := startExchange(t, 4)
	d.Grant(t, "scanner@contoso.com")
	d.Sink.Down()
	_, err := x.Send(context.Background(), smtpEnv("q1", "alice@example.com"), rawMessage("Subject: x\r\n\r\nx\r\n"))
	var e *Error
	if !errors.As(err, &e) || e.Kind != KindTransient {
		t.Fatalf("error = %#v", err)
	}
	d.Sink.Up(t)
	if _, err := x.Send(context.Background(), smtpEnv("q1", "alice@example.com"), rawMessage("Subject: x\r\n\r\nx\r\n")); err != nil {
		t.Fatalf("with the relay back: %v", err)
	}
}

func TestExchangeSMTPServerDownIsTransient(t *testing.T) {
	x, d, _, _ := startExchange(t, 4)
	d.Stop()
	_, err := x.Send(context.Background(), smtpEnv("q1", "alice@example.com"), rawMessage("Subject: x\r\n\r\nx\r\n"))
	var e *Error
	if !errors.As(err, &e) || e.Kind != KindTransient {
		t.Fatalf("error = %#v", err)
	}
}

func TestExchangeSMTPReusesSessionsAndOneToken(t *testing.T) {
	const perMailbox, messages = 2, 30
	x, d, fake, _ := startExchange(t, perMailbox)
	d.Grant(t, "scanner@contoso.com")
	var wg sync.WaitGroup
	next := make(chan int)
	for range perMailbox {
		wg.Go(func() {
			for i := range next {
				msg := rawMessage(fmt.Sprintf("Subject: %d\r\n\r\nmessage %d\r\n", i, i))
				if _, err := x.Send(context.Background(), smtpEnv(fmt.Sprint(i), "alice@example.com"), msg); err != nil {
					t.Error(err)
				}
			}
		})
	}
	for i := range messages {
		next <- i
	}
	close(next)
	wg.Wait()
	d.Sink.WaitTransactions(t, messages, 10*time.Second)
	if n := d.Sink.PeakConnections(); n > perMailbox {
		t.Errorf("%d sessions at once, want at most %d", n, perMailbox)
	}
	if n := fake.TokenRequests(); n != 1 {
		t.Errorf("%d token requests, want 1", n)
	}
}

func TestExchangeSMTPReplacesASessionIdleOverAMinute(t *testing.T) {
	x, d, _, _ := startExchange(t, 4)
	d.Grant(t, "scanner@contoso.com")
	send := func(id string) {
		t.Helper()
		if _, err := x.Send(context.Background(), smtpEnv(id, "alice@example.com"), rawMessage("Subject: x\r\n\r\nx\r\n")); err != nil {
			t.Fatal(err)
		}
	}
	send("q1")
	send("q2")
	d.Sink.WaitTransactions(t, 2, 10*time.Second)
	if n := d.Sink.Sessions(); n != 1 {
		t.Fatalf("%d sessions for two messages in a row, want 1", n)
	}
	later := time.Now().Add(smtpIdleLimit + time.Second)
	x.now = func() time.Time { return later }
	send("q3")
	d.Sink.WaitTransactions(t, 3, 10*time.Second)
	if n := d.Sink.Sessions(); n != 2 {
		t.Errorf("%d sessions after one idled over %v, want 2", n, smtpIdleLimit)
	}
}

func TestExchangeSMTPLargeAttachmentIntact(t *testing.T) {
	x, d, _, _ := startExchange(t, 4)
	d.Grant(t, "scanner@contoso.com")
	var msg bytes.Buffer
	msg.WriteString("From: scanner@contoso.com\r\nTo: alice@example.com\r\nSubject: big\r\nMIME-Version: 1.0\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	data := patterned(15 << 20) // 20 MB once in base64
	for enc := bytes.NewBufferString(base64.StdEncoding.EncodeToString(data)); enc.Len() > 0; {
		msg.Write(enc.Next(76))
		msg.WriteString("\r\n")
	}
	if _, err := x.Send(context.Background(), smtpEnv("q1", "alice@example.com"), rawMessage(msg.Bytes())); err != nil {
		t.Fatal(err)
	}
	got := d.Sink.WaitTransactions(t, 1, 30*time.Second)[0]
	if !bytes.HasSuffix(got.Data, msg.Bytes()) {
		t.Errorf("the %d-byte message arrived as %d bytes, not intact", msg.Len(), len(got.Data))
	}
}

func TestExchangeSMTPSignedMessageStillVerifies(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl is not installed")
	}
	x, d, _, _ := startExchange(t, 4)
	d.Grant(t, "scanner@contoso.com")
	dir := t.TempDir()
	_, certKey := graphtest.NewCertificate(t)
	os.WriteFile(filepath.Join(dir, "signer.pem"), certKey, 0o600)
	os.WriteFile(filepath.Join(dir, "body.txt"), []byte("Content-Type: text/plain\r\n\r\nsigned text\r\n"), 0o600)
	signed, err := exec.Command(openssl, "smime", "-sign", "-in", filepath.Join(dir, "body.txt"), "-signer", filepath.Join(dir, "signer.pem"),
		"-from", "scanner@contoso.com", "-to", "alice@example.com", "-subject", "signed", "-crlfeol").Output()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x.Send(context.Background(), smtpEnv("q1", "alice@example.com"), rawMessage(signed)); err != nil {
		t.Fatal(err)
	}
	got := d.Sink.WaitTransactions(t, 1, 10*time.Second)[0]
	os.WriteFile(filepath.Join(dir, "relayed.eml"), got.Data, 0o600)
	out, err := exec.Command(openssl, "smime", "-verify", "-noverify", "-in", filepath.Join(dir, "relayed.eml")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Verification successful") {
		t.Fatalf("openssl smime -verify: %v\n%s", err, out)
	}
}

func TestExchangeSMTPRefusedRecipientAloneFails(t *testing.T) {
	x, d, _, _ := startExchange(t, 4)
	d.Grant(t, "scanner@contoso.com")
	d.Sink.Refuse("nobody@example.com")
	receipt, err := x.Send(context.Background(), smtpEnv("q1", "alice@example.com", "nobody@example.com", "bob@example.com"), rawMessage("Subject: x\r\n\r\nx\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(receipt.Refused) != 1 || receipt.Refused[0].Recipient != "nobody@example.com" || receipt.Refused[0].Status != "5.1.1" {
		t.Errorf("refused = %+v", receipt.Refused)
	}
	got := d.Sink.WaitTransactions(t, 1, 10*time.Second)
	if strings.Join(got[0].To, ",") != "alice@example.com,bob@example.com" {
		t.Errorf("delivered to %v", got[0].To)
	}

	// When every recipient is refused, the message fails.
	_, err = x.Send(context.Background(), smtpEnv("q2", "nobody@example.com"), rawMessage("Subject: x\r\n\r\nx\r\n"))
	var e *Error
	if !errors.As(err, &e) || e.Kind != KindMessage || e.BounceStatus != "5.1.1" || !strings.Contains(e.Explanation, "nobody@example.com") {
		t.Fatalf("error = %#v", err)
	}
}

func TestExchangeSMTPTooManyRecipientsContinues(t *testing.T) {
	x, d, _, _ := startExchange(t, 4)
	d.Grant(t, "scanner@contoso.com")
	d.Sink.LimitRecipients(2)
	recipients := []string{"a@example.com", "b@example.com", "c@example.com", "d@example.com", "e@example.com"}
	if _, err := x.Send(context.Background(), smtpEnv("q1", recipients...), rawMessage("Subject: x\r\n\r\nx\r\n")); err != nil {
		t.Fatal(err)
	}
	var all []string
	for _, tx := range d.Sink.WaitTransactions(t, 3, 10*time.Second) {
		all = append(all, tx.To...)
	}
	if strings.Join(all, ",") != strings.Join(recipients, ",") {
		t.Errorf("transactions reached %v, want each of %v once", all, recipients)
	}
}

func TestExchangeSMTPFailureAfterAFirstTransactionNamesWhoGotIt(t *testing.T) {
	x, d, _, _ := startExchange(t, 4)
	d.Grant(t, "scanner@contoso.com")
	d.Sink.LimitRecipients(2)
	d.Sink.FailNthData(2)
	env := smtpEnv("q1", "a@example.com", "b@example.com", "c@example.com", "d@example.com")
	receipt, err := x.Send(context.Background(), env, rawMessage("Subject: x\r\n\r\nx\r\n"))
	var e *Error
	if !errors.As(err, &e) || e.Kind != KindTransient || strings.Join(receipt.Delivered, ",") != "a@example.com,b@example.com" {
		t.Fatalf("receipt %+v, error %#v", receipt, err)
	}
	// The engine's next try leaves them out.
	if _, err := x.Send(context.Background(), smtpEnv("q1", "c@example.com", "d@example.com"), rawMessage("Subject: x\r\n\r\nx\r\n")); err != nil {
		t.Fatal(err)
	}
	var all []string
	for _, tx := range d.Sink.WaitTransactions(t, 2, 10*time.Second) {
		all = append(all, tx.To...)
	}
	if strings.Join(all, ",") != "a@example.com,b@example.com,c@example.com,d@example.com" {
		t.Errorf("recipients reached: %v", all)
	}
}
