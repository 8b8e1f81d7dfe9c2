package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"

	"github.com/smtpgw/smtpgw"
	"github.com/smtpgw/smtpgw/internal/config"
	"github.com/smtpgw/smtpgw/internal/sdnotify"
)

// configEnv names the configuration file when -config is absent, for
// containers and service managers.
const configEnv = "SMTPGW_CONFIG"

// builtInExample is the name the embedded example configuration goes by in
// logs and errors.
const builtInExample = "built-in config.example.toml"

// serve runs the gateway until the platform asks it to stop: SIGINT or
// SIGTERM stop it, SIGHUP reloads the configuration.
func serve(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	path := fs.String("config", "", "configuration file (default: $"+configEnv+", else the built-in example)")
	if err := noArguments(fs, args, stdout); err != nil {
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
				select {
				case controls <- controlFor(sig):
				case <-done:
					return
				}
			case <-done:
				return
			}
		}
	}()
	return runGateway(*path, controls, newLifecycle(), stderr)
}

// newLifecycle is the one place that picks who hears the gateway's state
// changes: systemd, when it started the gateway as a Type=notify unit.
func newLifecycle() lifecycle {
	if n := sdnotify.FromEnv(slog.Default()); n != nil {
		return n
	}
	return noLifecycle{}
}

// configSource is the configuration file to use: path (from -config), else
// the file SMTPGW_CONFIG names, else builtInExample.
func configSource(path string) string {
	if path != "" {
		return path
	}
	if env := os.Getenv(configEnv); env != "" {
		return env
	}
	return builtInExample
}

// loadConfig reads the configuration configSource(path) names.
func loadConfig(path string) (*config.Config, error) {
	data, name, err := readConfig(path)
	if err != nil {
		return nil, err
	}
	return config.Parse(data, name)
}

// loadQueueConfig reads only the [queue] section, for the queue commands.
func loadQueueConfig(path string) (config.Queue, error) {
	data, name, err := readConfig(path)
	if err != nil {
		return config.Queue{}, err
	}
	return config.ParseQueue(data, name)
}

// readConfig returns the content and name of the configuration
// configSource(path) names; the built-in example makes `smtpgw serve` work
// on a fresh checkout.
func readConfig(path string) ([]byte, string, error) {
	source := configSource(path)
	if source == builtInExample {
		return smtpgw.ExampleConfig, builtInExample, nil
	}
	data, err := os.ReadFile(source)
	if err != nil {
		return nil, "", fmt.Errorf("read configuration: %w", err)
	}
	return data, source, nil
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
