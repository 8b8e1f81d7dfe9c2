package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/smtpgw/smtpgw/internal/config"
	"github.com/smtpgw/smtpgw/internal/convert"
	"github.com/smtpgw/smtpgw/internal/envelope"
	"github.com/smtpgw/smtpgw/internal/upstream"
)

// sendTests sends one real message to address through each mapped mailbox
// (or only through the mailbox only), and reports per mailbox whether
// Graph took it, and if not, whether an access policy or a missing mailbox
// is why.
func sendTests(cfg *config.Config, address, only string, f *findings) {
	mailboxes := mappedMailboxes(cfg)
	if only != "" {
		if !slices.Contains(mailboxes, only) {
			f.warn("%s is not mapped to any [[user]] or [[network]]; testing it anyway", only)
		}
		mailboxes = []string{only}
	}
	if len(mailboxes) == 0 {
		f.warn("no [[user]] or [[network]] names a mailbox; use -mailbox to test one")
		return
	}
	// The configured way out: Graph, or Exchange's SMTP (send_via).
	target, err := newTarget(cfg, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		f.fail("%s: %v", targetName(cfg), err)
		return
	}
	if c, ok := target.(io.Closer); ok {
		defer c.Close()
	}
	for _, mailbox := range mailboxes {
		ctx, cancel := context.WithTimeout(context.Background(), checkTimeout)
		err := sendTest(ctx, target, cfg, mailbox, address)
		cancel()
		reportSendTest(f, cfg.Graph, mailbox, address, err)
	}
}

// mappedMailboxes lists every mailbox a [[user]] or [[network]] sends as,
// once each, in file order.
func mappedMailboxes(cfg *config.Config) []string {
	var list []string
	add := func(m string) {
		if m != "" && !slices.Contains(list, m) {
			list = append(list, m)
		}
	}
	for _, u := range cfg.Users {
		add(u.Mailbox)
	}
	for _, n := range cfg.Networks {
		add(n.Mailbox)
	}
	return list
}

// sendTest sends one short plain-text message as mailbox, through the same
// conversion and calls as spooled mail.
func sendTest(ctx context.Context, target upstream.Target, cfg *config.Config, mailbox, address string) error {
	now := time.Now()
	raw := fmt.Sprintf("From: <%s>\r\nTo: <%s>\r\nSubject: smtpgw test message through %s\r\nDate: %s\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"+
		"This message was sent by \"smtpgw check -send-test\" on %s\r\nthrough the mailbox %s, to show that the gateway can send as it.\r\n",
		mailbox, address, mailbox, now.Format(time.RFC1123Z), cfg.Server.Hostname, mailbox)
	env := &envelope.Envelope{
		Identity:       "check",
		Mailbox:        mailbox,
		AllowedSenders: []string{mailbox},
		MailFrom:       mailbox,
		Recipients:     []string{address},
		Received:       now,
	}
	_, err := target.Send(ctx, env, testMessage{strings.NewReader(raw), env})
	return err
}

// testMessage is the test message in whichever form the target takes.
type testMessage struct {
	raw *strings.Reader
	env *envelope.Envelope
}

func (m testMessage) Raw() (io.ReaderAt, int64) { return m.raw, m.raw.Size() }

func (m testMessage) Converted() (*convert.Result, error) {
	return convert.Convert(m.raw, m.raw.Size(), m.env, convert.Options{})
}

// reportSendTest explains one mailbox's result in the words an admin
// needs, with the command that tests an access policy.
func reportSendTest(f *findings, g *config.Graph, mailbox, address string, err error) {
	var uerr *upstream.Error
	switch {
	case err == nil:
		f.info("%s: sent a test message to %s", mailbox, address)
	case errors.As(err, &uerr) && uerr.Status == http.StatusForbidden && uerr.Code == "ErrorAccessDenied":
		f.fail("%s: refused: the app may not send as this mailbox; an application access policy or RBAC for Applications scope leaves it out (policy changes can take an hour). Test with: Test-ApplicationAccessPolicy -Identity %s -AppId %s, or Test-ServicePrincipalAuthorization -Identity <service principal> -Resource %s",
			mailbox, mailbox, g.ClientID, mailbox)
	case errors.As(err, &uerr) && uerr.Status == http.StatusNotFound:
		f.fail("%s: no such mailbox in the tenant (%s): check the address in the configuration", mailbox, uerr.Code)
	case errors.As(err, &uerr) && uerr.Explanation != "":
		f.fail("%s: not sent: %s", mailbox, uerr.Explanation)
	default:
		f.fail("%s: not sent: %v", mailbox, err)
	}
}
