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

// headerShape is one message header of BenchmarkHeaderMemory, written as
// size bytes of writeLine's lines (the most fields a header may have when
// size is 0).
type headerShape struct {
	name      string
	refused   bool // past the header limits: refused while it streams in
	size      int
	writeLine func(w *bufio.Writer, i int) int // one line, returns its length
	oneLine   bool                             // writeLine writes pieces of one line, ended after the last
	noEnd     bool                             // no header end: the header lines fill the message
}

// headerShapes are the headers of BenchmarkHeaderMemory. Those past the
// header limits are refused while they stream in; the others, just within
// the limits, are followed by an attachment up to headerMessageSize, and
// delivered.
var headerShapes = []headerShape{
	{name: "short-lines", refused: true, size: headerMessageSize, writeLine: shortField},
	{name: "folded-field", refused: true, size: headerMessageSize, writeLine: foldedAddress},
	{name: "long-line", refused: true, size: headerMessageSize, writeLine: longLine, oneLine: true},
	{name: "no-header-end", refused: true, size: headerMessageSize, writeLine: shortField, noEnd: true},
	{name: "short-lines-within", size: 0, writeLine: shortField},
	{name: "folded-field-within", size: convert.MaxHeaderBytes - 4096, writeLine: foldedAddress},
	{name: "long-line-within", size: convert.MaxHeaderBytes - 4096, writeLine: longLine, oneLine: true},
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
					errs <- sendShaped(g.Addr[0], shape)
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
// starts with shape, as the allowlisted network.
func sendShaped(addr string, shape headerShape) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	w, err := openData(c, "scanner@contoso.com", "alice@contoso.com")
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 1<<16)
	written := 0
	for i := 0; ; i++ {
		if shape.size == 0 && i == convert.MaxHeaderFields-10 || shape.size > 0 && written >= shape.size {
			break
		}
		written += shape.writeLine(bw, i)
	}
	if shape.oneLine {
		bw.WriteString("\r\n")
		written += 2
	}
	if shape.noEnd {
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
