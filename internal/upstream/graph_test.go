package upstream

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smtpgw/smtpgw/internal/config"
	"github.com/smtpgw/smtpgw/internal/convert"
	"github.com/smtpgw/smtpgw/internal/envelope"
	"github.com/smtpgw/smtpgw/internal/graphtest"
)

func newGraph(t *testing.T, fake *graphtest.Server, cfg *config.Graph) *Graph {
	t.Helper()
	g, err := NewGraph(cfg, Options{RootCAs: fake.CertPool()})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

var testEnv = &envelope.Envelope{ID: "q1", Mailbox: "scanner@contoso.com", Recipients: []string{"alice@contoso.com"}}

// message builds a Result with attachments of the given contents.
func message(subject string, attachments ...convert.Attachment) *convert.Result {
	return &convert.Result{
		Message: convert.Message{
			Subject:      subject,
			Body:         convert.ItemBody{ContentType: "text", Content: "body of " + subject},
			ToRecipients: []convert.Recipient{{EmailAddress: convert.EmailAddress{Address: "alice@contoso.com"}}},
		},
		Attachments: attachments,
	}
}

func bytesAttachment(name string, data []byte) convert.Attachment {
	return convert.Attachment{Name: name, ContentType: "application/pdf", Size: int64(len(data)),
		Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }}
}

// convertedMessage is a Message that holds only a conversion, for the
// targets that send one.
func convertedMessage(r *convert.Result) Message { return converted{r} }

type converted struct{ r *convert.Result }

func (c converted) Converted() (*convert.Result, error) { return c.r, nil }
func (c converted) Raw() (io.ReaderAt, int64)           { return nil, 0 }

// patterned is deterministic content of any size, generated as it is read.
func patterned(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/1024)
	}
	return b
}

func TestSendSmallJSON(t *testing.T) {
	fake := graphtest.New(t)
	cfg := fake.GraphConfig(t)
	no := false
	cfg.SaveToSentItems = &no
	g := newGraph(t, fake, cfg)
	pdf := patterned(10_000)
	for i := range 3 {
		receipt, err := g.Send(context.Background(), testEnv, convertedMessage(message("small", bytesAttachment("scan.pdf", pdf))))
		if err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		if receipt.Status != http.StatusAccepted || receipt.RequestID == "" {
			t.Errorf("receipt = %+v", receipt)
		}
	}
	sent := fake.Sent()
	if len(sent) != 3 || sent[0].Kind != "json" || sent[0].Mailbox != "scanner@contoso.com" || sent[0].SaveToSentItems {
		t.Fatalf("sent = %+v", sent)
	}
	if a := sent[0].Message.Attachments; len(a) != 1 || !bytes.Equal(a[0].ContentBytes, pdf) {
		t.Error("attachment did not arrive byte for byte")
	}
	if n := fake.TokenRequests(); n != 1 {
		t.Errorf("%d token requests for 3 sends, want 1 (cached)", n)
	}
}

func TestSendMIME(t *testing.T) {
	fake := graphtest.New(t)
	g := newGraph(t, fake, fake.GraphConfig(t))
	raw := []byte("Bcc: audit@contoso.com\r\nContent-Type: multipart/signed; protocol=\"application/pkcs7-signature\"\r\n\r\nsigned")
	msg := message("signed")
	msg.MIME = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(raw)), nil }
	if _, err := g.Send(context.Background(), testEnv, convertedMessage(msg)); err != nil {
		t.Fatal(err)
	}
	if sent := fake.Sent(); len(sent) != 1 || sent[0].Kind != "mime" || !bytes.Equal(sent[0].MIME, raw) {
		t.Fatalf("sent = %+v", sent)
	}
}

func TestCertificateCredential(t *testing.T) {
	cert, pemData := graphtest.NewCertificate(t)
	fake := graphtest.New(t, graphtest.WithCertificate(cert))
	cfg := fake.GraphConfig(t)
	cfg.ClientSecretFile = filepath.Join(t.TempDir(), "client.pem")
	os.WriteFile(cfg.ClientSecretFile, pemData, 0o600)
	cfg.CertificateFile, cfg.ClientSecretFile = cfg.ClientSecretFile, ""
	t.Setenv(config.ClientSecretEnv, "")
	g := newGraph(t, fake, cfg)
	if _, err := g.Send(context.Background(), testEnv, convertedMessage(message("cert"))); err != nil {
		t.Fatal(err)
	}
}

func TestLargeAttachmentsUploadByteForByte(t *testing.T) {
	fake := graphtest.New(t)
	g := newGraph(t, fake, fake.GraphConfig(t))
	small := patterned(100_000)
	big12, big40 := patterned(12<<20), patterned(40<<20)
	msg := message("large", bytesAttachment("small.pdf", small), bytesAttachment("12.pdf", big12), bytesAttachment("40.pdf", big40))
	fake.FailNext(graphtest.RouteUpload, 1, graphtest.Failure{Status: http.StatusServiceUnavailable})
	if _, err := g.Send(context.Background(), testEnv, convertedMessage(msg)); err != nil {
		t.Fatal(err)
	}
	sent := fake.Sent()
	if len(sent) != 1 || sent[0].Kind != "draft" {
		t.Fatalf("sent = %+v", sent)
	}
	got := map[string][]byte{}
	for _, a := range sent[0].Message.Attachments {
		got[a.Name] = a.ContentBytes
	}
	for name, want := range map[string][]byte{"small.pdf": small, "12.pdf": big12, "40.pdf": big40} {
		if !bytes.Equal(got[name], want) {
			t.Errorf("%s: %d bytes arrived, want %d identical", name, len(got[name]), len(want))
		}
	}
	if fake.Calls(graphtest.RouteCreateUploadSession) != 2 {
		t.Errorf("%d upload sessions, want 2", fake.Calls(graphtest.RouteCreateUploadSession))
	}
}

func TestDraftDeletedWhenSendFails(t *testing.T) {
	fake := graphtest.New(t)
	g := newGraph(t, fake, fake.GraphConfig(t))
	fake.FailNext(graphtest.RouteSend, 1, graphtest.Failure{Status: http.StatusForbidden, Code: "ErrorSendAsDenied"})
	_, err := g.Send(context.Background(), testEnv, convertedMessage(message("large", bytesAttachment("big.pdf", patterned(4<<20)))))
	var e *Error
	if !errors.As(err, &e) || e.Kind != KindMessage || e.Code != "ErrorSendAsDenied" {
		t.Fatalf("err = %v", err)
	}
	if len(fake.Deleted()) != 1 {
		t.Errorf("deleted = %v, want the draft", fake.Deleted())
	}
}

func TestCheck(t *testing.T) {
	fake := graphtest.New(t, graphtest.WithRoles("Mail.Send"))
	g := newGraph(t, fake, fake.GraphConfig(t))
	info, err := g.Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.TenantID != fake.TenantID || info.AppID != fake.ClientID || strings.Join(info.Roles, ",") != "Mail.Send" {
		t.Errorf("info = %+v", info)
	}
}

func TestOutbox(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "outbox")
	o, err := NewOutbox(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.Send(context.Background(), testEnv, convertedMessage(message("trial", bytesAttachment("a.pdf", []byte("PDF"))))); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "q1.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"subject":"trial"`, `"contentBytes":"UERG"`, `"saveToSentItems":true`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("outbox file lacks %s:\n%s", want, data)
		}
	}
}
