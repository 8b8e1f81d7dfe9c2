package smtpserver

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"runtime"
	"strings"
	"testing"
)

// idleConnections is how many connections BenchmarkIdleConnections holds.
const idleConnections = 1000

// BenchmarkIdleConnections measures what the gateway holds for each idle
// connection after EHLO (goroutines, buffers, TLS state), the figure that
// max_connections is sized from. The client side of a plain connection is
// a bare socket, which holds next to nothing on the Go heap; over TLS the
// client's TLS state is counted too, so that figure is an upper bound.
// Run it once:
//
//	go test -run '^$' -bench IdleConnections -benchtime 1x ./internal/smtpserver
func BenchmarkIdleConnections(b *testing.B) {
	for _, listener := range []int{plainListener, implicitListener} {
		b.Run(testConfig(b).Listeners[listener].TLS, func(b *testing.B) {
			cfg := parseConfig(b, testLimits+"connections_per_address = 2000\n")
			cfg.Server.MaxConnections = 2 * idleConnections
			ts := startServer(b, cfg)
			var tlsConfig *tls.Config
			if listener == implicitListener {
				tlsConfig = clientTLS()
			}
			before := inUse()
			var held []net.Conn
			defer func() {
				for _, c := range held {
					c.Close()
				}
			}()
			for i := range idleConnections {
				// Distinct loopback sources: the ports of one would run low.
				source := fmt.Sprintf("127.0.%d.%d", 10+i/250, 1+i%250)
				c, err := dialIdle(ts.addrs[listener], source, tlsConfig)
				if err != nil {
					b.Fatalf("connection %d: %v", i, err)
				}
				held = append(held, c)
			}
			after := inUse()
			b.ReportMetric(float64(after-before)/idleConnections, "B/conn")
			b.ReportMetric(float64(after-before)/(1<<20), "MiB/1000conns")
		})
	}
}

// dialIdle opens a connection from source, reads the greeting, says EHLO,
// reads its reply, and leaves the connection idle.
func dialIdle(addr, source string, tlsConfig *tls.Config) (net.Conn, error) {
	c, err := dialFrom(&net.TCPAddr{IP: net.ParseIP(source)}, addr, tlsConfig)
	if err != nil {
		return nil, err
	}
	r := bufio.NewReader(c)
	if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "220 ") {
		c.Close()
		return nil, fmt.Errorf("greeting %q: %v", line, err)
	}
	fmt.Fprintf(c, "EHLO client.test\r\n")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			c.Close()
			return nil, err
		}
		if strings.HasPrefix(line, "250 ") {
			return c, nil
		}
	}
}

// inUse is the memory the Go runtime holds for heap objects and goroutine
// stacks, after a collection.
func inUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse + m.StackInuse
}
