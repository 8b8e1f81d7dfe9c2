// Package relay carries an IMAP or POP3 session between a client and
// Exchange once the gateway has logged in upstream: bytes both ways,
// untouched, through bounded buffers, until either side ends or the
// session falls idle. It also holds what the two front ends share about a
// session: its outcome, its log line and its metrics.
package relay

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// bufferSize is each direction's copy buffer. An idle session holds both
// while it waits (1,000 idle IMAP sessions: 63 MB with 8 KiB, 80 MB with
// 16 KiB), and a 30 MB FETCH is no slower than with a whole TLS record.
const bufferSize = 8 << 10

var buffers = sync.Pool{New: func() any { b := make([]byte, bufferSize); return &b }}

// Ends of a relayed session, as logged.
const (
	EndClientClosed   = "client closed"
	EndUpstreamClosed = "upstream closed"
	EndIdle           = "idle timeout"
	EndShutdown       = "shutdown"
)

// Result is what a relayed session carried.
type Result struct {
	Up   int64  // bytes from the client to the upstream, pending included
	Down int64  // bytes from the upstream to the client
	End  string // one of the End constants
}

// Pipe writes pending (what the client sent after its login, already
// read by the front end) to upstream, then copies both ways until one side
// closes, neither side has sent anything for idle, or stop is closed. It
// closes both connections before it returns. Counters, when not nil, add
// the bytes as they pass, so a long session shows in the metrics while it
// runs.
func Pipe(client, upstream net.Conn, pending []byte, idle time.Duration, stop <-chan struct{}, up, down Counter) Result {
	var r Result
	var last atomic.Int64 // unix nanoseconds of the last byte either way
	last.Store(time.Now().UnixNano())
	var once sync.Once
	end := func(why string) {
		once.Do(func() {
			r.End = why
			client.Close()
			upstream.Close()
		})
	}

	// One timer per session, not a deadline per read: a 30 MB FETCH
	// keeps the session busy while the client, waiting, sends nothing.
	var watchdog *time.Timer
	var mu sync.Mutex // orders the first assignment of watchdog before its use
	mu.Lock()
	watchdog = time.AfterFunc(idle, func() {
		mu.Lock()
		defer mu.Unlock()
		if left := time.Until(time.Unix(0, last.Load()).Add(idle)); left > 0 {
			watchdog.Reset(left)
			return
		}
		end(EndIdle)
	})
	mu.Unlock()
	defer watchdog.Stop()

	stopped := make(chan struct{})
	defer close(stopped)
	go func() {
		select {
		case <-stop:
			end(EndShutdown)
		case <-stopped:
		}
	}()

	if len(pending) > 0 {
		n, err := upstream.Write(pending)
		r.Up += int64(n)
		add(up, n)
		if err != nil {
			end(EndUpstreamClosed)
			return r
		}
	}
	var wg sync.WaitGroup
	var upBytes int64
	wg.Go(func() {
		upBytes = copyCounting(upstream, client, &last, up)
		end(EndClientClosed)
	})
	down64 := copyCounting(client, upstream, &last, down)
	end(EndUpstreamClosed)
	wg.Wait()
	r.Up += upBytes
	r.Down = down64
	return r
}

// Counter is the part of a Prometheus counter Pipe uses.
type Counter interface{ Add(float64) }

func add(c Counter, n int) {
	if c != nil && n > 0 {
		c.Add(float64(n))
	}
}

// copyCounting copies src to dst until either fails, noting the time of
// each read in last.
func copyCounting(dst io.Writer, src io.Reader, last *atomic.Int64, c Counter) int64 {
	bp := buffers.Get().(*[]byte)
	defer buffers.Put(bp)
	buf := *bp
	var total int64
	for {
		n, err := src.Read(buf)
		if n > 0 {
			last.Store(time.Now().UnixNano())
			w, werr := dst.Write(buf[:n])
			total += int64(w)
			add(c, w)
			if werr != nil {
				return total
			}
		}
		if err != nil { // EOF or a closed connection: the session is over either way
			return total
		}
	}
}
