package imapserver

import (
	"bytes"
	"context"
	"encoding/base64"
	"net"
	"strconv"
	"strings"
)

// authenticate runs AUTHENTICATE PLAIN, with the initial response on the
// command line (SASL-IR) or after a continuation request.
func (s *session) authenticate(ctx context.Context, cmd *command) (net.Conn, bool) {
	if len(cmd.args) == 0 || len(cmd.args) > 2 {
		return nil, s.fail(cmd.tag + " BAD AUTHENTICATE needs a mechanism")
	}
	if !strings.EqualFold(cmd.args[0], "PLAIN") {
		return nil, s.fail(cmd.tag + " NO Unsupported authentication mechanism; use PLAIN or LOGIN")
	}
	if !s.loginAllowed() {
		return nil, s.fail(cmd.tag + " NO [PRIVACYREQUIRED] Use STARTTLS before logging in")
	}
	var response string
	if len(cmd.args) == 2 {
		response = cmd.args[1]
	} else {
		if s.Write("+ ") != nil {
			return nil, false
		}
		line, err := s.ReadLine(maxLine)
		if err != nil {
			s.log.End = s.readFailure(err)
			return nil, false
		}
		s.Log("C", "<credentials>")
		response = string(line)
	}
	if response == "*" {
		return nil, s.fail(cmd.tag + " BAD AUTHENTICATE cancelled")
	}
	if response == "=" { // RFC 4959: an empty initial response
		response = ""
	}
	user, pass, ok := decodePlain(response)
	if !ok {
		return nil, s.fail(cmd.tag + " BAD Invalid PLAIN response")
	}
	return s.login(ctx, cmd.tag, user, pass)
}

// decodePlain reads a SASL PLAIN response (RFC 4616): authorization
// identity (empty, or the user's own name), user name and password.
func decodePlain(b64 string) (user, pass string, ok bool) {
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return "", "", false
	}
	parts := bytes.Split(raw, []byte{0})
	if len(parts) != 3 || len(parts[1]) == 0 {
		return "", "", false
	}
	if len(parts[0]) > 0 && !bytes.Equal(parts[0], parts[1]) {
		return "", "", false // acting as another user is not offered
	}
	return string(parts[1]), string(parts[2]), true
}

// redacted is the command as the debug log shows it: LOGIN without its
// password, AUTHENTICATE without its response, literals by their size.
func (c *command) redacted() string {
	parts := []string{c.tag, c.name}
	for i, a := range c.args {
		switch {
		case c.name == "LOGIN" && i == 1, c.name == "AUTHENTICATE" && i == 1:
			parts = append(parts, "<credentials>")
		case c.literals[i]:
			parts = append(parts, "{"+strconv.Itoa(len(a))+"}")
		default:
			parts = append(parts, strconv.Quote(a))
		}
	}
	return strings.Join(parts, " ")
}

// redactedLine is a line the parser refused, as the debug log shows it:
// its first two words, since the rest may hold a password.
func redactedLine(line []byte) string {
	words := strings.SplitN(string(line), " ", 3)
	if len(words) == 3 {
		words[2] = "…"
	}
	return strings.ToValidUTF8(strings.Join(words, " "), "?")
}
