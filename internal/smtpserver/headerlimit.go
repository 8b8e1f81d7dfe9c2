package smtpserver

import (
	"bytes"
	"io"

	"github.com/smtpgw/smtpgw/internal/convert"
)

// headerLimit passes a message through and fails with errHeaderTooLarge as
// soon as its header passes convert's limits (convert.MaxHeaderBytes,
// convert.MaxHeaderFields), however it is folded or split into lines: a
// header that conversion would refuse is refused while it streams in,
// before it fills the spool. It holds at most the start of one line.
type headerLimit struct {
	r     io.Reader
	meter *convert.HeaderMeter
	ended bool
	start []byte // the current line's first bytes, up to convert.HeaderLineStart
	size  int    // the current line's bytes so far
}

func newHeaderLimit(r io.Reader) *headerLimit {
	return &headerLimit{r: r, meter: convert.NewHeaderMeter()}
}

func (h *headerLimit) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	if !h.ended && h.scan(p[:n]) {
		return n, errHeaderTooLarge
	}
	return n, err
}

// scan feeds p to the meter line by line and reports a header too large.
func (h *headerLimit) scan(p []byte) (tooLarge bool) {
	for len(p) > 0 && !h.ended {
		chunk, rest, whole := bytes.Cut(p, []byte("\n"))
		if whole {
			chunk = p[:len(chunk)+1]
		}
		p = rest
		if room := convert.HeaderLineStart - len(h.start); room > 0 {
			h.start = append(h.start, chunk[:min(room, len(chunk))]...)
		}
		h.size += len(chunk)
		if !whole {
			// A line still arriving that is already too long.
			return h.size > h.meter.Room()
		}
		h.ended, tooLarge = h.meter.Line(h.start, h.size)
		h.start, h.size = h.start[:0], 0
	}
	return tooLarge
}
