package main

import (
	"encoding/json"
	"net/http"
	"runtime"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smtpgw/smtpgw/internal/delivery"
)

// statusHandler serves /status: the delivery engine's status as JSON, for
// people and monitoring, with the version of this gateway.
func statusHandler(engine *delivery.Engine) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		body := struct {
			Version string `json:"version"`
			delivery.Status
		}{buildVersion(), engine.Status()}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(body)
	})
}

// registerBuildInfo adds smtpgw_build_info, which names the version.
func registerBuildInfo(reg prometheus.Registerer) {
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "smtpgw_build_info",
		Help:        "Always 1; its labels name the running build.",
		ConstLabels: prometheus.Labels{"version": buildVersion(), "goversion": runtime.Version()},
	})
	info.Set(1)
	reg.MustRegister(info)
}
