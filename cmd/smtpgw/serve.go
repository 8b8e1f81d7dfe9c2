package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/smtpgw/smtpgw"
	"github.com/smtpgw/smtpgw/internal/config"
	"github.com/smtpgw/smtpgw/internal/delivery"
	"github.com/smtpgw/smtpgw/internal/queue"
	"github.com/smtpgw/smtpgw/internal/smtpserver"
	"github.com/smtpgw/smtpgw/internal/upstream"
)

// serve runs the gateway until SIGINT or SIGTERM, then shuts down in order:
// SMTP intake first (new connections get 421), then delivery.
func serve(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	path := fs.String("config", "", "configuration file (default: the built-in example)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	logger := newLogger(cfg.Log, stderr)
	for _, w := range cfg.Warnings {
		logger.Warn("configuration", "warning", w)
	}

	spool, err := queue.Open(cfg.Queue.Dir)
	if err != nil {
		return err
	}
	target, err := newTarget(cfg, logger)
	if err != nil {
		return err
	}
	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	engine := delivery.New(delivery.Config{
		Spool:    spool,
		Target:   target,
		Queue:    cfg.Queue,
		MaxParts: cfg.Server.MaxParts,
		Hostname: cfg.Server.Hostname,
		Logger:   logger,
		Metrics:  registry,
	})
	server, err := smtpserver.New(cfg, spool, logger)
	if err != nil {
		return err
	}
	if err := server.Register(registry); err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	deliveryCtx, stopDelivery := context.WithCancel(context.Background())
	defer stopDelivery()
	engineDone := make(chan error, 1)
	go func() { engineDone <- engine.Run(deliveryCtx) }()

	if err := server.Start(); err != nil {
		return err
	}
	attrs := []any{"version", buildVersion(), "target", targetName(cfg), "spool", cfg.Queue.Dir}
	for _, a := range server.Addrs() {
		attrs = append(attrs, "listen", a.String())
	}
	logger.Info("smtpgw started", attrs...)

	if cfg.Metrics.Address != "" {
		if err := serveMetrics(ctx, cfg.Metrics.Address, registry, logger); err != nil {
			return err
		}
	}

	select {
	case <-ctx.Done():
	case err := <-engineDone:
		return fmt.Errorf("delivery stopped: %w", err)
	}
	logger.Info("shutting down", "timeout", cfg.Server.ShutdownTimeout.D().String())
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownTimeout.D())
	defer cancel()
	if err := server.Shutdown(shutdownCtx); err != nil {
		logger.Warn("SMTP shutdown incomplete", "error", err)
	}
	if err := engine.Shutdown(shutdownCtx); err != nil {
		logger.Warn("delivery shutdown incomplete; unfinished messages stay in the spool", "error", err)
	}
	stopDelivery()
	<-engineDone
	logger.Info("smtpgw stopped")
	return nil
}

// loadConfig reads the file at path, or the built-in example when path is
// empty, so that `smtpgw serve` works on a fresh checkout.
func loadConfig(path string) (*config.Config, error) {
	if path == "" {
		return config.Parse(smtpgw.ExampleConfig, "built-in config.example.toml")
	}
	return config.Load(path)
}

func newLogger(c config.Log, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: logLevel(c.Level)}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func logLevel(name string) slog.Level {
	switch strings.ToLower(name) {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

func newTarget(cfg *config.Config, logger *slog.Logger) (upstream.Target, error) {
	if cfg.Outbox != nil {
		return upstream.NewOutbox(cfg.Outbox.Dir)
	}
	return upstream.NewGraph(cfg.Graph, upstream.Options{Logger: logger})
}

func targetName(cfg *config.Config) string {
	if cfg.Outbox != nil {
		return "outbox " + cfg.Outbox.Dir
	}
	return "graph"
}

// serveMetrics exposes Prometheus metrics and a liveness check until ctx ends.
func serveMetrics(ctx context.Context, addr string, registry *prometheus.Registry, logger *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
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
