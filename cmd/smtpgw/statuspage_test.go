package main

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smtpgw/smtpgw/internal/delivery"
	"github.com/smtpgw/smtpgw/internal/trace"
	"github.com/smtpgw/smtpgw/internal/upstream"
)

func TestStatusPageEscapesClientStrings(t *testing.T) {
	now := time.Now()
	data := statusPageData{
		Version: "1.2.3", Uptime: "1h0m0s", Now: "now",
		Status: delivery.Status{
			Upstream: delivery.UpstreamStatus{
				Way:           upstream.Way{Via: "smtp", Address: "smtp.office365.com:587"},
				Down:          &delivery.Refusal{Since: now, AADSTS: "AADSTS7000215", Explanation: "Put the secret's value in client_secret_file."},
				HeldMailboxes: []delivery.HeldMailbox{{Mailbox: "<b>held</b>@contoso.com", Messages: 2}},
			},
			Queue: delivery.QueueStatus{Queued: 3, OldestAgeSeconds: 90},
		},
		Events: []trace.Event{{ID: "0abc", Time: now, Kind: trace.Accepted, From: "<script>alert(1)</script>@x",
			To: []string{"bob@contoso.com\x1b[2J"}, Client: "127.0.0.2:1025"}},
	}
	var b strings.Builder
	if err := statusPage.Execute(&b, data); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	for _, bad := range []string{"<script>", "<b>held", "\x1b"} {
		if strings.Contains(page, bad) {
			t.Errorf("page contains %q unescaped", bad)
		}
	}
	for _, want := range []string{"upstream down", "AADSTS7000215", "client_secret_file", "&lt;script&gt;", `bob@contoso.com\x1b[2J`, "1m30s", "1.2.3", "Sends through Exchange SMTP at smtp.office365.com:587."} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(page, "<script") {
		t.Error("the page carries a script")
	}
}

func TestCertificatesComeFromExpiryMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "smtpgw_graph_client_certificate_expiry_seconds", Help: "x"})
	g.Set(10 * 86400)
	reg.MustRegister(g, prometheus.NewGauge(prometheus.GaugeOpts{Name: "smtpgw_other_seconds", Help: "y"}))
	certs := certificates(reg)
	if len(certs) != 1 || certs[0].Name != "graph client" || certs[0].Days != 10 {
		t.Errorf("certificates = %+v", certs)
	}
}
