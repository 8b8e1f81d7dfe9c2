package smtpserver

import (
	"bufio"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"
)

// TestResetLoggedAtDebug: a client that resets its connection, as printers
// do, is reported at DEBUG, not at INFO where it would read like an
// incident.
func TestResetLoggedAtDebug(t *testing.T) {
	ts := startServerLogging(t, testConfig(t), slog.LevelDebug)
	conn, err := net.DialTimeout("tcp", ts.addrs[plainListener], 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := bufio.NewReader(conn).ReadString('\n'); err != nil {
		t.Fatalf("no greeting: %v", err)
	}
	// Closing with linger 0 sends a reset while the server waits for a
	// command.
	conn.(*net.TCPConn).SetLinger(0)
	conn.Close()
	waitForServer(t, "the reset is logged", func() bool { return strings.Contains(ts.logs.String(), "connection reset by peer") })
	for _, line := range strings.Split(ts.logs.String(), "\n") {
		if strings.Contains(line, "reset") && !strings.Contains(line, "level=DEBUG") {
			t.Errorf("a reset is logged above DEBUG: %s", line)
		}
	}
}

// TestOtherSMTPReportsStayInfo: go-smtp's reports that are not a client going
// away, such as a TLS version no listener accepts, stay at INFO.
func TestOtherSMTPReportsStayInfo(t *testing.T) {
	ts := startServerLogging(t, testConfig(t), slog.LevelInfo)
	conn, err := net.DialTimeout("tcp", ts.addrs[implicitListener], 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	// Not a TLS ClientHello: the handshake fails on the server's side.
	conn.Write([]byte("EHLO plain-text-on-a-tls-port\r\n"))
	waitForServer(t, "the failed handshake is logged", func() bool {
		return strings.Contains(ts.logs.String(), "level=INFO msg=smtp")
	})
}
