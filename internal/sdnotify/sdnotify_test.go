//go:build linux

package sdnotify

import (
	"bytes"
	"crypto/rand"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// listen opens the datagram socket systemd would, at name (a path, or '@'
// and an abstract name), and returns a function that reads one datagram.
func listen(t *testing.T, name string) func() string {
	t.Helper()
	addr := &net.UnixAddr{Name: strings.Replace(name, "@", "\x00", 1), Net: "unixgram"}
	conn, err := net.ListenUnixgram("unixgram", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return func() string {
		t.Helper()
		buf := make([]byte, 4096)
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("no datagram: %v", err)
		}
		return string(buf[:n])
	}
}

// shortDir is a temporary directory whose socket paths stay within the
// 108 bytes a unix socket address allows.
func shortDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "sdn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func TestStatesReachTheSocket(t *testing.T) {
	socket := filepath.Join(shortDir(t), "notify")
	next := listen(t, socket)
	t.Setenv(SocketEnv, socket)
	n := FromEnv(slog.New(slog.DiscardHandler))
	if n == nil {
		t.Fatal("FromEnv with NOTIFY_SOCKET set returned nil")
	}

	n.Ready()
	if got := next(); got != "READY=1" {
		t.Errorf("Ready sent %q", got)
	}
	n.Reloading()
	reloading := next()
	m := regexp.MustCompile(`^RELOADING=1\nMONOTONIC_USEC=(\d+)$`).FindStringSubmatch(reloading)
	if m == nil {
		t.Fatalf("Reloading sent %q", reloading)
	}
	usec, _ := strconv.ParseInt(m[1], 10, 64)
	now, err := monotonicUsec()
	if err != nil {
		t.Fatal(err)
	}
	if usec <= 0 || usec > now {
		t.Errorf("MONOTONIC_USEC=%d, clock now %d", usec, now)
	}
	n.Reloaded()
	if got := next(); got != "READY=1" {
		t.Errorf("Reloaded sent %q", got)
	}
	n.Stopping()
	if got := next(); got != "STOPPING=1" {
		t.Errorf("Stopping sent %q", got)
	}
}

func TestAbstractNamespace(t *testing.T) {
	name := "@smtpgw-sdnotify-test-" + rand.Text()
	next := listen(t, name)
	New(name, slog.New(slog.DiscardHandler)).Ready()
	if got := next(); got != "READY=1" {
		t.Errorf("Ready to %s sent %q", name, got)
	}
}

func TestWithoutSystemd(t *testing.T) {
	t.Setenv(SocketEnv, "")
	if n := FromEnv(slog.New(slog.DiscardHandler)); n != nil {
		t.Errorf("FromEnv without NOTIFY_SOCKET = %+v, want nil", n)
	}
}

func TestUnreachableSocketIsLoggedNotFatal(t *testing.T) {
	var logs bytes.Buffer
	socket := filepath.Join(shortDir(t), "gone")
	n := New(socket, slog.New(slog.NewTextHandler(&logs, nil)))
	n.Ready()
	if !strings.Contains(logs.String(), "READY=1") || !strings.Contains(logs.String(), socket) {
		t.Errorf("log = %q, want the state and the socket", logs.String())
	}
}
