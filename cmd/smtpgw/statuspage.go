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
// values that came from clients or from Microsoft's answers go through safe
// (eventDetails does its own): control characters escaped, length bounded.
var statusPage = template.Must(template.New("status").Funcs(template.FuncMap{
	"safe":         safetext.Log,
	"fmtTime":      func(t time.Time) string { return shortTime(t, time.Now()) },
	"fmtSeconds":   func(s float64) string { return (time.Duration(s) * time.Second).String() },
	"expiresIn":    expiresIn,
	"eventDetails": eventDetails,
}).Parse(statusPageHTML))

// shortTime is t in the local zone, without the date when it is now's: a
// phone's screen is narrow.
func shortTime(t, now time.Time) string {
	t, now = t.Local(), now.Local()
	if t.Year() == now.Year() && t.YearDay() == now.YearDay() {
		return t.Format("15:04:05")
	}
	return t.Format("2006-01-02 15:04:05")
}

// expiresIn says how long a certificate or secret has left, in whole days
// as check counts them.
func expiresIn(days float64) string {
	switch whole := int(days); {
	case days <= -1:
		return fmt.Sprintf("expired %d day(s) ago", -whole)
	case days <= 0:
		return "expired within the last day"
	case whole == 0:
		return "expires within a day"
	default:
		return fmt.Sprintf("expires in %d day(s)", whole)
	}
}

// expirySuffix names the metrics the page lists as certificates and
// secrets: seconds until each expires.
const expirySuffix = "_expiry_seconds"

// statusPageData is what the page shows.
type statusPageData struct {
	Version, Uptime, Now string
	delivery.Status
	Expiries []expiry
	Events   []trace.Event
}

// expiry is a certificate or secret and the days it has left (negative
// once expired); under WarnDays, the page warns, as check does.
type expiry struct {
	Name     string
	Days     float64
	WarnDays float64
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
			Version:  buildVersion(),
			Uptime:   now.Sub(started).Round(time.Second).String(),
			Now:      now.Format("2006-01-02 15:04:05 MST"),
			Status:   engine.Status(),
			Expiries: expiries(registry),
			Events:   traces.Recent(),
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if err := statusPage.Execute(w, data); err != nil {
			logger.Debug("status page not sent", "error", err)
		}
	})
}

// expiries reads the expiry metrics from the registry, so that the page
// lists whatever certificates and secrets the gateway watches.
func expiries(registry prometheus.Gatherer) []expiry {
	families, err := registry.Gather()
	if err != nil {
		return nil
	}
	var out []expiry
	for _, f := range families {
		if !strings.HasSuffix(f.GetName(), expirySuffix) {
			continue
		}
		name := strings.TrimSuffix(strings.TrimPrefix(f.GetName(), "smtpgw_"), expirySuffix)
		warn := certificateExpiryWarning
		if strings.HasSuffix(name, "_secret") {
			warn = secretExpiryWarning
		}
		for _, m := range f.GetMetric() {
			label := strings.ReplaceAll(name, "_", " ")
			for _, l := range m.GetLabel() {
				label += " " + l.GetValue()
			}
			out = append(out, expiry{Name: label, Days: m.GetGauge().GetValue() / 86400, WarnDays: warn.Hours() / 24})
		}
	}
	return out
}

// eventDetails is one line about an event, from client data made safe.
func eventDetails(e trace.Event) string {
	switch e.Kind {
	case trace.Accepted:
		return safetext.Log(fmt.Sprintf("<%s> → %s via %s from %s", e.From, recipientsCell(e.To), e.Mailbox, e.Client))
	case trace.Bounced:
		return safetext.Log("bounce " + e.Reference)
	}
	details := e.Reason
	if e.Reference != "" {
		details = strings.TrimSpace("reference " + e.Reference + " " + details)
	}
	return safetext.Log(details)
}
