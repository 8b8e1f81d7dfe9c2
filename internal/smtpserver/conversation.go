package smtpserver

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smtpgw/smtpgw/internal/clients"
)

// maxLoggedLine bounds one logged line of the conversation.
const maxLoggedLine = 512

// smtpLines reads an SMTP conversation for the connection's clients.Watch:
// it tells error replies (4xx and 5xx, whoever writes them: go-smtp's own
// 500, 502 and 503 included) from the rest, so that each counts toward
// errors_before_delay, error_delay and max_errors; it notices STARTTLS;
// and at level debug it gives the lines to log, with every credential of
// AUTH and all message text left out: the message is summed up by its
// size, even when the client sends it before the 354.
type smtpLines struct {
	conn    *clients.Conn
	debug   bool                   // the conversation is logged (conn.Debug)
	refused *prometheus.CounterVec // the server's refusals, by reason

	in, out  []byte      // partial lines
	greeted  bool        // the greeting (or a refusal) is out
	helo     atomic.Bool // go-smtp opened a session: EHLO or HELO succeeded
	auth     bool        // client lines are AUTH payloads until a final reply
	data     bool        // client lines are message text until "."
	dataSize int
	bdat     int // bytes of a BDAT chunk still to come
}

// Client implements clients.Protocol.
func (l *smtpLines) Client(p []byte) []string {
	var logged []string
	for len(p) > 0 {
		if l.bdat > 0 {
			skip := min(l.bdat, len(p))
			l.bdat -= skip
			l.dataSize += skip
			p = p[skip:]
			if l.bdat == 0 {
				logged = append(logged, l.messageSize())
			}
			continue
		}
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			l.in = appendBounded(l.in, p)
			break
		}
		line := string(appendBounded(l.in, p[:i]))
		l.in = l.in[:0]
		p = p[i+1:]
		if s, ok := l.clientLine(strings.TrimSuffix(line, "\r"), i+1); ok {
			logged = append(logged, s)
		}
	}
	return logged
}

func (l *smtpLines) messageSize() string {
	s := fmt.Sprintf("[message: %d bytes, not logged]", l.dataSize)
	l.dataSize = 0
	return s
}

// mechanisms are the SASL mechanism names that may be logged as sent:
// anything else in their place may be a credential.
var mechanisms = map[string]bool{"PLAIN": true, "LOGIN": true, "CRAM-MD5": true, "XOAUTH2": true, "OAUTHBEARER": true}

func (l *smtpLines) clientLine(line string, size int) (string, bool) {
	switch {
	case l.data && line == ".":
		l.data = false
		return l.messageSize(), true
	case l.data:
		l.dataSize += size
		return "", false
	case l.auth:
		return "[AUTH response redacted]", true
	}
	// go-smtp splits a command at the first space; a tab or a lower-case
	// verb must not get a credential past the redaction either.
	fields := strings.Fields(line)
	if len(fields) == 0 {
		return line, true
	}
	switch strings.ToUpper(fields[0]) {
	case "AUTH":
		l.auth = true
		logged := fields[0]
		if len(fields) > 1 && mechanisms[strings.ToUpper(fields[1])] {
			logged += " " + fields[1]
			fields = fields[1:]
		}
		if len(fields) > 1 {
			logged += " [redacted]"
		}
		return logged, true
	case "DATA":
		// Text sent before the 354 is message text too, if the 354 comes.
		l.data = true
	case "BDAT":
		if len(fields) > 1 {
			l.bdat, _ = strconv.Atoi(fields[1])
			l.bdat = max(l.bdat, 0)
		}
	}
	return line, true
}

// Server implements clients.Protocol. It runs on every reply, so the
// lines are turned into strings only when the conversation is logged.
func (l *smtpLines) Server(p []byte) (logged []string, errors int, encrypted bool) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			l.out = appendBounded(l.out, p)
			break
		}
		line := bytes.TrimSuffix(appendBounded(l.out, p[:i]), []byte("\r"))
		l.out = line[:0]
		p = p[i+1:]
		if l.debug {
			logged = append(logged, string(line))
		}
		isError, tls := l.serverLine(line)
		if isError {
			errors++
		}
		encrypted = encrypted || tls
	}
	return logged, errors, encrypted
}

// serverLine notes a reply line: whether it is an error reply that counts,
// and whether TLS starts after it.
func (l *smtpLines) serverLine(line []byte) (isError, startsTLS bool) {
	if len(line) >= 4 && line[3] == '-' {
		return false, false // a final line follows
	}
	code := line[:min(3, len(line))]
	switch {
	case !l.greeted:
		l.greeted = true
	case string(code) == "220":
		// After the greeting, 220 only answers STARTTLS. A client that
		// never said EHLO did not see STARTTLS offered: close rather than
		// serve a session go-smtp would start without one of ours.
		l.auth, l.data, l.bdat = false, false, 0
		if !l.helo.Load() {
			l.conn.CloseAfterNextWrite()
		}
		return false, true
	case string(code) == "334":
	case string(code) == "354":
		l.data = true
	default:
		l.auth = false
		if l.data {
			// DATA refused: what the client sent after it are commands.
			l.data, l.dataSize = false, 0
		}
	}
	// 421 closes the connection anyway; counting it would only delay it.
	return (code[0] == '4' || code[0] == '5') && string(code) != "421", false
}

// TooManyErrors implements clients.Protocol: the connection closes for
// it, a refusal of its own.
func (l *smtpLines) TooManyErrors() string {
	r := replyFor(errTooManyErrors)
	l.refused.WithLabelValues(r.reason).Inc()
	return replyLine(r.smtp)
}

// appendBounded appends p to b up to maxLoggedLine bytes.
func appendBounded(b, p []byte) []byte {
	if room := maxLoggedLine - len(b); room < len(p) {
		p = p[:max(room, 0)]
	}
	return append(b, p...)
}
