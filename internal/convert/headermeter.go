package convert

// HeaderMeter follows a message header as it streams in, line by line, the
// way conversion will read it, without keeping it: intake uses it to refuse
// a header that conversion would refuse, while the message is still being
// received, and to know where the header ends.
type HeaderMeter struct {
	hl    headerLines
	ended bool
}

// NewHeaderMeter returns a meter for a message's top-level header.
func NewHeaderMeter() *HeaderMeter {
	return &HeaderMeter{hl: headerLines{top: true}}
}

// HeaderLineStart is how much of each line Line needs to see.
const HeaderLineStart = maxFieldName + 2

// Line takes the next line: size bytes with its line end, of which start
// holds the first HeaderLineStart or all. It reports whether the header
// has ended (at this line or before) and whether it passed MaxHeaderBytes
// or MaxHeaderFields. A header that is not one (no header field first) is
// conversion's to judge: it ends here.
func (m *HeaderMeter) Line(start []byte, size int) (ended, tooLarge bool) {
	if m.ended {
		return true, false
	}
	step, _, err := m.hl.read(start, size)
	m.ended = step != headerContinues || err != nil
	return m.ended, err == errHeaderTooLarge
}

// Room is how many more header bytes MaxHeaderBytes allows: a line still
// being received that is longer already passes it.
func (m *HeaderMeter) Room() int {
	return MaxHeaderBytes - m.hl.size
}
