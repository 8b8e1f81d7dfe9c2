package config

import (
	"bufio"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/smtpgw/smtpgw"
)

// The configuration reference, docs/configuration.md, has one heading per
// section (## `[server]`, ## `[[listener]]`) followed by a table with one
// row per key: | `key` | type | default | meaning |. A default written as a
// code span, alone or followed by a note in parentheses, is a TOML value:
// decoded on its own into the key's type it must equal what leaving the
// key out loads to, and written into a minimal configuration it must load
// to that too. Any other default is prose (the machine's host name, 2 per
// CPU, required) and is not checked.
const referencePage = "../../docs/configuration.md"

var (
	referenceSection = regexp.MustCompile("^## `(\\[\\[?[a-z_.]+\\]\\]?)`$")
	referenceRow     = regexp.MustCompile("^\\| `([a-z0-9_]+)` \\|")
	tomlDefault      = regexp.MustCompile("^`([^`]+)`( \\(.*\\))?$")
)

// referenceKey is one row of the reference.
type referenceKey struct {
	line           int
	typ, byDefault string
}

// readReference returns the page's rows by section ("[server]",
// "[[listener]]") and key.
func readReference(t *testing.T) map[string]map[string]referenceKey {
	t.Helper()
	f, err := os.Open(referencePage)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	page := map[string]map[string]referenceKey{}
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if m := referenceSection.FindStringSubmatch(line); m != nil {
			section = m[1]
			if page[section] != nil {
				t.Errorf("%s:%d: section %s appears twice", referencePage, n, section)
			}
			page[section] = map[string]referenceKey{}
			continue
		}
		if strings.HasPrefix(line, "#") {
			section = ""
		}
		m := referenceRow.FindStringSubmatch(line)
		if m == nil || section == "" {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), " | ")
		if len(cells) != 4 {
			t.Errorf("%s:%d: a row has 4 cells (key | type | default | meaning), this one %d: %s", referencePage, n, len(cells), line)
			continue
		}
		if _, dup := page[section][m[1]]; dup {
			t.Errorf("%s:%d: %s %s appears twice", referencePage, n, section, m[1])
		}
		page[section][m[1]] = referenceKey{line: n, typ: strings.TrimSpace(cells[1]), byDefault: strings.TrimSpace(cells[2])}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return page
}

// loaderKey is one key the loader reads: the section it is in, and where
// in a Config its value lands.
type loaderKey struct {
	section string // "[server]", "[[listener]]"
	name    string
	typ     reflect.Type // the field's type
	value   func(*Config) reflect.Value
}

// loaderKeys walks Config's toml tags: each field of Config is a section
// (a struct, a pointer to one, or a slice of them for [[tables]]), and each
// tagged field of a section, or of a struct embedded in it, is a key.
func loaderKeys() []loaderKey {
	var keys []loaderKey
	ct := reflect.TypeFor[Config]()
	for i := range ct.NumField() {
		sf := ct.Field(i)
		tag := tomlName(sf)
		if tag == "" {
			continue
		}
		st, section := sf.Type, "["+tag+"]"
		switch st.Kind() {
		case reflect.Pointer:
			st = st.Elem()
		case reflect.Slice:
			st, section = st.Elem(), "[["+tag+"]]"
		}
		for _, path := range keyPaths(st, nil) {
			field := sf.Index
			key := st.FieldByIndex(path)
			keys = append(keys, loaderKey{section: section, name: tomlName(key), typ: key.Type, value: func(c *Config) reflect.Value {
				v := reflect.ValueOf(c).Elem().FieldByIndex(field)
				switch v.Kind() {
				case reflect.Pointer:
					v = v.Elem()
				case reflect.Slice:
					v = v.Index(0)
				}
				v = v.FieldByIndex(path)
				if v.Kind() == reflect.Pointer && !v.IsNil() {
					v = v.Elem()
				}
				return v
			}})
		}
	}
	return keys
}

// keyPaths returns the field index paths of the keys of section type st,
// descending into embedded structs such as Policy.
func keyPaths(st reflect.Type, prefix []int) [][]int {
	var paths [][]int
	for i := range st.NumField() {
		sf := st.Field(i)
		path := append(slices.Clone(prefix), i)
		if sf.Anonymous && sf.Type.Kind() == reflect.Struct {
			paths = append(paths, keyPaths(sf.Type, path)...)
		} else if tomlName(sf) != "" {
			paths = append(paths, path)
		}
	}
	return paths
}

func tomlName(sf reflect.StructField) string {
	name, _, _ := strings.Cut(sf.Tag.Get("toml"), ",")
	if name == "-" {
		return ""
	}
	return name
}

// minimalSections is the smallest valid configuration, one entry for each
// [[table]], section by section; [graph] stands in for [outbox] when a
// [graph] key is checked. Its secret comes from the environment.
var minimalSections = map[string]string{
	"[[listener]]": `address = "127.0.0.1:0"`,
	"[[user]]":     "username = \"u\"\npassword_hash = '" + testHash + "'\nmailbox = \"u@contoso.com\"",
	"[[network]]":  "cidrs = [\"127.0.0.1\"]\nmailbox = \"n@contoso.com\"",
	"[outbox]":     `dir = "outbox"`,
}

const minimalGraph = "tenant_id = \"contoso.onmicrosoft.com\"\nclient_id = \"00000000-0000-0000-0000-000000000001\""

// minimalWith is the minimal configuration with the line key = value in
// section (nothing more when key is empty).
func minimalWith(section, key, value string) string {
	sections := map[string]string{}
	for s, body := range minimalSections {
		sections[s] = body
	}
	if section == "[graph]" {
		delete(sections, "[outbox]")
		sections["[graph]"] = minimalGraph
	}
	if key != "" {
		sections[section] = strings.TrimPrefix(sections[section]+"\n"+key+" = "+value, "\n")
	}
	var b strings.Builder
	names := make([]string, 0, len(sections))
	for s := range sections {
		names = append(names, s)
	}
	sort.Strings(names)
	for _, s := range names {
		fmt.Fprintf(&b, "%s\n%s\n\n", s, sections[s])
	}
	return b.String()
}

// TestConfigurationReference fails when a key the loader reads is missing
// from docs/configuration.md or the other way round, or when a default on
// the page is not what the loader uses.
func TestConfigurationReference(t *testing.T) {
	t.Setenv(ClientSecretEnv, "from-the-environment")
	page := readReference(t)
	// What leaving every key out loads to; [graph]'s keys are read with
	// [graph] in place of [outbox].
	base := parseMinimal(t, "")
	graphBase := parseMinimal(t, "[graph]")
	inLoader := map[string]bool{}
	for _, k := range loaderKeys() {
		inLoader[k.section+" "+k.name] = true
		row, ok := page[k.section][k.name]
		if !ok {
			t.Errorf("%s: no row for %s %s, which the loader reads: add | `%s` | type | default | meaning |", referencePage, k.section, k.name, k.name)
			continue
		}
		if row.typ == "" {
			t.Errorf("%s:%d: %s %s has no type", referencePage, row.line, k.section, k.name)
		}
		m := tomlDefault.FindStringSubmatch(row.byDefault)
		if m == nil {
			continue
		}
		loaded := base
		if k.section == "[graph]" {
			loaded = graphBase
		}
		want := k.value(loaded)
		// The loader fills a key set to its type's zero value (0, "",
		// "0s") as if it were left out, so only the literal decoded
		// alone tells such a default from the loader's.
		literal, err := decodeLiteral(k.typ, m[1])
		if err != nil {
			t.Errorf("%s:%d: %s %s: the default %s is not a %s: %v", referencePage, row.line, k.section, k.name, m[1], k.typ, err)
			continue
		}
		if !sameValue(literal, want) {
			t.Errorf("%s:%d: %s %s: the page's default is %s, but the loader's default is %v", referencePage, row.line, k.section, k.name, m[1], want)
		}
		written, err := Parse([]byte(minimalWith(k.section, k.name, m[1])), "minimal.toml")
		if err != nil {
			t.Errorf("%s:%d: %s %s: the default %s does not load: %v", referencePage, row.line, k.section, k.name, m[1], err)
			continue
		}
		if got := k.value(written); !sameValue(got, want) {
			t.Errorf("%s:%d: %s %s: the page's default %s loads as %v, but the loader's default is %v", referencePage, row.line, k.section, k.name, m[1], got, want)
		}
	}
	for section, keys := range page {
		for key, row := range keys {
			if !inLoader[section+" "+key] {
				t.Errorf("%s:%d: %s %s is on the page but the loader has no such key", referencePage, row.line, section, key)
			}
		}
	}
}

// parseMinimal loads the minimal configuration for section's keys.
func parseMinimal(t *testing.T, section string) *Config {
	t.Helper()
	cfg, err := Parse([]byte(minimalWith(section, "", "")), "minimal.toml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// decodeLiteral decodes the TOML value literal alone into a value of typ,
// as the loader decodes a key's value, before any default applies.
func decodeLiteral(typ reflect.Type, literal string) (reflect.Value, error) {
	holder := reflect.New(reflect.StructOf([]reflect.StructField{{Name: "V", Type: typ, Tag: `toml:"v"`}}))
	if _, err := toml.Decode("v = "+literal, holder.Interface()); err != nil {
		return reflect.Value{}, err
	}
	v := holder.Elem().Field(0)
	if v.Kind() == reflect.Pointer && !v.IsNil() {
		v = v.Elem()
	}
	return v, nil
}

// sameValue compares two loaded values; an empty list is no list.
func sameValue(a, b reflect.Value) bool {
	if a.Kind() == reflect.Slice && a.Len() == 0 && b.Len() == 0 {
		return true
	}
	return reflect.DeepEqual(a.Interface(), b.Interface())
}

// exampleKey is a key line of config.example.toml, set or commented out:
// `key = value` or `# key = value`.
var exampleKey = regexp.MustCompile(`^#? ?([a-z0-9_]+) = `)

// exampleSection is a section header there, set or commented out.
var exampleSection = regexp.MustCompile(`^#? ?(\[\[?[a-z_.]+\]\]?)`)

// TestExampleConfigKeys: every key config.example.toml shows, commented out
// or not, is one the loader reads, in the section it is shown in.
func TestExampleConfigKeys(t *testing.T) {
	inLoader := map[string]bool{}
	for _, k := range loaderKeys() {
		inLoader[k.section+" "+k.name] = true
	}
	section := ""
	for n, line := range strings.Split(string(smtpgw.ExampleConfig), "\n") {
		if m := exampleSection.FindStringSubmatch(line); m != nil {
			section = m[1]
			continue
		}
		if m := exampleKey.FindStringSubmatch(line); m != nil && !inLoader[section+" "+m[1]] {
			t.Errorf("config.example.toml:%d: %s %s is not a key of the loader", n+1, section, m[1])
		}
	}
}
