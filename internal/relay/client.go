package relay

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/smtpgw/smtpgw/internal/clients"
	"github.com/smtpgw/smtpgw/internal/config"
)

// ErrLineTooLong is returned by ReadLine for a line over the limit; the
// front end answers it and closes, since the rest of the line cannot be
// trusted to be what it seems.
var ErrLineTooLong = errors.New("line too long")

// Client is the client's side of a session before login: a bounded line
// reader, a writer, the TLS state and the debug conversation log. The
// protocol parsers read and write only through it.
type Client struct {
	f    *Frontend
	conn net.Conn // the connection as accepted, or its TLS layer
	// admitted is the connection as the gate admitted it, which keeps the
	// session's error and failed login counts.
	admitted *clients.Conn
	r        *bufio.Reader
	tls      bool
	idle     time.Duration     // for each read
	ends     time.Time         // the pre-login phase ends here at the latest
	debug    *slog.Logger      // nil unless the conversation is logged
	logged   clients.LogBudget // lines of the conversation logged so far
	// info is the session's log record; Fail, ReadFailed and End say in it
	// how the session ended.
	info *Session
}

// NewClient reads and writes conn. Each read waits at most idle, and none
// goes past deadline. When debug is not nil, each line both ways is logged
// at level debug, as the parser hands it over (credentials already
// replaced).
func NewClient(conn net.Conn, isTLS bool, idle time.Duration, deadline time.Time, debug *slog.Logger) *Client {
	return &Client{conn: conn, r: bufio.NewReaderSize(conn, 4096), tls: isTLS, idle: idle, ends: deadline, debug: debug}
}

// LoginAllowed reports whether the client may send a password: under TLS,
// or on a listener with allow_insecure_auth.
func (c *Client) LoginAllowed() bool {
	return c.tls || c.f.Listener.AllowInsecureAuth
}

// StartTLSOffered reports whether the client may start TLS now.
func (c *Client) StartTLSOffered() bool {
	return c.f.Listener.TLS == config.TLSStartTLS && !c.tls
}

// End notes how the session ended, for its log line.
func (c *Client) End(how string) { c.info.End = how }

func (c *Client) setDeadline() {
	d := time.Now().Add(c.idle)
	if d.After(c.ends) {
		d = c.ends
	}
	c.conn.SetReadDeadline(d)
}

// ReadLine returns the next line without its line end (CRLF or a bare LF),
// at most max bytes; a longer line is ErrLineTooLong.
func (c *Client) ReadLine(max int) ([]byte, error) {
	c.setDeadline()
	var line []byte
	for {
		chunk, err := c.r.ReadSlice('\n')
		if len(line)+len(chunk) > max+2 {
			return nil, ErrLineTooLong
		}
		line = append(line, chunk...)
		if err == nil {
			break
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

// ReadFull reads exactly len(buf) bytes: an IMAP literal.
func (c *Client) ReadFull(buf []byte) error {
	c.setDeadline()
	_, err := io.ReadFull(c.r, buf)
	return err
}

// Write sends one line (the line end is added) and logs it.
func (c *Client) Write(line string) error {
	c.conn.SetWriteDeadline(time.Now().Add(time.Minute))
	_, err := io.WriteString(c.conn, line+"\r\n")
	c.Log("S", line)
	return err
}

// Log writes one line of the conversation at level debug; direction is
// "C" (from the client) or "S" (from the gateway).
func (c *Client) Log(direction, line string) {
	if c.debug == nil {
		return
	}
	if !c.logged.Take(c.debug) {
		return
	}
	const maxLogged = 512
	if len(line) > maxLogged {
		line = line[:maxLogged] + "…"
	}
	c.debug.Debug("conversation", "dir", direction, "line", line)
}

// Fail sends an error answer, as late as the gate says
// (errors_before_delay, error_delay), or past max_errors a goodbye
// instead; it reports whether the session goes on. It is the same error
// count the gate keeps for SMTP.
func (c *Client) Fail(answer string) bool {
	delay, closeNow := c.admitted.Refused()
	if closeNow {
		c.Write(c.f.Goodbye + "Too many errors")
		c.info.End = "too many errors"
		return false
	}
	c.admitted.Pause(delay)
	if c.Write(answer) != nil {
		c.info.End = EndClientClosed
		return false
	}
	return true
}

// ReadFailed notes how a failed read ended the session, after telling the
// client where that helps.
func (c *Client) ReadFailed(err error) {
	switch {
	case errors.Is(err, ErrLineTooLong):
		c.Write(c.f.Goodbye + "Line too long")
		c.info.End = "line too long"
	case errors.Is(err, os.ErrDeadlineExceeded):
		c.Write(c.f.Goodbye + "Idle for too long")
		c.info.End = EndIdle
	default:
		c.info.End = EndClientClosed
	}
}

// StartTLS begins TLS on the connection after the front end answered the
// STARTTLS or STLS command; when it fails, the session ends. Whatever the
// client sent after that command in plaintext is dropped unread: it must
// never run as a command with the TLS session's rights.
func (c *Client) StartTLS(ctx context.Context) error {
	c.conn.SetDeadline(c.ends)
	conn := tls.Server(c.conn, c.f.TLS())
	if c.r.Buffered() > 0 {
		// Bytes sent before our answer to STARTTLS are an injection attempt
		// or a broken client; either way they are not a TLS handshake.
		c.info.End = "TLS handshake failed"
		return errors.New("client sent data before the TLS handshake")
	}
	hctx, cancel := context.WithTimeout(ctx, time.Until(c.ends))
	defer cancel()
	if err := conn.HandshakeContext(hctx); err != nil {
		c.info.End = "TLS handshake failed"
		return err
	}
	c.conn, c.r, c.tls = conn, bufio.NewReaderSize(conn, 4096), true
	c.conn.SetDeadline(time.Time{})
	return nil
}

// HandOver returns the connection for the relay and the bytes the client
// already sent after its login, which must reach the upstream first. The
// deadlines of the pre-login phase are cleared.
func (c *Client) HandOver() (net.Conn, []byte) {
	pending, _ := c.r.Peek(c.r.Buffered())
	c.conn.SetDeadline(time.Time{})
	return c.conn, append([]byte(nil), pending...)
}

// plainResponse returns the client's SASL PLAIN response: initial, when
// the command carried it (SASL-IR; "=" is an empty one), else the line the
// client sends after an empty continuation request, which the debug log
// shows as <credentials>. cancelled: the client sent "*".
func (c *Client) plainResponse(initial string, hasInitial bool) (response string, cancelled bool, err error) {
	if !hasInitial {
		if err := c.Write("+ "); err != nil {
			return "", false, err
		}
		line, err := c.ReadLine(maxSASLLine)
		if err != nil {
			return "", false, err
		}
		c.Log("C", "<credentials>")
		initial = string(line)
	}
	switch initial {
	case "*":
		return "", true, nil
	case "=": // RFC 4959 and 5034: an empty initial response
		return "", false, nil
	}
	return initial, false, nil
}

// maxSASLLine bounds a SASL response line: a PLAIN response of a 256-byte
// user name and a long password, in base64.
const maxSASLLine = 4 << 10
