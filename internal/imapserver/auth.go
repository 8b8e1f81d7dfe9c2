package imapserver

import (
	"context"
	"net"
	"strconv"
	"strings"
)

// authenticate runs AUTHENTICATE PLAIN, with the initial response on the
// command line (SASL-IR) or after a continuation request.
func (s *session) authenticate(ctx context.Context, cmd *command) (net.Conn, bool) {
	if len(cmd.args) == 0 || len(cmd.args) > 2 {
		return nil, s.Fail(cmd.tag + " BAD AUTHENTICATE needs a mechanism")
	}
	if !strings.EqualFold(cmd.args[0], "PLAIN") {
		return nil, s.Fail(cmd.tag + " NO Unsupported authentication mechanism; use PLAIN or LOGIN")
	}
	if !s.LoginAllowed() {
		return nil, s.Fail(cmd.tag + " NO [PRIVACYREQUIRED] Use STARTTLS before logging in")
	}
	return s.AuthPlain(ctx, cmd.tag, cmd.args[len(cmd.args)-1], len(cmd.args) == 2)
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
// its first two words, each up to the first character that cannot be in
// it, since the rest may hold a password (even after a tab).
func redactedLine(line []byte) string {
	word := func(s string) (w, rest string) {
		end := strings.IndexFunc(s, func(r rune) bool { return !isAtomChar(r) && r != ']' })
		if end < 0 {
			end = len(s)
		}
		return s[:min(end, 64)], s[end:]
	}
	tag, rest := word(string(line))
	shown := tag
	if after, ok := strings.CutPrefix(rest, " "); ok {
		var name string
		name, rest = word(after)
		shown += " " + name
	}
	if rest != "" {
		shown += " …"
	}
	return shown
}
