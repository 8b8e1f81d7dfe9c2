package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/smtpgw/smtpgw/internal/delivery"
	"github.com/smtpgw/smtpgw/internal/queue"
	"github.com/smtpgw/smtpgw/internal/trace"
)

// readiness answers a load balancer's question: can this instance accept
// and keep mail? It never asks Graph: an instance whose upstream is down
// keeps taking mail into its queue, and a probe failing on an expired
// secret would take every replica out of service at once.
type readiness struct {
	accepting atomic.Bool // listeners open and not shutting down
	spool     *queue.Spool
	minFree   int64 // [queue] min_free_space
}

// check returns why the instance is not ready, or nil.
func (r *readiness) check() error {
	if !r.accepting.Load() {
		return errors.New("SMTP listeners are not accepting mail")
	}
	if err := r.spool.CheckWritable(); err != nil {
		return err
	}
	return r.spool.HasRoom(r.minFree)
}

// register adds smtpgw_ready, /readyz as a metric, so that an alert
// needs no probe of its own.
func (r *readiness) register(reg prometheus.Registerer) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "smtpgw_ready",
		Help: "1 while /readyz answers ready (accepting, spool writable, disk room), else 0.",
	}, func() float64 {
		if r.check() != nil {
			return 0
		}
		return 1
	}))
}

func (r *readiness) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	if err := r.check(); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		json.NewEncoder(w).Encode(map[string]string{"status": "not ready", "reason": err.Error()})
		return
	}
	io.WriteString(w, `{"status":"ready"}`+"\n")
}

// serveMetrics serves Prometheus metrics, the liveness check /healthz, the
// readiness check /readyz, the delivery status /status and the status page
// / until ctx ends.
func serveMetrics(ctx context.Context, addr string, registry *prometheus.Registry, ready *readiness, engine *delivery.Engine, traces *trace.Writer, logger *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.Handle("/readyz", ready)
	mux.Handle("/status", statusHandler(engine))
	mux.Handle("/", statusPageHandler(engine, traces, registry, time.Now(), logger))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("metrics server stopped", "error", err)
		}
	}()
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	logger.Info("metrics listening", "address", ln.Addr().String())
	return nil
}
