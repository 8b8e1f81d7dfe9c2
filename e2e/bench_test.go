package e2e

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/smtpgw/smtpgw/internal/graphtest"
)

// Load benchmarks against the built binary on loopback. They run once per
// invocation (make bench uses -benchtime 1x) and report their own figures:
// messages per second and the gateway's memory, read from /proc.

const (
	loadSessions = 20        // concurrent SMTP sessions
	loadMessages = 4000      // messages in all
	loadSize     = 10 * 1024 // bytes per message
)

// BenchmarkLoad submits loadMessages 10 KB messages over loadSessions
// sessions into the durable spool while the gateway delivers them to a fake
// Graph that answers at once. intake-msgs/s counts until the last 250;
// e2e-msgs/s until the fake Graph has every message.
func BenchmarkLoad(b *testing.B) {
	fake := graphtest.New(b, graphtest.Counting())
	g := startForLoad(b, fake, true)
	body := tenKilobyteMessage()

	cpuBefore := procCPU(b, g)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, loadSessions)
	for range loadSessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- sendMany(g.Addr[0], loadMessages/loadSessions, body)
		}()
	}
	wg.Wait()
	intake := time.Since(start)
	close(errs)
	for err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	fake.WaitSent(b, loadMessages, 5*time.Minute)
	total := time.Since(start)
	cpu := procCPU(b, g) - cpuBefore

	b.ReportMetric(loadMessages/intake.Seconds(), "intake-msgs/s")
	b.ReportMetric(loadMessages/total.Seconds(), "e2e-msgs/s")
	b.ReportMetric(float64(procStatus(b, g, "VmHWM"))/(1<<20), "peak-RSS-MB")
	b.ReportMetric(float64(cpu.Microseconds())/loadMessages, "gateway-CPU-us/msg")
}

// largeMessageMemoryBound is how far one message with a 100 MB attachment
// may raise the gateway's peak memory over idle: attachments stream from
// the spool a chunk at a time (docs/operations.md says about 10 MB).
const largeMessageMemoryBound = 64 << 20

// BenchmarkLargeMessage sends one message with a 100 MB attachment and
// reports how far the gateway's peak memory rose over its idle footprint,
// which must stay under largeMessageMemoryBound.
func BenchmarkLargeMessage(b *testing.B) {
	const attachment = 100 << 20
	fake := graphtest.New(b)
	dir := b.TempDir()
	config := strings.Replace(gatewayConfig(b, dir, fake.GraphTOML(b)), `max_message_size = "60MiB"`, `max_message_size = "150MiB"`, 1)
	g := startGateway(b, dir, config, "SSL_CERT_FILE="+fake.WriteCAFile(dir))
	time.Sleep(time.Second) // let start-up garbage settle before measuring idle
	idle := procStatus(b, g, "VmRSS")

	start := time.Now()
	c, err := smtp.DialStartTLS(g.Addr[1], &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	w, err := openData(c, "scanner@contoso.com", "alice@contoso.com")
	if err != nil {
		b.Fatal(err)
	}
	if err := writeLargeMessage(w, attachment); err != nil {
		b.Fatal(err)
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	intake := time.Since(start)
	sent := fake.WaitSent(b, 1, 10*time.Minute)
	if n := len(sent[0].Message.Attachments); n != 1 || len(sent[0].Message.Attachments[0].ContentBytes) != attachment {
		b.Fatalf("the fake Graph did not receive the %d-byte attachment", attachment)
	}
	peak := procStatus(b, g, "VmHWM")
	b.ReportMetric(intake.Seconds(), "intake-s")
	b.ReportMetric(time.Since(start).Seconds(), "e2e-s")
	b.ReportMetric(float64(idle)/(1<<20), "idle-RSS-MB")
	b.ReportMetric(float64(peak-idle)/(1<<20), "peak-over-idle-MB")
	if peak-idle > largeMessageMemoryBound {
		b.Errorf("peak memory rose %d MiB over idle, over the %d MiB bound", (peak-idle)>>20, largeMessageMemoryBound>>20)
	}
}

// startForLoad starts a gateway sending to fake as startWithGraph does,
// but on the shipped [limits]: a burst from a [[network]] client must pass
// them. Without traced, it writes no message trace ([log] trace = false).
func startForLoad(b *testing.B, fake *graphtest.Server, traced bool) *gateway {
	dir := b.TempDir()
	config := gatewayConfig(b, dir, fake.GraphTOML(b))
	if !traced {
		config += "\n[log]\ntrace = false\n"
	}
	return startGateway(b, dir, config, "SSL_CERT_FILE="+fake.WriteCAFile(dir))
}

// sendMany runs n transactions on one connection, as a busy client would.
func sendMany(addr string, n int, body string) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	for i := range n {
		s := submission{From: "scanner@contoso.com", To: []string{"alice@contoso.com"}, Body: body}
		if _, err := sendOn(c, s); err != nil {
			return fmt.Errorf("message %d: %w", i, err)
		}
	}
	return c.Quit()
}

func tenKilobyteMessage() string {
	var b strings.Builder
	b.WriteString("From: scanner@contoso.com\nTo: alice@contoso.com\nSubject: load\n\n")
	line := strings.Repeat("0123456789", 7) + "\n"
	for b.Len() < loadSize {
		b.WriteString(line)
	}
	return b.String()
}

// writeLargeMessage streams a message with a size-byte PDF-typed
// attachment of deterministic content, never holding it in memory.
func writeLargeMessage(w io.Writer, size int) error {
	bw := bufio.NewWriterSize(w, 1<<16)
	fmt.Fprint(bw, "From: scanner@contoso.com\r\nTo: alice@contoso.com\r\nSubject: large scan\r\nMIME-Version: 1.0\r\n"+
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nSee the scan.\r\n"+
		"--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=big.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	chunk := make([]byte, 57*1024) // 57 bytes make one 76-character base64 line
	line := make([]byte, base64.StdEncoding.EncodedLen(57))
	for written := 0; written < size; {
		n := min(len(chunk), size-written)
		fillContent(chunk[:n], written)
		for off := 0; off < n; off += 57 {
			part := chunk[off:min(off+57, n)]
			base64.StdEncoding.Encode(line, part)
			bw.Write(line[:base64.StdEncoding.EncodedLen(len(part))])
			bw.WriteString("\r\n")
		}
		written += n
	}
	fmt.Fprint(bw, "--b--\r\n")
	return bw.Flush()
}

// fillContent fills b with the attachment bytes found at offset.
func fillContent(b []byte, offset int) {
	for i := range b {
		b[i] = byte((offset + i) * 7)
	}
}

// largeContent is the whole attachment writeLargeMessage sends, for checks.
func largeContent(size int) []byte {
	b := make([]byte, size)
	fillContent(b, 0)
	return b
}

// procCPU reads the CPU time the gateway process has used so far, user
// and system, from /proc/PID/stat (in clock ticks of 10 ms, Linux's
// USER_HZ on every platform it runs on).
func procCPU(b *testing.B, g *gateway) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", g.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	// The command name in parentheses may hold spaces: fields count from
	// after its closing parenthesis, where field 3 (state) comes first.
	fields := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	if len(fields) < 13 {
		b.Fatalf("short /proc stat: %q", data)
	}
	var ticks int64
	for _, f := range fields[11:13] { // utime and stime, fields 14 and 15
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			b.Fatal(err)
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

// procStatus reads a memory figure (VmRSS, VmHWM) of the gateway in bytes.
func procStatus(b *testing.B, g *gateway, field string) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", g.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb << 10
		}
	}
	b.Fatalf("no %s in /proc status", field)
	return 0
}
