package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/smtpgw/smtpgw/internal/config"
	"github.com/smtpgw/smtpgw/internal/delivery"
	"github.com/smtpgw/smtpgw/internal/queue"
	"github.com/smtpgw/smtpgw/internal/smtpserver"
	"github.com/smtpgw/smtpgw/internal/upstream"
)

// control is a request from the platform (Unix signals, the Windows SCM) to
// a running gateway.
type control int

const (
	controlStop control = iota + 1
	controlReload
)

// lifecycle hears a running gateway's state changes: systemd's notify
// socket, the Windows SCM status.
type lifecycle interface {
	Ready()     // listeners open, mail is accepted
	Reloading() // a reload starts
	Reloaded()  // a reload ended (applied or refused)
	Stopping()  // shutdown starts
}

// noLifecycle is the lifecycle of a gateway nobody supervises.
type noLifecycle struct{}

func (noLifecycle) Ready()     {}
func (noLifecycle) Reloading() {}
func (noLifecycle) Reloaded()  {}
func (noLifecycle) Stopping()  {}

// runGateway loads the configuration at path ("" = SMTPGW_CONFIG or the
// rules of `serve`), runs until controlStop arrives (or controls is
// closed), and shuts down gracefully within shutdown_timeout: SMTP intake
// first (new connections get 421), then delivery.
func runGateway(path string, controls <-chan control, life lifecycle, stderr io.Writer) error {
	cfg, err := loadConfig(path)
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

	metricsCtx, stopMetrics := context.WithCancel(context.Background())
	defer stopMetrics()
	if cfg.Metrics.Address != "" {
		if err := serveMetrics(metricsCtx, cfg.Metrics.Address, registry, logger); err != nil {
			return err
		}
	}
	life.Ready()

	for running := true; running; {
		select {
		case c, ok := <-controls:
			switch {
			case !ok || c == controlStop:
				running = false
			case c == controlReload:
				life.Reloading()
				logger.Warn("reload is not supported yet; restart smtpgw to apply configuration changes")
				life.Reloaded()
			}
		case err := <-engineDone:
			return fmt.Errorf("delivery stopped: %w", err)
		}
	}
	life.Stopping()
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

func newLogger(c config.Log, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: logLevel(c.Level)}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
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
