// Package kubernetes holds the manifests; its test checks that they agree
// with the configuration they carry, as the real loader reads it.
package kubernetes

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/smtpgw/smtpgw/internal/config"
)

// The parts of the manifests the checks read.
type (
	kustomization struct {
		Resources          []string `json:"resources"`
		ConfigMapGenerator []struct {
			Name  string   `json:"name"`
			Files []string `json:"files"`
		} `json:"configMapGenerator"`
		Patches []struct {
			Patch string `json:"patch"`
		} `json:"patches"`
	}
	object struct {
		Kind     string `json:"kind"`
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	statefulSet struct {
		Spec struct {
			Replicas int `json:"replicas"`
			Selector struct {
				MatchLabels map[string]string `json:"matchLabels"`
			} `json:"selector"`
			Template struct {
				Metadata struct {
					Labels      map[string]string `json:"labels"`
					Annotations map[string]string `json:"annotations"`
				} `json:"metadata"`
				Spec podSpec `json:"spec"`
			} `json:"template"`
			VolumeClaimTemplates []object `json:"volumeClaimTemplates"`
		} `json:"spec"`
	}
	podSpec struct {
		TerminationGracePeriodSeconds int         `json:"terminationGracePeriodSeconds"`
		Containers                    []container `json:"containers"`
		Volumes                       []struct {
			Name      string `json:"name"`
			ConfigMap *struct {
				Name string `json:"name"`
			} `json:"configMap"`
		} `json:"volumes"`
	}
	container struct {
		Args []string `json:"args"`
		Env  []struct {
			Name      string `json:"name"`
			ValueFrom struct {
				SecretKeyRef struct {
					Name string `json:"name"`
				} `json:"secretKeyRef"`
			} `json:"valueFrom"`
		} `json:"env"`
		Ports []struct {
			Name          string `json:"name"`
			ContainerPort int    `json:"containerPort"`
		} `json:"ports"`
		ReadinessProbe probe `json:"readinessProbe"`
		LivenessProbe  probe `json:"livenessProbe"`
		VolumeMounts   []struct {
			Name      string `json:"name"`
			MountPath string `json:"mountPath"`
		} `json:"volumeMounts"`
	}
	probe struct {
		HTTPGet struct {
			Path string `json:"path"`
			Port string `json:"port"` // a container port's name
		} `json:"httpGet"`
	}
	service struct {
		Spec struct {
			Type                  string            `json:"type"`
			ExternalTrafficPolicy string            `json:"externalTrafficPolicy"`
			Selector              map[string]string `json:"selector"`
			Ports                 []struct {
				Port       int    `json:"port"`
				TargetPort string `json:"targetPort"`
			} `json:"ports"`
		} `json:"spec"`
	}
	podDisruptionBudget struct {
		Spec struct {
			MaxUnavailable int `json:"maxUnavailable"`
			Selector       struct {
				MatchLabels map[string]string `json:"matchLabels"`
			} `json:"selector"`
		} `json:"spec"`
	}
)

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// base is the base kustomization's resources by kind and name, and the
// configuration its ConfigMap carries.
type base struct {
	dir       string
	kust      kustomization
	files     map[string]string // "Kind/name" → file
	configMap string            // the generated ConfigMap's name
	tomlFile  string            // the file it carries
}

func loadBase(t *testing.T) base {
	b := base{dir: "base", files: map[string]string{}}
	readYAML(t, filepath.Join(b.dir, "kustomization.yaml"), &b.kust)
	for _, r := range b.kust.Resources {
		var o object
		readYAML(t, filepath.Join(b.dir, r), &o)
		b.files[o.Kind+"/"+o.Metadata.Name] = filepath.Join(b.dir, r)
	}
	if len(b.kust.ConfigMapGenerator) != 1 || len(b.kust.ConfigMapGenerator[0].Files) != 1 {
		t.Fatalf("want one generated ConfigMap with one file, have %+v", b.kust.ConfigMapGenerator)
	}
	b.configMap = b.kust.ConfigMapGenerator[0].Name
	b.tomlFile = b.kust.ConfigMapGenerator[0].Files[0]
	return b
}

func (b base) read(t *testing.T, kindName string, v any) {
	t.Helper()
	path, ok := b.files[kindName]
	if !ok {
		t.Fatalf("no %s among the base resources", kindName)
	}
	readYAML(t, path, v)
}

// parseConfig reads a TOML file with the real loader.
func parseConfig(t *testing.T, path string) *config.Config {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(data, path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func port(t *testing.T, address string) int {
	t.Helper()
	i := strings.LastIndex(address, ":")
	p, err := strconv.Atoi(address[i+1:])
	if err != nil {
		t.Fatalf("address %q: %v", address, err)
	}
	return p
}

func TestManifestsAgreeWithTheirConfig(t *testing.T) {
	b := loadBase(t)
	var sts statefulSet
	b.read(t, "StatefulSet/smtpgw", &sts)
	if len(sts.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("want one container, have %d", len(sts.Spec.Template.Spec.Containers))
	}
	pod := sts.Spec.Template.Spec
	c := pod.Containers[0]

	// The secret reaches the gateway as SMTPGW_CLIENT_SECRET from the
	// Secret the kustomization creates; the loader needs it set.
	var secretName string
	for _, e := range c.Env {
		if e.Name == config.ClientSecretEnv {
			secretName = e.ValueFrom.SecretKeyRef.Name
		}
	}
	if _, ok := b.files["Secret/"+secretName]; !ok {
		t.Errorf("%s comes from Secret %q, which the base does not create", config.ClientSecretEnv, secretName)
	}
	t.Setenv(config.ClientSecretEnv, "from-the-secret")
	cfg := parseConfig(t, filepath.Join(b.dir, b.tomlFile))

	// The container reads the ConfigMap's file where the ConfigMap is mounted.
	i := slices.Index(c.Args, "-config")
	if i < 0 || i+1 == len(c.Args) {
		t.Fatalf("container args %q name no -config", c.Args)
	}
	configPath := c.Args[i+1]
	if filepath.Base(configPath) != b.tomlFile {
		t.Errorf("-config %s, but the ConfigMap carries %s", configPath, b.tomlFile)
	}
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	var configVolume string
	for _, v := range pod.Volumes {
		if v.ConfigMap != nil && v.ConfigMap.Name == b.configMap {
			configVolume = v.Name
		}
	}
	if mounts[configVolume] != filepath.Dir(configPath) {
		t.Errorf("ConfigMap %s mounted at %q, -config is %s", b.configMap, mounts[configVolume], configPath)
	}

	// Each replica's spool is its own claim, mounted where [queue] dir is.
	if len(sts.Spec.VolumeClaimTemplates) != 1 {
		t.Fatalf("want one volume claim template (the spool), have %d", len(sts.Spec.VolumeClaimTemplates))
	}
	if claim := sts.Spec.VolumeClaimTemplates[0].Metadata.Name; mounts[claim] != cfg.Queue.Dir {
		t.Errorf("spool claim %s mounted at %q, [queue] dir is %s", claim, mounts[claim], cfg.Queue.Dir)
	}

	// Container ports: every listener, and the metrics endpoint the probes use.
	portByName := map[string]int{}
	var containerPorts []int
	for _, p := range c.Ports {
		portByName[p.Name] = p.ContainerPort
		containerPorts = append(containerPorts, p.ContainerPort)
	}
	var listenerPorts []int
	for _, l := range cfg.Listeners {
		listenerPorts = append(listenerPorts, port(t, l.Address))
	}
	metricsPort := port(t, cfg.Metrics.Address)
	want := append(slices.Clone(listenerPorts), metricsPort)
	slices.Sort(want)
	slices.Sort(containerPorts)
	if !slices.Equal(containerPorts, want) {
		t.Errorf("container ports %v, configuration listens on %v", containerPorts, want)
	}
	// Prometheus finds the metrics through the pods' scrape annotations.
	if a := sts.Spec.Template.Metadata.Annotations; a["prometheus.io/scrape"] != "true" ||
		a["prometheus.io/port"] != strconv.Itoa(metricsPort) || a["prometheus.io/path"] != "/metrics" {
		t.Errorf("pod scrape annotations %v, want /metrics on the metrics port %d", a, metricsPort)
	}
	for _, pr := range []struct {
		name string
		p    probe
		path string
	}{{"readiness", c.ReadinessProbe, "/readyz"}, {"liveness", c.LivenessProbe, "/healthz"}} {
		if pr.p.HTTPGet.Path != pr.path || portByName[pr.p.HTTPGet.Port] != metricsPort {
			t.Errorf("%s probe %s on port %q (%d), want %s on the metrics port %d",
				pr.name, pr.p.HTTPGet.Path, pr.p.HTTPGet.Port, portByName[pr.p.HTTPGet.Port], pr.path, metricsPort)
		}
	}

	// The LoadBalancer exposes exactly the SMTP listeners, on their own ports.
	var svc service
	b.read(t, "Service/smtpgw", &svc)
	if svc.Spec.Type != "LoadBalancer" || svc.Spec.ExternalTrafficPolicy != "Local" {
		t.Errorf("Service type %q, externalTrafficPolicy %q; want LoadBalancer keeping client addresses (Local)",
			svc.Spec.Type, svc.Spec.ExternalTrafficPolicy)
	}
	var exposed []int
	for _, p := range svc.Spec.Ports {
		if portByName[p.TargetPort] != p.Port {
			t.Errorf("Service port %d goes to %q (container port %d)", p.Port, p.TargetPort, portByName[p.TargetPort])
		}
		exposed = append(exposed, p.Port)
	}
	slices.Sort(exposed)
	slices.Sort(listenerPorts)
	if !slices.Equal(exposed, listenerPorts) {
		t.Errorf("Service exposes %v, listeners are on %v", exposed, listenerPorts)
	}
	if !matches(svc.Spec.Selector, sts.Spec.Template.Metadata.Labels) {
		t.Errorf("Service selector %v does not select the pods %v", svc.Spec.Selector, sts.Spec.Template.Metadata.Labels)
	}

	// SIGTERM must have shutdown_timeout to finish before the kill.
	if grace := pod.TerminationGracePeriodSeconds; grace <= int(cfg.Server.ShutdownTimeout.D().Seconds()) {
		t.Errorf("terminationGracePeriodSeconds %d is not above shutdown_timeout %s", grace, cfg.Server.ShutdownTimeout.D())
	}
	// Graph's 4 concurrent requests per mailbox are shared by all replicas.
	if n := cfg.Queue.MailboxConcurrency * sts.Spec.Replicas; n > 4 {
		t.Errorf("mailbox_concurrency %d × %d replicas = %d requests per mailbox, Graph allows 4",
			cfg.Queue.MailboxConcurrency, sts.Spec.Replicas, n)
	}

	var pdb podDisruptionBudget
	b.read(t, "PodDisruptionBudget/smtpgw", &pdb)
	if pdb.Spec.MaxUnavailable < 1 || pdb.Spec.MaxUnavailable >= sts.Spec.Replicas ||
		!matches(pdb.Spec.Selector.MatchLabels, sts.Spec.Template.Metadata.Labels) {
		t.Errorf("PodDisruptionBudget %+v does not keep replicas up while allowing drains", pdb.Spec)
	}
}

// The workload-identity overlay runs without any secret: its configuration
// loads with no SMTPGW_CLIENT_SECRET, asks for the workload identity, and the
// overlay removes the variable and the Secret from the base.
func TestWorkloadIdentityOverlay(t *testing.T) {
	b := loadBase(t)
	t.Setenv(config.ClientSecretEnv, "x")
	baseCfg := parseConfig(t, filepath.Join(b.dir, b.tomlFile))
	t.Setenv(config.ClientSecretEnv, "")
	var overlay kustomization
	readYAML(t, filepath.Join("workload-identity", "kustomization.yaml"), &overlay)
	if !slices.Contains(overlay.Resources, "../base") {
		t.Fatalf("overlay resources %v do not build on ../base", overlay.Resources)
	}
	if len(overlay.ConfigMapGenerator) != 1 || overlay.ConfigMapGenerator[0].Name != b.configMap ||
		!slices.Equal(overlay.ConfigMapGenerator[0].Files, []string{b.tomlFile}) {
		t.Fatalf("overlay must replace ConfigMap %s's %s, has %+v", b.configMap, b.tomlFile, overlay.ConfigMapGenerator)
	}
	cfg := parseConfig(t, filepath.Join("workload-identity", b.tomlFile))
	if cfg.Graph == nil || !cfg.Graph.ManagedIdentity {
		t.Errorf("overlay configuration does not use the workload identity")
	}
	if cfg.Queue.Dir != baseCfg.Queue.Dir || cfg.Metrics.Address != baseCfg.Metrics.Address ||
		len(cfg.Listeners) != len(baseCfg.Listeners) || cfg.Server.ShutdownTimeout != baseCfg.Server.ShutdownTimeout {
		t.Errorf("overlay configuration differs from the base beyond [graph]: the base's probes, ports and mounts would not fit")
	}
	var patches strings.Builder
	for _, p := range overlay.Patches {
		patches.WriteString(p.Patch)
	}
	for _, want := range []string{"azure.workload.identity/client-id", "azure.workload.identity~1use", "/spec/template/spec/containers/0/env", "$patch: delete"} {
		if !strings.Contains(patches.String(), want) {
			t.Errorf("overlay patches lack %q", want)
		}
	}
}

func matches(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}
