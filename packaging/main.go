// Command packaging builds the smtpgw Debian package with nfpm, as a
// library: `make deb` runs it from this directory after building the binary.
//
// It lives in its own module so that nfpm and its dependencies never enter
// the product's go.mod.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
)

// Paths of the packaged gateway; the example configuration's relative
// spool and outbox move under the unit's StateDirectory.
var configRewrites = []struct{ from, to string }{
	{`dir = "./outbox"`, `dir = "/var/lib/smtpgw/outbox"`},
	{`dir = "./spool"`, `dir = "/var/lib/smtpgw/spool"`},
}

func main() {
	version := flag.String("version", "", "package version (git describe output is accepted)")
	arch := flag.String("arch", "amd64", "Debian architecture: amd64 or arm64")
	binary := flag.String("binary", "", "the linux smtpgw binary to package")
	example := flag.String("example", "../config.example.toml", "the example configuration")
	out := flag.String("out", "../dist", "directory for the .deb")
	flag.Parse()
	if err := build(*version, *arch, *binary, *example, *out); err != nil {
		fmt.Fprintln(os.Stderr, "packaging:", err)
		os.Exit(1)
	}
}

func build(version, arch, binary, example, out string) error {
	if version == "" || binary == "" {
		return errors.New("-version and -binary are required")
	}
	tmp, err := os.MkdirTemp("", "smtpgw-deb")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	configPath := filepath.Join(tmp, "smtpgw.toml")
	if err := writePackagedConfig(example, configPath); err != nil {
		return err
	}

	vars := map[string]string{
		"VERSION": debianVersion(version), "ARCH": arch, "BINARY": binary, "CONFIG": configPath,
	}
	cfg, err := nfpm.ParseFileWithEnvMapping("nfpm.yaml", func(name string) string { return vars[name] })
	if err != nil {
		return err
	}
	info, err := cfg.Get("deb")
	if err != nil {
		return err
	}
	info = nfpm.WithDefaults(info)
	packager, err := nfpm.Get("deb")
	if err != nil {
		return err
	}
	target := filepath.Join(out, packager.ConventionalFileName(info))
	f, err := os.Create(target)
	if err != nil {
		return err
	}
	if err := packager.Package(info, f); err != nil {
		f.Close()
		os.Remove(target)
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Println(target)
	return nil
}

// writePackagedConfig is the example configuration (the outbox trial) with
// its spool and outbox under /var/lib/smtpgw.
func writePackagedConfig(example, dst string) error {
	data, err := os.ReadFile(example)
	if err != nil {
		return err
	}
	for _, r := range configRewrites {
		if !bytes.Contains(data, []byte(r.from)) {
			return fmt.Errorf("%s no longer contains %s; update configRewrites", example, r.from)
		}
		data = bytes.ReplaceAll(data, []byte(r.from), []byte(r.to))
	}
	return os.WriteFile(dst, data, 0o644)
}

// debianVersion turns `git describe` output into a version dpkg orders
// correctly: v1.2.0 → 1.2.0, v1.2.0-3-gabc1234 → 1.2.0+3+gabc1234, an
// untagged abc1234 (or 2ead6f9, a hash that starts with a digit) →
// 0.0.0~git2ead6f9.
func debianVersion(describe string) string {
	v := strings.TrimPrefix(describe, "v")
	if !tagged.MatchString(v) {
		v = "0.0.0~git" + v
	}
	return strings.ReplaceAll(v, "-", "+")
}

// tagged matches versions from a release tag: digits, a dot, digits.
var tagged = regexp.MustCompile(`^[0-9]+\.[0-9]+`)
