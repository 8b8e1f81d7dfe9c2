// Package deploy holds the deployment files; its tests check the container
// image against the configuration it carries and, where a container engine
// runs, build and start it.
package deploy

import (
	"bufio"
	"context"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smtpgw/smtpgw/internal/config"
)

// dockerfile is what the final stage of ../Dockerfile declares.
type dockerfile struct {
	copies  map[string]string // destination → source, from the build context
	volumes []string
	exposed []int
	cmd     string
}

func readDockerfile(t *testing.T) dockerfile {
	f, err := os.Open("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d := dockerfile{copies: map[string]string{}}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		switch args := fields[1:]; fields[0] {
		case "FROM":
			d = dockerfile{copies: map[string]string{}} // only the last stage ships
		case "COPY":
			if len(args) == 2 {
				d.copies[args[1]] = args[0]
			}
		case "VOLUME":
			d.volumes = append(d.volumes, args...)
		case "EXPOSE":
			for _, a := range args {
				p, err := strconv.Atoi(a)
				if err != nil {
					t.Fatalf("EXPOSE %s: %v", a, err)
				}
				d.exposed = append(d.exposed, p)
			}
		case "CMD":
			d.cmd = strings.Join(args, " ")
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestImageAgreesWithItsConfig(t *testing.T) {
	d := readDockerfile(t)
	const configPath = "/etc/smtpgw/smtpgw.toml"
	if !strings.Contains(d.cmd, `"-config", "`+configPath+`"`) {
		t.Errorf("CMD %s does not serve %s", d.cmd, configPath)
	}
	src, ok := d.copies[configPath]
	if !ok {
		t.Fatalf("the image has no %s", configPath)
	}
	data, err := os.ReadFile(filepath.Join("..", src))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(config.ClientSecretEnv, "from-the-environment")
	cfg, err := config.Parse(data, src)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Graph == nil || cfg.Graph.ClientSecretFile != "" {
		t.Errorf("the image's configuration should send through Graph with the secret from %s", config.ClientSecretEnv)
	}
	if !slices.Equal(d.volumes, []string{cfg.Queue.Dir}) {
		t.Errorf("VOLUME %v, [queue] dir is %s", d.volumes, cfg.Queue.Dir)
	}
	var ports []int
	for _, l := range cfg.Listeners {
		p, err := strconv.Atoi(l.Address[strings.LastIndex(l.Address, ":")+1:])
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, p)
	}
	slices.Sort(ports)
	slices.Sort(d.exposed)
	if !slices.Equal(ports, d.exposed) || !slices.Equal(ports, []int{25, 587}) {
		t.Errorf("EXPOSE %v, listeners on %v; want 25 and 587", d.exposed, ports)
	}
}

// TestImageRunsVersion builds the image and runs `smtpgw version` in it.
// It needs a running container engine, which CI machines may lack.
func TestImageRunsVersion(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a container image")
	}
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("skipped: no docker client")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "docker", "info").CombinedOutput(); err != nil {
		t.Skipf("skipped: no container engine (docker info: %s)", lastLine(out))
	}
	tag := "smtpgw-test:" + strings.ToLower(rand.Text())
	build := exec.CommandContext(ctx, "docker", "build", "--build-arg", "VERSION=container-test", "-t", tag, "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("docker", "rmi", "-f", tag).Run() })
	out, err := exec.CommandContext(ctx, "docker", "run", "--rm", tag, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("docker run %s version: %v\n%s", tag, err, out)
	}
	if got := strings.TrimSpace(string(out)); got != "smtpgw container-test" {
		t.Errorf("smtpgw version in the image printed %q", got)
	}
}

func lastLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	return s[strings.LastIndex(s, "\n")+1:]
}
