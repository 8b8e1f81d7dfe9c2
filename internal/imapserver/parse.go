package imapserver

import (
	"errors"
	"strconv"
	"strings"
)

// Bounds of a command before login: enough for any LOGIN, AUTHENTICATE or
// ID a real client sends, small enough that a session costs little.
const (
	maxLine     = 8 << 10 // one line of a command, literals excluded
	maxLiteral  = 4 << 10 // one literal (LITERAL- would allow 4,096 too)
	maxLiterals = 8       // literals in one command
)

// command is one parsed client command.
type command struct {
	tag  string
	name string // upper case
	args []string
	// literals holds, for each arg, whether it came as a literal; the
	// debug log shows a literal's size, never a credential in it.
	literals []bool
}

// errSyntax is a command the gateway cannot parse: answered with BAD.
type errSyntax struct {
	tag    string // "*" when the tag itself is unreadable
	reason string
}

func (e *errSyntax) Error() string { return e.reason }

// errLiteralTooLarge is a literal over maxLiteral. A synchronizing one is
// refused before the client sends it; a non-synchronizing one ({n+}) is
// already on its way, so the session ends.
type errLiteralTooLarge struct {
	tag  string
	sync bool
}

func (e *errLiteralTooLarge) Error() string { return "literal too large" }

// literalReader is how the parser reads the rest of a command after a
// literal: it sends the continuation request for a synchronizing literal,
// reads the literal's bytes and the line that follows.
type literalReader interface {
	literal(n int, sync bool) (data []byte, next []byte, err error)
}

// parseCommand parses line and, through lr, any literals it announces.
func parseCommand(line []byte, lr literalReader) (*command, error) {
	s := string(line)
	tag, rest, ok := strings.Cut(s, " ")
	if !ok || !isTag(tag) {
		if isTag(tag) {
			return nil, &errSyntax{tag: tag, reason: "missing command"}
		}
		return nil, &errSyntax{tag: "*", reason: "invalid tag"}
	}
	name, rest, _ := strings.Cut(rest, " ")
	if !isAtom(name) {
		return nil, &errSyntax{tag: tag, reason: "invalid command name"}
	}
	c := &command{tag: tag, name: strings.ToUpper(name)}
	literals := 0
	for rest != "" {
		var arg string
		var err error
		switch rest[0] {
		case ' ':
			rest = rest[1:]
			continue
		case '"':
			arg, rest, err = quoted(rest)
			if err != nil {
				return nil, &errSyntax{tag: tag, reason: err.Error()}
			}
			c.add(arg, false)
		case '(', ')':
			c.add(rest[:1], false)
			rest = rest[1:]
		case '{':
			n, sync, err := literalSize(rest)
			if err != nil {
				return nil, &errSyntax{tag: tag, reason: err.Error()}
			}
			if n > maxLiteral || literals == maxLiterals {
				return nil, &errLiteralTooLarge{tag: tag, sync: sync}
			}
			literals++
			data, next, err := lr.literal(n, sync)
			if err != nil {
				return nil, err
			}
			c.add(string(data), true)
			rest = string(next)
		default:
			end := strings.IndexAny(rest, " ()")
			if end < 0 {
				end = len(rest)
			}
			arg, rest = rest[:end], rest[end:]
			if !isAstring(arg) {
				return nil, &errSyntax{tag: tag, reason: "invalid argument"}
			}
			c.add(arg, false)
		}
	}
	return c, nil
}

func (c *command) add(arg string, literal bool) {
	c.args = append(c.args, arg)
	c.literals = append(c.literals, literal)
}

// quoted reads a quoted string at the start of s (RFC 9051 quoted: no
// CR or LF, backslash escapes only '"' and '\').
func quoted(s string) (value, rest string, err error) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '"':
			return b.String(), s[i+1:], nil
		case '\\':
			i++
			if i == len(s) || s[i] != '"' && s[i] != '\\' {
				return "", "", errors.New("invalid escape in quoted string")
			}
			b.WriteByte(s[i])
		case '\r', '\n', 0:
			return "", "", errors.New("invalid character in quoted string")
		default:
			b.WriteByte(c)
		}
	}
	return "", "", errors.New("unterminated quoted string")
}

// literalSize reads "{n}" or "{n+}", which must end the line.
func literalSize(s string) (n int, sync bool, err error) {
	if !strings.HasSuffix(s, "}") {
		return 0, false, errors.New("a literal must end the line")
	}
	digits := s[1 : len(s)-1]
	sync = true
	if d, ok := strings.CutSuffix(digits, "+"); ok {
		digits, sync = d, false
	}
	if digits == "" || len(digits) > 10 || strings.TrimLeft(digits, "0123456789") != "" {
		return 0, false, errors.New("invalid literal size")
	}
	n, err = strconv.Atoi(digits)
	if err != nil {
		return 0, false, errors.New("invalid literal size")
	}
	return n, sync, nil
}

// isTag reports whether s is a tag: ASTRING-CHARs except '+'.
func isTag(s string) bool {
	return isAstring(s) && !strings.Contains(s, "+")
}

// isAstring reports whether s is a non-empty atom of ASTRING-CHARs (an
// atom that may hold ']').
func isAstring(s string) bool {
	return s != "" && strings.IndexFunc(s, func(r rune) bool { return !isAtomChar(r) && r != ']' }) < 0
}

// isAtom reports whether s is a non-empty atom (NIL included).
func isAtom(s string) bool {
	return s != "" && strings.IndexFunc(s, func(r rune) bool { return !isAtomChar(r) }) < 0
}

// isAtomChar is RFC 9051's ATOM-CHAR.
func isAtomChar(r rune) bool {
	return r > ' ' && r < 0x7f && !strings.ContainsRune(`(){%*"\]`, r)
}
