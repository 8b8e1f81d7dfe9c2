package dovecottest_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/smtpgw/smtpgw/internal/dovecottest"
	"github.com/smtpgw/smtpgw/internal/graphtest"
	"github.com/smtpgw/smtpgw/internal/upstream"
)

const mailbox = "scanner@contoso.com"

// exchangeToken gets a token for Exchange's scope from fake, as the
// gateway does.
func exchangeToken(t *testing.T, fake *graphtest.Server) string {
	t.Helper()
	g, err := upstream.NewGraph(fake.GraphConfig(t), upstream.Options{RootCAs: fake.CertPool()})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := g.Token(context.Background(), graphtest.ExchangeAudience+"/.default")
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func submit(t *testing.T, d *dovecottest.Server, token string) error {
	t.Helper()
	c, err := smtp.DialStartTLS(d.SubmissionAddress, &tls.Config{RootCAs: d.CertPool(), ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Auth(upstream.NewXOAUTH2Client(mailbox, token)); err != nil {
		return err
	}
	msg := "From: " + mailbox + "\r\nTo: alice@example.com\r\nSubject: hello\r\n\r\nbody\r\n"
	return c.SendMail(mailbox, []string{"alice@example.com", "bob@example.com"}, strings.NewReader(msg))
}

func TestSubmissionNeedsAGrantedMailbox(t *testing.T) {
	fake := graphtest.New(t)
	d := dovecottest.Start(t, fake)
	token := exchangeToken(t, fake)

	d.AddMailbox(t, mailbox)
	var smtpErr *smtp.SMTPError
	if err := submit(t, d, token); !errors.As(err, &smtpErr) || smtpErr.Code != 535 {
		t.Fatalf("without a grant: %v, want 535", err)
	}
	d.Grant(t, mailbox)
	if err := submit(t, d, token); err != nil {
		t.Fatalf("with a grant: %v", err)
	}
	got := d.Sink.WaitTransactions(t, 1, 10*time.Second)
	if got[0].From != mailbox || strings.Join(got[0].To, ",") != "alice@example.com,bob@example.com" || !strings.Contains(string(got[0].Data), "\r\n\r\nbody\r\n") {
		t.Errorf("sink got %+v", got[0])
	}
	if err := submit(t, d, token[:len(token)-4]+"AAAA"); !errors.As(err, &smtpErr) || smtpErr.Code != 535 {
		t.Fatalf("a forged token: %v, want 535", err)
	}
	d.Revoke(t, mailbox)
	if err := submit(t, d, token); !errors.As(err, &smtpErr) || smtpErr.Code != 535 {
		t.Fatalf("after revoking: %v, want 535", err)
	}
}

// imapLogin authenticates over IMAPS and returns the tagged answer.
func imapLogin(t *testing.T, d *dovecottest.Server, token string) string {
	t.Helper()
	c, err := tls.Dial("tcp", d.IMAPAddress, &tls.Config{RootCAs: d.CertPool(), ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	if _, err := r.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	ir := base64.StdEncoding.EncodeToString(upstream.XOAUTH2(mailbox, token))
	c.Write([]byte("a1 AUTHENTICATE XOAUTH2 " + ir + "\r\n"))
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(line, "+") {
			c.Write([]byte("\r\n")) // the error challenge: ask for the final answer
			continue
		}
		if strings.HasPrefix(line, "a1 ") {
			return line
		}
	}
}

func TestIMAPReadsAGrantedMailbox(t *testing.T) {
	fake := graphtest.New(t)
	d := dovecottest.Start(t, fake)
	token := exchangeToken(t, fake)
	d.Grant(t, mailbox)
	d.AddMessage(t, mailbox, []byte("Subject: one\r\n\r\nfirst\r\n"))
	if got := imapLogin(t, d, token); !strings.HasPrefix(got, "a1 OK") {
		t.Fatalf("login: %q", got)
	}
	d.Revoke(t, mailbox)
	if got := imapLogin(t, d, token); !strings.HasPrefix(got, "a1 NO") {
		t.Fatalf("login without a grant: %q", got)
	}
}
