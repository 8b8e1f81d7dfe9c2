package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestSCMControl(t *testing.T) {
	tests := []struct {
		req  scmRequest
		want control
		ok   bool
	}{
		{scmStop, controlStop, true},
		{scmShutdown, controlStop, true},
		{scmParamChange, controlReload, true},
		{0, 0, false},
	}
	for _, tt := range tests {
		if got, ok := scmControl(tt.req); got != tt.want || ok != tt.ok {
			t.Errorf("scmControl(%d) = %d, %v; want %d, %v", tt.req, got, ok, tt.want, tt.ok)
		}
	}
}

// statusRecorder stands in for the SCM: it keeps every status reported.
type statusRecorder struct {
	mu       sync.Mutex
	statuses []scmStatus
}

func (r *statusRecorder) report(s scmStatus) {
	r.mu.Lock()
	r.statuses = append(r.statuses, s)
	r.mu.Unlock()
}

func (r *statusRecorder) last() scmStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.statuses[len(r.statuses)-1]
}

func (r *statusRecorder) waitFor(t *testing.T, state scmState) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); r.last().State != state; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the SCM was not told %d; last status %+v", state, r.last())
		}
	}
}

// TestServiceDrivesGateway runs the real gateway as the Windows service
// does: SCM requests become controls, and the SCM hears start pending,
// running (accepting stop, shutdown and param change) and stop pending
// with the shutdown_timeout as its wait hint.
func TestServiceDrivesGateway(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "smtpgw.toml")
	cfg := `[server]
shutdown_timeout = "7s"
[[listener]]
address = "127.0.0.1:0"
[outbox]
dir = "` + filepath.Join(dir, "outbox") + `"
[queue]
dir = "` + filepath.Join(dir, "spool") + `"
[[network]]
cidrs = ["127.0.0.1/32"]
mailbox = "scanner@example.com"
`
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	scm := &statusRecorder{}
	const stopHint = 17 * time.Second
	life := newSCMLifecycle(scm.report, stopHint)
	controls := make(chan control)
	done := make(chan error, 1)
	var logs bytes.Buffer
	go func() { done <- runGateway(path, controls, life, &logs) }()

	scm.waitFor(t, scmRunning)
	for _, req := range []scmRequest{scmParamChange, scmStop} {
		c, _ := scmControl(req)
		select {
		case controls <- c:
		case err := <-done:
			t.Fatalf("gateway ended before request %d: %v", req, err)
		}
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("runGateway: %v\n%s", err, logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("gateway did not stop")
	}
	want := []scmStatus{
		{State: scmStartPending, WaitHint: startWaitHint},
		{State: scmRunning, Accepts: true},
		{State: scmStopPending, WaitHint: stopHint},
	}
	if len(scm.statuses) != len(want) {
		t.Fatalf("SCM heard %+v, want %+v", scm.statuses, want)
	}
	for i := range want {
		if scm.statuses[i] != want[i] {
			t.Errorf("status %d = %+v, want %+v", i, scm.statuses[i], want[i])
		}
	}
}

// TestLogLineLevel files lines from both log formats at their level.
func TestLogLineLevel(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		for _, level := range []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError} {
			var line bytes.Buffer
			var h slog.Handler = slog.NewTextHandler(&line, &slog.HandlerOptions{Level: slog.LevelDebug})
			if format == "json" {
				h = slog.NewJSONHandler(&line, &slog.HandlerOptions{Level: slog.LevelDebug})
			}
			// A message that names another level must not mislead.
			slog.New(h).Log(t.Context(), level, "level=ERROR in the text", "detail", `"level":"WARN"`)
			want := max(level, slog.LevelInfo)
			if got := logLineLevel(line.Bytes()); got != want {
				t.Errorf("%s %s line %q filed as %s", format, level, strings.TrimSpace(line.String()), got)
			}
		}
	}
}
