package config

import (
	"errors"
	"regexp"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// decodeErrorRE matches the errors BurntSushi/toml returns for a value of
// the wrong type: `toml: line 5 (last key "server.max_recipients"):
// incompatible types: TOML value has type string; destination has type
// integer`.
var decodeErrorRE = regexp.MustCompile(`^toml: (?:line (\d+) )?\(last key "([^"]*)"\): (.*)$`)

var typeMismatchRE = regexp.MustCompile(`^incompatible types: TOML value has type (\S+); destination has type (.+)$`)

// decodeErrors reports the error that stopped decoding: a syntax error, or
// a value of the wrong type.
func decodeErrors(file string, data []byte, err error) Errors {
	var perr toml.ParseError
	if errors.As(err, &perr) {
		return Errors{{File: file, Line: perr.Position.Line, Key: perr.LastKey, Msg: perr.Message}}
	}
	return Errors{decodeProblem(file, indexKeys(data), err)}
}

// decodeProblem turns a decoding error that is not a toml.ParseError into
// a Problem in the file:line: key: message form, naming the types in the
// words of a TOML file rather than Go's.
func decodeProblem(file string, lines keyLines, err error) Problem {
	m := decodeErrorRE.FindStringSubmatch(err.Error())
	if m == nil {
		return Problem{File: file, Msg: strings.TrimPrefix(err.Error(), "toml: ")}
	}
	line, _ := strconv.Atoi(m[1])
	key, msg := m[2], m[3]
	if line == 0 {
		line = lines.line(key)
	}
	if t := typeMismatchRE.FindStringSubmatch(msg); t != nil {
		msg = "is " + tomlTypeWords(t[1]) + ", but must be " + tomlTypeWords(t[2])
	}
	return Problem{File: file, Line: line, Key: key, Msg: msg}
}

// tomlTypeWords names a type from toml's errors (Go's name for the value
// read, or the kind of the destination) as TOML calls it.
func tomlTypeWords(t string) string {
	switch {
	case t == "string", t == "primitive (string-like)":
		return "a string (in quotes)"
	case t == "int64", t == "integer":
		return "an integer"
	case t == "float64", t == "float":
		return "a number"
	case t == "bool", t == "boolean":
		return "true or false"
	case strings.HasPrefix(t, "[]"), t == "slice":
		return "an array [ … ]"
	case strings.HasPrefix(t, "map["), t == "map":
		return "a table"
	case strings.HasPrefix(t, "time."), strings.HasPrefix(t, "toml.Local"):
		return "a date or time"
	}
	return t
}
