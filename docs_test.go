package smtpgw

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"
)

// readmeLimit keeps the README a page a newcomer reads in five minutes;
// the rest belongs in docs/.
const readmeLimit = 15 << 10

var (
	markdownLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	headingLine  = regexp.MustCompile(`^#{1,6} (.+)$`)
	whoFor       = regexp.MustCompile(`^For [^.]+: `)
)

// TestDocs: the README is short and links every page in docs/; each page
// starts with its title and who it is for; every relative link from them
// leads to a file that exists and to a heading that exists there.
func TestDocs(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	if len(readme) >= readmeLimit {
		t.Errorf("README.md is %d bytes, over %d: move the detail into docs/", len(readme), readmeLimit)
	}
	pages, err := filepath.Glob("docs/*.md")
	if err != nil || len(pages) == 0 {
		t.Fatalf("no pages in docs/ (%v)", err)
	}
	for _, page := range pages {
		if !strings.Contains(string(readme), "]("+page+")") {
			t.Errorf("README.md does not link %s", page)
		}
		lines := strings.SplitN(readFile(t, page), "\n", 4)
		if len(lines) < 3 || !strings.HasPrefix(lines[0], "# ") || lines[1] != "" || !whoFor.MatchString(lines[2]) {
			t.Errorf("%s does not start with its title, an empty line and \"For <readers>: ...\"", page)
		}
	}
	for _, from := range append([]string{"README.md"}, pages...) {
		for _, m := range markdownLink.FindAllStringSubmatch(readFile(t, from), -1) {
			checkLink(t, from, m[1])
		}
	}
}

// checkLink checks one link target written in file from.
func checkLink(t *testing.T, from, target string) {
	t.Helper()
	if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
		return
	}
	path, fragment, _ := strings.Cut(target, "#")
	file := from
	if path != "" {
		file = filepath.Join(filepath.Dir(from), path)
	}
	if _, err := os.Stat(file); err != nil {
		t.Errorf("%s links %s, which does not exist", from, target)
		return
	}
	if fragment != "" && !hasAnchor(readFile(t, file), fragment) {
		t.Errorf("%s links %s: %s has no heading with the anchor #%s", from, target, file, fragment)
	}
}

// hasAnchor reports whether a heading of markdown text gets the anchor
// GitHub makes: lower case, punctuation dropped, spaces as hyphens.
func hasAnchor(text, anchor string) bool {
	fenced := false
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "```") {
			fenced = !fenced
		}
		m := headingLine.FindStringSubmatch(line)
		if fenced || m == nil {
			continue
		}
		var b strings.Builder
		for _, r := range strings.ToLower(m[1]) {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
				b.WriteRune(r)
			}
		}
		if b.String() == anchor {
			return true
		}
	}
	return false
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// TestDevelopmentNamesEveryPackage: docs/development.md's table of packages
// names every folder under internal/, so a new package gets its row.
func TestDevelopmentNamesEveryPackage(t *testing.T) {
	page := readFile(t, "docs/development.md")
	entries, err := os.ReadDir("internal")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() && !strings.Contains(page, "`internal/"+e.Name()+"`") {
			t.Errorf("docs/development.md does not name internal/%s in its table of packages", e.Name())
		}
	}
}
