package relay

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"
)

// Bytes pass both ways untouched, what the client sent before the
// hand-over first, and the counts cover them.
func TestPipeCarriesBytes(t *testing.T) {
	client, clientFar := net.Pipe()
	upstream, upstreamFar := net.Pipe()
	done := make(chan Result)
	go func() { done <- Pipe(clientFar, upstreamFar, []byte("b NOOP\r\n"), time.Minute, nil, nil, nil) }()

	got := make([]byte, len("b NOOP\r\n"))
	if _, err := io.ReadFull(upstream, got); err != nil || string(got) != "b NOOP\r\n" {
		t.Fatalf("upstream got %q, %v", got, err)
	}
	big := bytes.Repeat([]byte("0123456789\r\n"), 100_000) // larger than any buffer
	go func() { upstream.Write(big); upstream.Close() }()
	down, err := io.ReadAll(client)
	if err != nil || !bytes.Equal(down, big) {
		t.Fatalf("client got %d bytes, want %d (%v)", len(down), len(big), err)
	}
	r := <-done
	if r.Up != 8 || r.Down != int64(len(big)) || r.End != EndUpstreamClosed {
		t.Errorf("result %+v", r)
	}
}

// A session silent both ways ends after idle; one where only the upstream
// speaks (a long FETCH, IDLE updates) does not.
func TestPipeIdle(t *testing.T) {
	client, clientFar := net.Pipe()
	upstream, upstreamFar := net.Pipe()
	defer client.Close()
	defer upstream.Close()
	done := make(chan Result)
	go func() { done <- Pipe(clientFar, upstreamFar, nil, 200*time.Millisecond, nil, nil, nil) }()
	go io.Copy(io.Discard, client)
	for range 6 {
		time.Sleep(80 * time.Millisecond)
		if _, err := upstream.Write([]byte("* 1 EXISTS\r\n")); err != nil {
			t.Fatal("the session ended while the upstream was speaking")
		}
	}
	select {
	case r := <-done:
		if r.End != EndIdle {
			t.Errorf("ended with %q, want %q", r.End, EndIdle)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a silent session stayed open")
	}
}

func TestPipeStop(t *testing.T) {
	_, clientFar := net.Pipe()
	_, upstreamFar := net.Pipe()
	stop := make(chan struct{})
	done := make(chan Result)
	go func() { done <- Pipe(clientFar, upstreamFar, nil, time.Minute, stop, nil, nil) }()
	close(stop)
	if r := <-done; r.End != EndShutdown {
		t.Errorf("ended with %q, want %q", r.End, EndShutdown)
	}
}

func TestDecodePlain(t *testing.T) {
	tests := []struct {
		in         string
		user, pass string
		ok         bool
	}{
		{"AGFwcABzZWNyZXQ=", "app", "secret", true},     // \0app\0secret
		{"YXBwAGFwcABzZWNyZXQ=", "app", "secret", true}, // app\0app\0secret
		{"b3RoZXIAYXBwAHNlY3JldA==", "", "", false},     // other\0app\0secret
		{"AABzZWNyZXQ=", "", "", false},                 // no user
		{"AGFwcABzZWNyZXQAeA==", "", "", false},         // a fourth part
		{"not base64!", "", "", false},
	}
	for _, tt := range tests {
		user, pass, ok := DecodePlain(tt.in)
		if user != tt.user || pass != tt.pass || ok != tt.ok {
			t.Errorf("DecodePlain(%q) = %q, %q, %v", tt.in, user, pass, ok)
		}
	}
}
