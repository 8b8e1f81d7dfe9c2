// Package e2e drives the built smtpgw binary with real SMTP clients on
// loopback and checks what reaches the fake Entra ID and Graph.
package e2e

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/smtpgw/smtpgw/internal/testlog"
)

// binary is the smtpgw built once for the whole package by TestMain.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "smtpgw-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "smtpgw")
	build := exec.Command("go", "build", "-o", binary, "../cmd/smtpgw")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build smtpgw:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// gateway is one running smtpgw process.
type gateway struct {
	t    testing.TB
	cmd  *exec.Cmd
	dir  string   // working directory: config, spool, outbox
	Addr []string // SMTP listen addresses, in config order
	logs *testlog.Buffer
	done chan struct{}
}

// startupTimeout bounds how long a gateway may take to log its listeners.
const startupTimeout = 20 * time.Second

// listenersRE finds the list of SMTP addresses in the start-up line.
var listenersRE = regexp.MustCompile(`listeners="?\[([^\]]*)\]`)

// startGateway writes config to dir/smtpgw.toml (when config is not empty)
// and starts `smtpgw serve` in dir, returning once it listens.
func startGateway(t testing.TB, dir, config string, env ...string) *gateway {
	t.Helper()
	args := []string{"serve"}
	if config != "" {
		path := filepath.Join(dir, "smtpgw.toml")
		if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "-config", path)
	}
	g := &gateway{t: t, dir: dir, logs: &testlog.Buffer{}, done: make(chan struct{})}
	g.cmd = exec.Command(binary, args...)
	g.cmd.Dir = dir
	g.cmd.Env = append(os.Environ(), env...)
	started := &startWatch{addrs: make(chan []string, 1)}
	g.cmd.Stdout = g.logs
	g.cmd.Stderr = io.MultiWriter(g.logs, started)
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		g.cmd.Wait()
		close(g.done)
	}()
	t.Cleanup(func() { g.Stop() })
	select {
	case g.Addr = <-started.addrs:
	case <-g.done:
		t.Fatalf("smtpgw exited during start-up:\n%s", g.logs)
	case <-time.After(startupTimeout):
		t.Fatalf("smtpgw did not start within %s:\n%s", startupTimeout, g.logs)
	}
	return g
}

// startWatch reads the gateway's log until its start-up line and sends
// the SMTP addresses it lists; after that line it ignores what follows, so
// that a load test's thousands of log lines cost the test process no
// more than keeping them. exec writes the log from one goroutine.
type startWatch struct {
	addrs   chan []string
	partial []byte // the start of a line not yet ended
	seen    bool
}

func (w *startWatch) Write(p []byte) (int, error) {
	if w.seen {
		return len(p), nil
	}
	w.partial = append(w.partial, p...)
	for {
		line, rest, ok := bytes.Cut(w.partial, []byte("\n"))
		if !ok {
			return len(p), nil
		}
		w.partial = rest
		if bytes.Contains(line, []byte("smtpgw started")) {
			var addrs []string
			if m := listenersRE.FindSubmatch(line); m != nil {
				addrs = strings.Fields(string(m[1]))
			}
			w.seen, w.partial = true, nil
			w.addrs <- addrs
			return len(p), nil
		}
	}
}

// withMetrics is the configuration that enables /metrics, /status and the
// status page on a free port.
const withMetrics = "\n[metrics]\naddress = \"127.0.0.1:0\"\n"

// MetricsURL waits for the metrics listener, which a [metrics] address
// enables, and returns its base URL.
func (g *gateway) MetricsURL() string {
	g.t.Helper()
	deadline := time.Now().Add(startupTimeout)
	for {
		if m := metricsRE.FindStringSubmatch(g.logs.String()); m != nil {
			return "http://" + m[1]
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("no metrics listener within %s:\n%s", startupTimeout, g.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop sends SIGTERM and waits for a clean exit.
func (g *gateway) Stop() {
	g.signal(syscall.SIGTERM)
}

// Kill stops the process abruptly, as a crash or power cut would.
func (g *gateway) Kill() {
	g.signal(syscall.SIGKILL)
}

func (g *gateway) signal(sig syscall.Signal) {
	select {
	case <-g.done:
		return
	default:
	}
	g.cmd.Process.Signal(sig)
	select {
	case <-g.done:
	case <-time.After(startupTimeout):
		g.cmd.Process.Kill()
		<-g.done
		g.t.Errorf("smtpgw did not exit after %v:\n%s", sig, g.logs)
	}
}

// ExitCode waits for the process to end and returns its exit code.
func (g *gateway) ExitCode() int {
	<-g.done
	return g.cmd.ProcessState.ExitCode()
}
