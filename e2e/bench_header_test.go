package e2e

import (
	"bufio"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/smtpgw/smtpgw/internal/convert"
	"github.com/smtpgw/smtpgw/internal/graphtest"
)

// headerMessageSize is the size of each message of BenchmarkHeaderMemory:
// Exchange's default limit.
const headerMessageSize = 35_000_000

// headerShapes are the message headers of BenchmarkHeaderMemory, each
// written as size bytes of header lines. Those that pass the header limits
// are refused while they stream in; the others, just within the limits,
// are followed by an attachment up to headerMessageSize, and delivered.
var headerShapes = []struct {
	name      string
	refused   bool
	size      int
	writeLine func(w *bufio.Writer, i int) int // one line, returns its length
}{
	{"short-lines", true, headerMessageSize, shortField},
	{"folded-field", true, headerMessageSize, foldedAddress},
	{"long-line", true, headerMessageSize, longLine},
	{"no-header-end", true, headerMessageSize, shortField},
	{"short-lines-within", false, 0, shortField},
	{"folded-field-within", false, convert.MaxHeaderBytes - 4096, foldedAddress},
	{"long-line-within", false, convert.MaxHeaderBytes - 4096, longLine},
}

func shortField(w *bufio.Writer, i int) int {
	n, _ := fmt.Fprintf(w, "X-Field-%d: v\r\n", i)
	return n
}

func foldedAddress(w *bufio.Writer, i int) int {
	if i == 0 {
		n, _ := w.WriteString("To: a@contoso.com\r\n")
		return n
	}
	n, _ := fmt.Fprintf(w, " ,a%d@contoso.com\r\n", i)
	return n
}

// longLine writes one Subject line of the shape's whole size, in pieces.
func longLine(w *bufio.Writer, i int) int {
	if i == 0 {
		n, _ := w.WriteString("Subject: ")
		return n
	}
	n, _ := w.WriteString(strings.Repeat("x", 4096))
	return n
}

// headerPeakBound is the gateway's peak memory that BenchmarkHeaderMemory
// fails above, whatever the header shape: docs/limits.md promises it.
const headerPeakBound = 256 << 20

// BenchmarkHeaderMemory sends four 35 MB messages at once for each header
// shape and reports the gateway's peak memory (VmHWM), which must stay
// under headerPeakBound whatever the shape.
func BenchmarkHeaderMemory(b *testing.B) {
	for _, shape := range headerShapes {
		b.Run(shape.name, func(b *testing.B) {
			fake := graphtest.New(b)
			dir := b.TempDir()
			g := startGateway(b, dir, gatewayConfig(b, dir, fake.GraphTOML(b)), "SSL_CERT_FILE="+fake.WriteCAFile(dir))
			time.Sleep(time.Second) // let start-up garbage settle before measuring idle
			idle := procStatus(b, g, "VmRSS")
			const messages = 4
			var wg sync.WaitGroup
			errs := make(chan error, messages)
			for range messages {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs <- sendShaped(g.Addr[0], shape.size, shape.writeLine, shape.name == "no-header-end", shape.name == "long-line" || shape.name == "long-line-within")
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				switch {
				case shape.refused && (err == nil || !strings.Contains(err.Error(), "552")):
					b.Fatalf("got %v, want 552 for a header too large", err)
				case !shape.refused && err != nil:
					b.Fatal(err)
				}
			}
			if !shape.refused {
				fake.WaitSent(b, messages, 10*time.Minute)
			}
			peak := procStatus(b, g, "VmHWM")
			b.ReportMetric(float64(idle)/(1<<20), "idle-RSS-MB")
			b.ReportMetric(float64(peak)/(1<<20), "peak-RSS-MB")
			if peak > headerPeakBound {
				b.Errorf("peak memory %d MiB, over the %d MiB bound", peak>>20, headerPeakBound>>20)
			}
		})
	}
}

// sendShaped sends one message of headerMessageSize bytes whose header
// starts with headerSize bytes of writeLine's lines (the most fields a
// header may have when headerSize is 0), as the allowlisted network.
// Without a header end, the header lines fill the message.
func sendShaped(addr string, headerSize int, writeLine func(*bufio.Writer, int) int, noEnd, oneLine bool) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Mail("scanner@contoso.com", nil); err != nil {
		return err
	}
	if err := c.Rcpt("alice@contoso.com", nil); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 1<<16)
	written := 0
	for i := 0; ; i++ {
		if headerSize == 0 && i == convert.MaxHeaderFields-10 || headerSize > 0 && written >= headerSize {
			break
		}
		written += writeLine(bw, i)
	}
	if oneLine {
		bw.WriteString("\r\n")
		written += 2
	}
	if noEnd {
		bw.Flush()
		return w.Close()
	}
	// The rest of writeLargeMessage's header follows, then its attachment.
	if err := writeLargeMessage(bw, max(headerMessageSize-written, 1000)*3/4); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return w.Close()
}
