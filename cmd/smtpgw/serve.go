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
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/smtpgw/smtpgw"
	"github.com/smtpgw/smtpgw/internal/config"
)

// serve runs the gateway until the platform asks it to stop: SIGINT or
// SIGTERM stop it, SIGHUP reloads the configuration.
func serve(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	path := fs.String("config", "", "configuration file (default: the built-in example)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, controlSignals...)
	defer signal.Stop(signals)
	controls := make(chan control, 1)
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case sig := <-signals:
				controls <- controlFor(sig)
			case <-done:
				return
			}
		}
	}()
	return runGateway(*path, controls, newLifecycle(), stderr)
}

// newLifecycle is the one place that picks who hears the gateway's state
// changes.
func newLifecycle() lifecycle { return noLifecycle{} }

// loadConfig reads the file at path, or the built-in example when path is
// empty, so that `smtpgw serve` works on a fresh checkout.
func loadConfig(path string) (*config.Config, error) {
	if path == "" {
		return config.Parse(smtpgw.ExampleConfig, "built-in config.example.toml")
	}
	return config.Load(path)
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
