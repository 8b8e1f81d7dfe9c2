package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/smtpgw/smtpgw/internal/certs"
	"github.com/smtpgw/smtpgw/internal/clients"
	"github.com/smtpgw/smtpgw/internal/config"
	"github.com/smtpgw/smtpgw/internal/delivery"
	"github.com/smtpgw/smtpgw/internal/queue"
	"github.com/smtpgw/smtpgw/internal/smtpserver"
	"github.com/smtpgw/smtpgw/internal/trace"
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

// gateway is a running smtpgw: what reload and shutdown act on.
type gateway struct {
	path    string // as given to runGateway
	source  string // the file in use, for the log
	cfg     *config.Config
	log     *slog.Logger
	level   *slog.LevelVar
	gate    *clients.Gate // identities, admission and logins of every front end
	certs   *certs.Served // the certificates of every TLS listener
	readers *readers      // IMAP and POP3 listeners
	server  *smtpserver.Server
	target  upstream.Target
}

// runGateway loads the configuration at path ("" = SMTPGW_CONFIG or the
// rules of `serve`), runs until controlStop arrives (or controls is
// closed), and shuts down gracefully within shutdown_timeout: SMTP intake
// first (new connections get 421), then delivery.
func runGateway(path string, controls <-chan control, life lifecycle, stderr io.Writer) error {
	cfg, err := loadConfig(path)
	if err != nil {
		return err
	}
	g := &gateway{path: path, source: configSource(path), cfg: cfg, level: new(slog.LevelVar)}
	g.level.Set(logLevel(cfg.Log.Level))
	g.log = newLogger(cfg.Log, g.level, stderr)
	if err := g.run(controls, life); err != nil {
		// Start-up failures go through the configured log, like the rest.
		g.log.Error("smtpgw failed", "error", err)
		return errLogged{err}
	}
	return nil
}

func (g *gateway) run(controls <-chan control, life lifecycle) error {
	cfg, logger := g.cfg, g.log
	if g.source == builtInExample {
		logger.Warn("NO CONFIGURATION FILE GIVEN: running the built-in example (local trial on 127.0.0.1:2525 and 127.0.0.1:2587, mail goes to ./outbox, not to Microsoft 365); use -config FILE or SMTPGW_CONFIG")
	} else {
		logger.Info("configuration", "file", g.source)
	}
	for _, w := range cfg.Warnings {
		logger.Warn("configuration", "warning", w)
	}

	lock, err := queue.TakeLock(cfg.Queue.Dir)
	if err != nil {
		return err
	}
	defer lock.Release()
	spool, err := queue.Open(cfg.Queue.Dir)
	if err != nil {
		return err
	}
	var traces *trace.Writer // nil with [log] trace = false: records nothing
	if cfg.Log.TraceEnabled() {
		if traces, err = trace.Open(trace.Dir(cfg.Queue.Dir), cfg.Log.TraceDays, logger); err != nil {
			return err
		}
		defer traces.Close()
	}
	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	registerBuildInfo(registry)
	if g.target, err = newTarget(cfg, logger, registry); err != nil {
		return err
	}

	engine := delivery.New(delivery.Config{
		Spool:    spool,
		Target:   g.target,
		Queue:    cfg.Queue,
		MaxParts: cfg.Server.MaxParts,
		Hostname: cfg.Server.Hostname,
		Logger:   logger,
		Metrics:  registry,
		Trace:    traces,
	})
	if g.gate, err = clients.New(cfg, logger); err != nil {
		return err
	}
	if err := g.gate.Register(registry); err != nil {
		return err
	}
	if g.certs, err = certs.NewServed(cfg, spool.Dir(), logger); err != nil {
		return err
	}
	if g.server, err = smtpserver.New(cfg, spool, g.gate, g.certs, logger); err != nil {
		return err
	}
	g.server.SetTrace(traces)
	if err := g.server.Register(registry); err != nil {
		return err
	}
	if g.readers, err = newReaders(cfg, g.gate, g.certs, g.target, engine, logger, registry); err != nil {
		return err
	}
	ready := &readiness{spool: spool, minFree: int64(cfg.Queue.MinFreeSpace)}
	ready.register(registry)
	metricsCtx, stopMetrics := context.WithCancel(context.Background())
	defer stopMetrics()
	if cfg.Metrics.Address != "" {
		if err := serveMetrics(metricsCtx, cfg.Metrics.Address, registry, ready, engine, traces, logger); err != nil {
			return err
		}
	}

	deliveryCtx, stopDelivery := context.WithCancel(context.Background())
	defer stopDelivery()
	engineDone := make(chan error, 1)
	go func() { engineDone <- engine.Run(deliveryCtx) }()
	go spool.ExpireFailedEvery(deliveryCtx, time.Hour, cfg.Queue.FailedMaxAge.D(), logger)

	if err := g.server.Start(); err != nil {
		return err
	}
	if err := g.readers.Start(); err != nil {
		return err
	}
	defer g.readers.Shutdown()
	var listeners []string
	for _, a := range append(g.server.Addrs(), g.readers.Addrs()...) {
		listeners = append(listeners, a.String())
	}
	logger.Info("smtpgw started", "version", buildVersion(), "listeners", listeners, "target", targetName(cfg), "spool", cfg.Queue.Dir)
	ready.accepting.Store(true)
	life.Ready()

	for running := true; running; {
		select {
		case c, ok := <-controls:
			switch {
			case !ok || c == controlStop:
				running = false
			case c == controlReload:
				life.Reloading()
				g.reload()
				life.Reloaded()
			}
		case err := <-engineDone:
			return fmt.Errorf("delivery stopped: %w", err)
		}
	}
	life.Stopping()
	ready.accepting.Store(false)
	timeout := g.cfg.Server.ShutdownTimeout.D()
	logger.Info("shutting down", "timeout_seconds", timeout.Seconds())
	shutdownCtx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := g.server.Shutdown(shutdownCtx); err != nil {
		logger.Warn("SMTP shutdown incomplete", "error", err)
	}
	g.readers.Shutdown()
	if err := engine.Shutdown(shutdownCtx); err != nil {
		logger.Warn("delivery shutdown incomplete; unfinished messages stay in the spool", "error", err)
	}
	stopDelivery()
	<-engineDone
	// Exchange's SMTP sessions end with QUIT.
	if c, ok := g.target.(io.Closer); ok {
		c.Close()
	}
	logger.Info("smtpgw stopped")
	return nil
}

// newLogger writes in the configured format at level, which reload may
// change.
func newLogger(c config.Log, level slog.Leveler, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func newTarget(cfg *config.Config, logger *slog.Logger, registry prometheus.Registerer) (upstream.Target, error) {
	if cfg.Outbox != nil {
		return upstream.NewOutbox(cfg.Outbox.Dir)
	}
	opts := upstream.Options{Logger: logger, Metrics: registry}
	graph, err := upstream.NewGraph(cfg.Graph, opts)
	if err != nil || cfg.Exchange.SendVia != config.SendViaSMTP {
		return graph, err
	}
	// Exchange's SMTP gets its tokens from the same credential.
	return upstream.NewExchangeSMTP(cfg.Exchange, graph, cfg.Queue.MailboxConcurrency, opts)
}

func targetName(cfg *config.Config) string {
	switch {
	case cfg.Outbox != nil:
		return "outbox " + cfg.Outbox.Dir
	case cfg.Exchange.SendVia == config.SendViaSMTP:
		return "exchange smtp " + cfg.Exchange.SMTPAddress
	}
	return "graph"
}
