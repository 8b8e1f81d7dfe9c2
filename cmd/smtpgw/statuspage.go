package main

import (
	_ "embed"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smtpgw/smtpgw/internal/delivery"
	"github.com/smtpgw/smtpgw/internal/safetext"
	"github.com/smtpgw/smtpgw/internal/trace"
)

//go:embed statuspage.html
var statusPageHTML string

// statusPage is the template of /; html/template escapes every value, and
// values that came from clients are also cleared of control characters.
var statusPage = template.Must(template.New("status").Funcs(template.FuncMap{
	"fmtTime":      func(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05") },
	"fmtSeconds":   func(s float64) string { return (time.Duration(s) * time.Second).String() },
	"eventDetails": eventDetails,
}).Parse(statusPageHTML))

// certificateExpirySuffix names the metrics the page lists as
// certificates: seconds until each expires.
const certificateExpirySuffix = "certificate_expiry_seconds"

// statusPageData is what the page shows.
type statusPageData struct {
	Version, Uptime, Now string
	delivery.Status
	Certificates []certificateExpiry
	Events       []trace.Event
}

type certificateExpiry struct {
	Name string
	Days float64
}

// statusPageHandler serves / for a person with a browser: what /status
// says, the certificates' expiry and the latest trace events.
func statusPageHandler(engine *delivery.Engine, traces *trace.Writer, registry prometheus.Gatherer, started time.Time, logger *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		now := time.Now()
		data := statusPageData{
			Version:      buildVersion(),
			Uptime:       now.Sub(started).Round(time.Second).String(),
			Now:          now.Format("2006-01-02 15:04:05 MST"),
			Status:       engine.Status(),
			Certificates: certificates(registry),
			Events:       traces.Recent(),
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if err := statusPage.Execute(w, data); err != nil {
			logger.Debug("status page not sent", "error", err)
		}
	})
}

// certificates reads the expiry metrics from the registry, so that the
// page lists whatever certificates the gateway watches.
func certificates(registry prometheus.Gatherer) []certificateExpiry {
	families, err := registry.Gather()
	if err != nil {
		return nil
	}
	var out []certificateExpiry
	for _, f := range families {
		if !strings.HasSuffix(f.GetName(), certificateExpirySuffix) {
			continue
		}
		name := strings.TrimSuffix(strings.TrimPrefix(f.GetName(), "smtpgw_"), "_"+certificateExpirySuffix)
		for _, m := range f.GetMetric() {
			label := strings.ReplaceAll(name, "_", " ")
			for _, l := range m.GetLabel() {
				label += " " + l.GetValue()
			}
			out = append(out, certificateExpiry{Name: label, Days: m.GetGauge().GetValue() / 86400})
		}
	}
	return out
}

// eventDetails is one line about an event, from client data made safe.
func eventDetails(e trace.Event) string {
	switch e.Kind {
	case trace.Accepted:
		to := "-"
		if len(e.To) > 0 {
			to = e.To[0]
		}
		if len(e.To) > 1 {
			to += fmt.Sprintf(" (+%d)", len(e.To)-1)
		}
		return safetext.Log(fmt.Sprintf("<%s> → %s via %s from %s", e.From, to, e.Mailbox, e.Client))
	case trace.Bounced:
		return "bounce " + e.Reference
	}
	details := e.Reason
	if e.Reference != "" {
		details = strings.TrimSpace("reference " + e.Reference + " " + details)
	}
	return safetext.Log(details)
}
