package main

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/html"

	"github.com/smtpgw/smtpgw/internal/delivery"
	"github.com/smtpgw/smtpgw/internal/safetext"
	"github.com/smtpgw/smtpgw/internal/trace"
	"github.com/smtpgw/smtpgw/internal/upstream"
)

// hostile is text a client could choose: markup that would run a script,
// a terminal escape, a bidi override, a line break, and a length far
// beyond any line.
func hostile(what string) string {
	return `"><script>alert(1)</script><img src=x onerror=alert(1)>` + what + "\x1b[2J\u202e\r\n" + strings.Repeat("A", 10_000) + "@contoso.com"
}

// pageTags are the elements the status page is made of.
var pageTags = []string{"html", "head", "meta", "title", "style", "body", "h1", "h2", "p", "span", "div", "dl", "dt", "dd", "strong", "code", "ol", "li", "br", "a"}

// TestStatusPageRendersHostileStringsInert fills every place of the page
// with client-chosen text: it stays text (no element or attribute of its
// own), its control characters are escaped, and each value is cut short.
func TestStatusPageRendersHostileStringsInert(t *testing.T) {
	now := time.Now()
	var recipients []string
	for i := range 30 {
		recipients = append(recipients, hostile(fmt.Sprint("rcpt", i)))
	}
	data := statusPageData{
		Version: "1.2.3", Uptime: "1h0m0s", Now: "now",
		Status: delivery.Status{
			Upstream: delivery.UpstreamStatus{
				Way: upstream.Way{Via: "smtp", Address: "smtp.office365.com:587"},
				Down: &delivery.Refusal{Since: now, AADSTS: "AADSTS7000215", Code: hostile("code"), Description: hostile("description"),
					Explanation: "Put the secret's value in client_secret_file.", RequestID: hostile("request")},
				HeldMailboxes: []delivery.HeldMailbox{{Mailbox: hostile("mailbox"), Messages: 2, Refusal: delivery.Refusal{Code: hostile("code")}}},
			},
			Queue:        delivery.QueueStatus{Queued: 3, Limited: 1, OldestAgeSeconds: 90},
			MailboxGuard: []delivery.GuardHold{{Mailbox: hostile("guarded"), Identity: hostile("identity"), Messages: 1, Reason: hostile("reason")}},
		},
		Expiries: []expiry{{Name: "graph client secret", Days: 9.5}},
	}
	for i := range trace.RecentEvents / 2 {
		id := fmt.Sprintf("0abc%d", i)
		data.Events = append(data.Events,
			trace.Event{ID: id, Time: now, Kind: trace.Accepted, From: hostile("sender"), To: recipients,
				MessageID: hostile("message-id"), Subject: hostile("subject"), Client: hostile("client"), Mailbox: hostile("mailbox")},
			trace.Event{ID: id, Time: now, Kind: trace.Deferred, Attempts: 1, Reference: hostile("reference"), Reason: hostile("reason")})
	}
	var b strings.Builder
	if err := statusPage.Execute(&b, data); err != nil {
		t.Fatal(err)
	}
	page := b.String()

	z := html.NewTokenizer(strings.NewReader(page))
	for tt := z.Next(); tt != html.ErrorToken; tt = z.Next() {
		tok := z.Token()
		switch tok.Type {
		case html.StartTagToken, html.SelfClosingTagToken:
			if !slices.Contains(pageTags, tok.Data) {
				t.Errorf("the page has a <%s> element", tok.Data)
			}
			for _, a := range tok.Attr {
				if strings.HasPrefix(a.Key, "on") || strings.Contains(a.Val, "script") {
					t.Errorf("<%s> has the attribute %s=%q", tok.Data, a.Key, a.Val)
				}
			}
		case html.TextToken:
			if strings.ContainsAny(tok.Data, "\x1b\u202e\r") {
				t.Errorf("a control character reached the page: %q", tok.Data[:min(len(tok.Data), 80)])
			}
			if strings.Contains(tok.Data, "AAAA") && len(tok.Data) > 2*safetext.MaxLogValue {
				t.Errorf("a client's text of %d bytes reached the page whole", len(tok.Data))
			}
		}
	}
	if !errors.Is(z.Err(), io.EOF) {
		t.Fatal(z.Err())
	}
	if strings.Contains(page, "message-id") || strings.Contains(page, "subject") {
		t.Error("the page shows a Message-ID or a subject")
	}
	for _, want := range []string{"upstream down", "AADSTS7000215", "client_secret_file", "&lt;script&gt;", `\x1b[2J\u202e\r\n`, "1m30s", "1.2.3", "expires in 9 day(s)", "Mailbox guard", "Sends through Exchange SMTP at smtp.office365.com:587."} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	// Fifty events each naming 30 recipients of 10 kB stay a small page.
	if len(page) > 256<<10 {
		t.Errorf("the page is %d bytes", len(page))
	}
}

func TestExpiriesComeFromExpiryMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	cert := prometheus.NewGauge(prometheus.GaugeOpts{Name: "smtpgw_graph_client_certificate_expiry_seconds", Help: "x"})
	cert.Set(10 * 86400)
	secret := prometheus.NewGauge(prometheus.GaugeOpts{Name: "smtpgw_graph_client_secret_expiry_seconds", Help: "x"})
	secret.Set(-86400)
	reg.MustRegister(cert, secret, prometheus.NewGauge(prometheus.GaugeOpts{Name: "smtpgw_other_seconds", Help: "y"}))
	got := expiries(reg)
	want := []expiry{{Name: "graph client certificate", Days: 10, WarnDays: 30}, {Name: "graph client secret", Days: -1, WarnDays: 14}}
	if !slices.Equal(got, want) {
		t.Errorf("expiries = %+v, want %+v", got, want)
	}
}

// The page warns of an expiry as check does: a certificate 30 days ahead,
// the secret 14.
func TestExpiryWarnings(t *testing.T) {
	var page strings.Builder
	err := statusPage.Execute(&page, statusPageData{Expiries: []expiry{
		{Name: "graph client certificate", Days: 20.5, WarnDays: 30},
		{Name: "graph client secret", Days: 20.5, WarnDays: 14},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`<dt>graph client certificate</dt><dd class="warning">expires in 20 day(s)</dd>`,
		`<dt>graph client secret</dt><dd>expires in 20 day(s)</dd>`,
	} {
		if !strings.Contains(page.String(), want) {
			t.Errorf("page lacks %s", want)
		}
	}
}

func TestExpiresInCountsWholeDays(t *testing.T) {
	for days, want := range map[float64]string{
		341.9: "expires in 341 day(s)",
		1.2:   "expires in 1 day(s)",
		0.4:   "expires within a day",
		-0.5:  "expired within the last day",
		-3.2:  "expired 3 day(s) ago",
	} {
		if got := expiresIn(days); got != want {
			t.Errorf("expiresIn(%v) = %q, want %q", days, got, want)
		}
	}
}

func TestShortTimeLeavesOutToday(t *testing.T) {
	now := time.Date(2026, 12, 6, 15, 0, 0, 0, time.Local)
	if got := shortTime(now.Add(-time.Hour), now); got != "14:00:00" {
		t.Errorf("an hour ago: %q", got)
	}
	if got := shortTime(now.AddDate(0, 0, -1), now); got != "2026-12-05 15:00:00" {
		t.Errorf("a day ago: %q", got)
	}
}
