package smtpserver

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestShutdown(t *testing.T) {
	ts := startServer(t, testConfig(t))
	addr := ts.addrs[plainListener]

	busy := dialRaw(t, addr, nil, nil)
	busy.greet()
	busy.cmd("MAIL FROM:<printer@contoso.com>", "250 ")
	busy.cmd("RCPT TO:<a@example.com>", "250 ")
	idle := dialRaw(t, addr, nil, nil)
	idle.greet()

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- ts.Shutdown(ctx)
	}()

	// An idle session is told goodbye at once.
	if got := idle.reply(); !strings.HasPrefix(got, "421 4.3.2 ") {
		t.Fatalf("idle session got %q, want 421 4.3.2", got)
	}
	if !idle.closed() {
		t.Error("idle session left open")
	}
	// A new connection is answered, not refused.
	late := dialRaw(t, addr, nil, nil)
	if got := late.reply(); !strings.HasPrefix(got, "421 4.3.2 ") {
		t.Fatalf("connection during shutdown got %q, want 421 4.3.2", got)
	}
	if !late.closed() {
		t.Error("connection during shutdown left open")
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v before the transaction in progress ended", err)
	default:
	}

	// The transaction in progress finishes, then the connection closes.
	id := queueID(t, busy.data(testMessage, "250 2.0.0 OK: queued as "))
	if !busy.closed() {
		t.Error("session left open after its transaction during shutdown")
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return after the last transaction")
	}
	if ids := ts.queued(t); len(ids) != 1 || ids[0] != id {
		t.Errorf("queue %v, want [%s]", ids, id)
	}
}

func TestShutdownRefusesNewTransaction(t *testing.T) {
	ts := startServer(t, testConfig(t))
	addr := ts.addrs[plainListener]
	busy := dialRaw(t, addr, nil, nil)
	busy.greet()
	busy.cmd("MAIL FROM:<printer@contoso.com>", "250 ")

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- ts.Shutdown(ctx)
	}()
	// Wait until shutdown has begun: new connections get 421. A
	// connection that comes before it is greeted, and closed by it.
	waitForServer(t, "new connections get 421", func() bool {
		late := dialRaw(t, addr, nil, nil)
		defer late.conn.Close()
		return strings.HasPrefix(late.reply(), "421 4.3.2 ")
	})
	// Abandoning the transaction ends it; a new one is refused.
	busy.cmd("RSET", "250 ")
	if !busy.closed() {
		t.Error("session left open after RSET during shutdown")
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

func TestShutdownDeadline(t *testing.T) {
	ts := startServer(t, testConfig(t))
	busy := dialRaw(t, ts.addrs[plainListener], nil, nil)
	busy.greet()
	busy.cmd("MAIL FROM:<printer@contoso.com>", "250 ")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	// The client never finishes its transaction.
	if err := ts.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v, want the context's deadline", err)
	}
	if !busy.closed() {
		t.Error("connection left open after the shutdown deadline")
	}
}

// TestShutdownRightAfterStart stops a server whose serving goroutines may
// not have started yet, as a SIGTERM during start-up does.
func TestShutdownRightAfterStart(t *testing.T) {
	for range 30 {
		ts := startServer(t, testConfig(t))
		done := make(chan error, 1)
		go func() { done <- ts.Shutdown(context.Background()) }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Shutdown right after Start did not return")
		}
	}
}
