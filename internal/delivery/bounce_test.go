package delivery

import (
	"bytes"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/smtpgw/smtpgw/internal/envelope"
	"github.com/smtpgw/smtpgw/internal/queue"
)

func TestReport(t *testing.T) {
	spool, err := queue.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg := loadConfig(t, "")
	e := New(Config{Spool: spool, Queue: cfg.Queue, Hostname: cfg.Server.Hostname, Clock: &fakeClock{now: t0}})
	env := &envelope.Envelope{
		ID: "orig1", Mailbox: mailbox, MailFrom: sender,
		Recipients: []string{"a@example.net", "b@example.net"}, Received: t0.Add(-time.Hour),
	}
	rawHeader := "From: mfp@contoso.com\r\nSubject: Scan 42\r\nMessage-ID: <42@mfp>\r\n\r\n"
	header := textproto.MIMEHeader{"Subject": {"Scan 42"}, "Message-Id": {"<42@mfp>"}}
	refusal := graphErr(403, "ErrorSendAsDenied", 0)
	plain, status := explain(refusal), refusal.BounceStatus
	var buf bytes.Buffer
	err = e.writeReport(&buf, "bounce1", env, header, []byte(rawHeader), failure{
		reason: "graph permanent failure: HTTP 403 ErrorSendAsDenied", plain: plain, status: status,
	})
	if err != nil {
		t.Fatal(err)
	}

	msg, err := mail.ReadMessage(&buf)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"From":           "Mail Delivery System <" + mailbox + ">",
		"To":             "<" + sender + ">",
		"Subject":        "Undeliverable: Scan 42",
		"Message-Id":     "<bounce1@gw.example.com>",
		"In-Reply-To":    "<42@mfp>",
		"Auto-Submitted": "auto-replied",
	} {
		if got := msg.Header.Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("Content-Type = %q", msg.Header.Get("Content-Type"))
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	var types, bodies []string
	for range 4 {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(p)
		types = append(types, p.Header.Get("Content-Type"))
		bodies = append(bodies, string(b))
	}
	if strings.Join(types, ",") != "text/plain; charset=utf-8,message/delivery-status,text/rfc822-headers" {
		t.Fatalf("parts = %v", types)
	}
	for _, want := range []string{"a@example.net", "b@example.net", "may not send with the From address", "ErrorSendAsDenied"} {
		if !strings.Contains(bodies[0], want) {
			t.Errorf("human part lacks %q:\n%s", want, bodies[0])
		}
	}
	for _, want := range []string{"Reporting-MTA: dns; gw.example.com", "Final-Recipient: rfc822; a@example.net", "Final-Recipient: rfc822; b@example.net", "Action: failed", "Status: 5.7.1"} {
		if !strings.Contains(bodies[1], want) {
			t.Errorf("delivery-status lacks %q:\n%s", want, bodies[1])
		}
	}
	if bodies[2] != rawHeader {
		t.Errorf("headers part = %q, want %q", bodies[2], rawHeader)
	}
}

func TestIsAutomatic(t *testing.T) {
	tests := []struct {
		header textproto.MIMEHeader
		want   bool
	}{
		{textproto.MIMEHeader{}, false},
		{textproto.MIMEHeader{"Content-Type": {"text/plain"}}, false},
		{textproto.MIMEHeader{"Content-Type": {"Multipart/Report; report-type=delivery-status"}}, true},
		{textproto.MIMEHeader{"Auto-Submitted": {"no"}}, false},
		{textproto.MIMEHeader{"Auto-Submitted": {" No (comment)"}}, false},
		{textproto.MIMEHeader{"Auto-Submitted": {"auto-generated"}}, true},
		{textproto.MIMEHeader{"Auto-Submitted": {"auto-replied; owner-email=x@y"}}, true},
	}
	for _, tt := range tests {
		if got := isAutomatic(tt.header); got != tt.want {
			t.Errorf("isAutomatic(%v) = %v, want %v", tt.header, got, tt.want)
		}
	}
}
