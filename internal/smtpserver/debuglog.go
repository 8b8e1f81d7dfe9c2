package smtpserver

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
)

// maxLoggedLine bounds one logged line of the conversation.
const maxLoggedLine = 512

// debugConversation wraps conn so that, with level = "debug" and the
// client in debug_clients (or debug_clients empty), each line of the SMTP
// conversation is logged: for troubleshooting a printer that gives up
// without saying why. AUTH payloads are redacted, the message itself is
// summed up by its size, and after STARTTLS only the session's own log
// lines remain, since the encrypted bytes say nothing.
func (s *Server) debugConversation(conn net.Conn, log *slog.Logger) net.Conn {
	if !s.log.Enabled(context.Background(), slog.LevelDebug) {
		return conn
	}
	client, err := netip.ParseAddrPort(conn.RemoteAddr().String())
	if err != nil || !s.debugClient(client.Addr()) {
		return conn
	}
	return &conversationLog{Conn: conn, log: log}
}

// debugClient reports whether client is in debug_clients (all clients
// when the list is empty).
func (s *Server) debugClient(client netip.Addr) bool {
	prefixes := s.cfg.Log.DebugPrefixes
	if len(prefixes) == 0 {
		return true
	}
	for _, p := range prefixes {
		if p.Contains(client.Unmap()) {
			return true
		}
	}
	return false
}

// conversationLog logs what passes through a connection, line by line.
type conversationLog struct {
	net.Conn
	log *slog.Logger

	mu       sync.Mutex
	in, out  []byte // partial lines
	auth     bool   // client lines are AUTH payloads until a final reply
	data     bool   // the client is sending the message, until "."
	dataSize int
	bdat     int    // bytes of a BDAT chunk still to come
	verb     string // the client's last command
	tls      bool
}

// NetConn lets the session find the connection underneath.
func (c *conversationLog) NetConn() net.Conn { return c.Conn }

func (c *conversationLog) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.feedClient(p[:n])
	c.mu.Unlock()
	return n, err
}

func (c *conversationLog) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.feedServer(p)
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *conversationLog) feedClient(p []byte) {
	for len(p) > 0 && !c.tls {
		if c.bdat > 0 {
			skip := min(c.bdat, len(p))
			c.bdat -= skip
			c.dataSize += skip
			p = p[skip:]
			if c.bdat == 0 {
				c.log.Debug("smtp client", "data_bytes", c.dataSize)
				c.dataSize = 0
			}
			continue
		}
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			c.in = appendBounded(c.in, p)
			return
		}
		line := string(appendBounded(c.in, p[:i]))
		c.in = c.in[:0]
		p = p[i+1:]
		c.clientLine(strings.TrimSuffix(line, "\r"), i+1)
	}
}

func (c *conversationLog) clientLine(line string, size int) {
	switch {
	case c.data && line == ".":
		c.data = false
		c.log.Debug("smtp client", "data_bytes", c.dataSize)
		c.dataSize = 0
		return
	case c.data:
		c.dataSize += size
		return
	case c.auth:
		line = "[AUTH response redacted]"
	}
	verb, arg, _ := strings.Cut(line, " ")
	c.verb = strings.ToUpper(verb)
	switch c.verb {
	case "AUTH":
		c.auth = true
		if mech, rest, _ := strings.Cut(arg, " "); rest != "" {
			line = verb + " " + mech + " [redacted]"
		}
	case "BDAT":
		if fields := strings.Fields(arg); len(fields) > 0 {
			c.bdat, _ = strconv.Atoi(fields[0])
		}
	}
	c.log.Debug("smtp client", "line", line)
}

func (c *conversationLog) feedServer(p []byte) {
	for len(p) > 0 && !c.tls {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			c.out = appendBounded(c.out, p)
			return
		}
		line := strings.TrimSuffix(string(appendBounded(c.out, p[:i])), "\r")
		c.out = c.out[:0]
		p = p[i+1:]
		c.serverLine(line)
	}
}

func (c *conversationLog) serverLine(line string) {
	c.log.Debug("smtp server", "line", line)
	final := len(line) < 4 || line[3] != '-'
	if !final {
		return
	}
	code := line[:min(3, len(line))]
	switch {
	case code == "334":
	case code == "354":
		c.data = true
	case code == "220" && c.verb == "STARTTLS":
		c.tls = true
		c.log.Debug("smtp", "detail", "TLS starts; the rest of the conversation is encrypted and not logged line by line")
	default:
		c.auth = false
	}
}

// appendBounded appends p to b up to maxLoggedLine bytes.
func appendBounded(b, p []byte) []byte {
	if room := maxLoggedLine - len(b); room < len(p) {
		p = p[:max(room, 0)]
	}
	return append(b, p...)
}
