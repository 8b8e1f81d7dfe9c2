package config

import (
	"bufio"
	"bytes"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Problem is one thing wrong with a configuration file.
type Problem struct {
	File string
	Line int    // 0 when the key is absent from the file
	Key  string // e.g. "user[2].password_hash"
	Msg  string
}

func (p Problem) String() string {
	loc := p.File
	if p.Line > 0 {
		loc += ":" + strconv.Itoa(p.Line)
	}
	if p.Key == "" {
		return loc + ": " + p.Msg
	}
	return loc + ": " + p.Key + ": " + p.Msg
}

// Errors is every problem found in one configuration file. Load and Parse
// report them all at once, so an admin fixes a file in one pass.
type Errors []Problem

func (e Errors) Error() string {
	lines := make([]string, len(e))
	for i, p := range e {
		lines[i] = p.String()
	}
	return fmt.Sprintf("invalid configuration (%d problem(s)):\n  %s", len(e), strings.Join(lines, "\n  "))
}

// keyLines maps key paths as Problem names them ("server.hostname",
// "listener[1].address", and "listener[1]" for the table itself) to the
// line where they are written. BurntSushi/toml keeps key positions private,
// so this reads the few forms a config file uses: [table], [[array]] and
// key = value lines.
type keyLines map[string]int

var (
	tableRE = regexp.MustCompile(`^\s*(\[\[?)\s*([A-Za-z0-9_.-]+)\s*\]\]?`)
	keyRE   = regexp.MustCompile(`^\s*([A-Za-z0-9_-]+(?:\s*\.\s*[A-Za-z0-9_-]+)*)\s*=`)
)

func indexKeys(data []byte) keyLines {
	lines := keyLines{}
	counts := map[string]int{}
	prefix := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, len(data)+1)
	for n := 1; sc.Scan(); n++ {
		text := sc.Text()
		if m := tableRE.FindStringSubmatch(text); m != nil {
			prefix = m[2]
			if m[1] == "[[" {
				prefix = fmt.Sprintf("%s[%d]", m[2], counts[m[2]])
				counts[m[2]]++
			}
			lines.add(prefix, n)
			continue
		}
		if m := keyRE.FindStringSubmatch(text); m != nil {
			key := strings.Join(strings.Fields(strings.ReplaceAll(m[1], ".", " ")), ".")
			if prefix != "" {
				key = prefix + "." + key
			}
			lines.add(key, n)
		}
	}
	return lines
}

func (k keyLines) add(key string, line int) {
	if _, seen := k[key]; !seen {
		k[key] = line
	}
}

// line finds key, else the nearest enclosing table that is written.
func (k keyLines) line(key string) int {
	for key != "" {
		if n, ok := k[key]; ok {
			return n
		}
		i := strings.LastIndexByte(key, '.')
		if i < 0 {
			break
		}
		key = key[:i]
	}
	return 0
}

// withoutIndexes drops "[N]" from a key path: toml.MetaData.Undecoded names
// keys of array tables without their index.
func withoutIndexes(key string) string {
	var b strings.Builder
	skip := false
	for _, r := range key {
		switch {
		case r == '[':
			skip = true
		case r == ']':
			skip = false
		case !skip:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// occurrence is one place a key is written.
type occurrence struct {
	key  string // with indexes: "user[1].mailbx"
	line int
}

// occurrences returns every place a key with this index-free path is
// written, in file order.
func (k keyLines) occurrences(plain string) []occurrence {
	var found []occurrence
	for key, n := range k {
		if withoutIndexes(key) == plain {
			found = append(found, occurrence{key, n})
		}
	}
	slices.SortFunc(found, func(a, b occurrence) int { return a.line - b.line })
	return found
}
