package convert

import (
	"io"
	"sync"
	"testing"

	"github.com/smtpgw/smtpgw/internal/envelope"
)

// guardedMessage is a message in memory that fails the test reading it
// when a read falls outside its bytes, when it is read from its start again
// after the index pass (a part found by re-parsing the message), or when
// converting it reads more than twice its size (once to index it, once to
// describe each part).
type guardedMessage struct {
	t    testing.TB
	data []byte

	mu         sync.Mutex
	fromStart  int   // reads at offset 0
	bytesRead  int64 // since the counter was last reset
	outOfRange bool
}

func (g *guardedMessage) ReadAt(p []byte, off int64) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if off < 0 || off+int64(len(p)) > int64(len(g.data)) {
		if !g.outOfRange {
			g.t.Errorf("read of %d bytes at %d, outside the %d-byte message", len(p), off, len(g.data))
		}
		g.outOfRange = true
		return 0, io.ErrUnexpectedEOF
	}
	if off == 0 {
		g.fromStart++
		if g.fromStart == 2 {
			g.t.Errorf("the message was read from its start again: a part was found by re-parsing")
		}
	}
	g.bytesRead += int64(len(p))
	return copy(p, g.data[off:]), nil
}

// takeBytesRead returns the bytes read since the last call.
func (g *guardedMessage) takeBytesRead() int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := g.bytesRead
	g.bytesRead = 0
	return n
}

// convertGuarded converts raw through a guardedMessage, and checks that
// opening every attachment once reads each byte of the message at most
// once.
func convertGuarded(t testing.TB, raw []byte, env *envelope.Envelope, opts Options) (*Result, error) {
	t.Helper()
	g := &guardedMessage{t: t, data: raw}
	size := int64(len(raw))
	res, err := Convert(g, size, env, opts)
	if n := g.takeBytesRead(); n > 2*size {
		t.Errorf("converting a %d-byte message read %d bytes", size, n)
	}
	if err != nil {
		return res, err
	}
	for _, a := range res.Attachments {
		r, err := a.Open()
		if err != nil {
			t.Fatalf("attachment %q does not open: %v", a.Name, err)
		}
		n, err := io.Copy(io.Discard, r)
		r.Close()
		if err != nil || n != a.Size {
			t.Errorf("attachment %q: read %d bytes (%v), Size says %d", a.Name, n, err, a.Size)
		}
	}
	if n := g.takeBytesRead(); n > size {
		t.Errorf("opening the attachments of a %d-byte message read %d bytes", size, n)
	}
	return res, nil
}
