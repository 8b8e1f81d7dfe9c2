package convert

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// oversizedHeaders are message headers past MaxHeaderBytes or
// MaxHeaderFields in every shape: lines short enough to pass any line
// check, one field folded over many lines, one long line, and a header
// that never ends.
func oversizedHeaders() map[string]string {
	return map[string]string{
		"many short lines": strings.Repeat("X-A: b\r\n", MaxHeaderBytes/8+1) + "\r\nbody\r\n",
		"too many fields":  strings.Repeat("X-A: b\r\n", MaxHeaderFields+1) + "\r\nbody\r\n",
		"one folded field": "To: a@contoso.com" + strings.Repeat(",\r\n b@contoso.com", MaxHeaderBytes/16) + "\r\n\r\nbody\r\n",
		"one long line":    "Subject: " + strings.Repeat("x", MaxHeaderBytes) + "\r\n\r\nbody\r\n",
		"no header end":    strings.Repeat("X-A: b\r\n", MaxHeaderBytes/8+1),
	}
}

func TestHeaderTooLarge(t *testing.T) {
	for name, raw := range oversizedHeaders() {
		t.Run(name, func(t *testing.T) {
			_, err := convertGuarded(t, []byte(raw), testEnvelope, Options{})
			var malformed *MalformedError
			if !errors.As(err, &malformed) || !strings.Contains(err.Error(), "header is larger") {
				t.Fatalf("error %v, want the header refused as too large", err)
			}
		})
	}
	within := strings.Repeat("X-A: b\r\n", MaxHeaderFields-1) + "Subject: kept\r\n\r\nbody\r\n"
	if got := convertString(t, within, testEnvelope).Message.Subject; got != "kept" {
		t.Errorf("a header within the limits: subject %q", got)
	}
}

// HeaderMeter, fed line by line, agrees with conversion on every shape.
func TestHeaderMeter(t *testing.T) {
	measure := func(raw string) (ended, tooLarge bool) {
		m := NewHeaderMeter()
		for line := range strings.Lines(raw) {
			if ended, tooLarge = m.Line([]byte(line[:min(len(line), HeaderLineStart)]), len(line)); ended {
				return ended, tooLarge
			}
		}
		return false, false // the header never ended: the meter saw nothing too large
	}
	for name, raw := range oversizedHeaders() {
		if _, tooLarge := measure(raw); !tooLarge {
			t.Errorf("%s: not too large", name)
		}
	}
	for _, raw := range []string{
		"Subject: s\r\n\r\n" + strings.Repeat("x\r\n", MaxHeaderBytes),
		// The first line that is no field ends the header, as for conversion.
		"Subject: s\r\n" + strings.Repeat("body text\r\n", MaxHeaderBytes/10),
	} {
		if ended, tooLarge := measure(raw); !ended || tooLarge {
			t.Errorf("%.20q…: ended %v, too large %v", raw, ended, tooLarge)
		}
	}
}

// A part header past the limits ends where it passes them, and the parts
// past the bound of all headers together travel as one .eml: a message of
// many parts with large headers is not held parsed in memory.
func TestPartHeaderLimits(t *testing.T) {
	big := "--b\r\nContent-Type: text/plain\r\n" + strings.Repeat("X-A: b\r\n", MaxHeaderFields+10) + "\r\ntext\r\n"
	raw := "Subject: s\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" + big + "--b--\r\n"
	ix, err := indexMessage(strings.NewReader(raw), int64(len(raw)), 0)
	if err != nil {
		t.Fatal(err)
	}
	if n := ix.root.children[0].header.Len(); n > MaxHeaderFields {
		t.Errorf("part header kept %d fields", n)
	}

	var many strings.Builder
	many.WriteString("Subject: s\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n")
	parts := 2 * maxIndexedHeaderFields / MaxHeaderFields
	for i := range parts {
		fmt.Fprintf(&many, "--b\r\nContent-Type: text/plain\r\n%s\r\npart %d\r\n", strings.Repeat("X-A: b\r\n", MaxHeaderFields-2), i)
	}
	many.WriteString("--b--\r\n")
	ix, err = indexMessage(strings.NewReader(many.String()), int64(many.Len()), 0)
	if err != nil {
		t.Fatal(err)
	}
	fields := ix.root.header.Len()
	for _, part := range ix.root.children {
		fields += part.header.Len()
	}
	if fields > maxIndexedHeaderFields+MaxHeaderFields || ix.overflowStart < 0 {
		t.Errorf("%d parts indexed with %d header fields, overflow at %d", len(ix.root.children), fields, ix.overflowStart)
	}
}
