package e2e

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSystemdNotify runs the gateway as systemd runs a Type=notify unit:
// it says READY=1 once it listens, RELOADING=1 and READY=1 around a SIGHUP,
// and STOPPING=1 on SIGTERM.
func TestSystemdNotify(t *testing.T) {
	sockDir, err := os.MkdirTemp("", "sdn") // short: socket paths end at 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	socket := filepath.Join(sockDir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: socket, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	next := func() string {
		t.Helper()
		buf := make([]byte, 4096)
		conn.SetReadDeadline(time.Now().Add(deliveryTimeout))
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("no notification: %v", err)
		}
		return string(buf[:n])
	}

	dir := t.TempDir()
	g := startGateway(t, dir, gatewayConfig(t, dir, "[outbox]\ndir = \"outbox\"\n"), "NOTIFY_SOCKET="+socket)
	if got := next(); got != "READY=1" {
		t.Fatalf("after start: %q, want READY=1", got)
	}
	g.cmd.Process.Signal(syscall.SIGHUP)
	if got := next(); !strings.HasPrefix(got, "RELOADING=1\nMONOTONIC_USEC=") {
		t.Errorf("on SIGHUP: %q, want RELOADING=1 with MONOTONIC_USEC", got)
	}
	if got := next(); got != "READY=1" {
		t.Errorf("after the reload: %q, want READY=1", got)
	}
	g.Stop()
	if got := next(); got != "STOPPING=1" {
		t.Errorf("on SIGTERM: %q, want STOPPING=1", got)
	}
}
