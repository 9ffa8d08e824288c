package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// The files under deploy/ (docs/deploy.md) are checked here: each parses,
// says what docs/deploy.md relies on, and the logx command line each one
// runs passes `logx node -check`.

const deployDir = "../../deploy"

// checkNode runs `logx node ARGS -check` and requires exit status 0.
func checkNode(t *testing.T, what string, args []string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := cmdNode(context.Background(), append(args, "-check"), nil, &out, &errOut)
	require.Equal(t, 0, code, "%s: logx node %s -check: %s%s", what, strings.Join(args, " "), out.String(), errOut.String())
}

// yamlDocs decodes every document of a YAML file.
func yamlDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var docs []map[string]any
	for {
		var d map[string]any
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			return docs
		}
		require.NoError(t, err, path)
		docs = append(docs, d)
	}
}

// dig follows keys (strings for maps, ints for lists) into v.
func dig(t *testing.T, v any, keys ...any) any {
	t.Helper()
	for _, k := range keys {
		switch k := k.(type) {
		case string:
			m, ok := v.(map[string]any)
			require.True(t, ok, "not a map at %q", k)
			v = m[k]
		case int:
			l, ok := v.([]any)
			require.True(t, ok && k < len(l), "not a list of %d at %d", k+1, k)
			v = l[k]
		}
	}
	return v
}

func strs(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

func TestDeployExampleSettings(t *testing.T) {
	checkNode(t, "deploy/logx.yaml", []string{"-config", filepath.Join(deployDir, "logx.yaml")})
}

func TestDeploySystemd(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(deployDir, "systemd", "logx.service"))
	require.NoError(t, err)
	keys := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "[") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		require.True(t, ok, "not a key=value line: %q", line)
		keys[k] = v
	}
	require.Equal(t, "SIGTERM", keys["KillSignal"])
	require.Contains(t, keys["ExecReload"], "-HUP")
	require.Equal(t, "logx", keys["StateDirectory"])
	// DynamicUser cannot read a key only root may: docs/deploy.md points
	// to the unit's comment on a group for it.
	require.Equal(t, "yes", keys["DynamicUser"])
	require.Contains(t, string(b), "#SupplementaryGroups=logx-tls")
	f := strings.Fields(keys["ExecStart"])
	require.Equal(t, []string{"/usr/local/bin/logx", "node", "-config", "/etc/logx/logx.yaml"}, f)
	// The unit runs the example settings once installed at that path.
	checkNode(t, "ExecStart", []string{"-config", filepath.Join(deployDir, "logx.yaml")})
}

func TestDeployKubernetes(t *testing.T) {
	docs := yamlDocs(t, filepath.Join(deployDir, "k8s", "logx.yaml"))
	byKind := map[string]map[string]any{}
	for _, d := range docs {
		byKind[d["kind"].(string)] = d
	}
	svc, sts, pdb := byKind["Service"], byKind["StatefulSet"], byKind["PodDisruptionBudget"]
	require.NotNil(t, svc)
	require.NotNil(t, sts)
	require.NotNil(t, pdb)
	require.Equal(t, "None", dig(t, svc, "spec", "clusterIP"))
	require.Equal(t, true, dig(t, svc, "spec", "publishNotReadyAddresses"))
	require.Equal(t, "Parallel", dig(t, sts, "spec", "podManagementPolicy"))
	require.Equal(t, dig(t, svc, "metadata", "name"), dig(t, sts, "spec", "serviceName"))
	require.Equal(t, 1, dig(t, pdb, "spec", "maxUnavailable"))
	c := dig(t, sts, "spec", "template", "spec", "containers", 0)
	require.Equal(t, "/readyz", dig(t, c, "readinessProbe", "httpGet", "path"))
	require.Equal(t, "/healthz", dig(t, c, "livenessProbe", "httpGet", "path"))
	// /healthz is served only once New returns: a start longer than the
	// liveness probe's minute is not killed while a startup probe waits.
	require.Equal(t, "/healthz", dig(t, c, "startupProbe", "httpGet", "path"))
	require.GreaterOrEqual(t, dig(t, c, "startupProbe", "periodSeconds").(int)*dig(t, c, "startupProbe", "failureThreshold").(int), 300)
	replicas := dig(t, sts, "spec", "replicas").(int)
	args := strs(dig(t, c, "args"))
	for i := range replicas {
		pod := "logx-" + string(rune('0'+i))
		var a []string
		for _, arg := range args {
			arg = strings.ReplaceAll(arg, "$(POD_NAME)", pod)
			if arg == "-dir=/data" {
				arg = "-dir=" + t.TempDir()
			}
			a = append(a, arg)
		}
		require.Contains(t, strings.Join(a, " "), "-addr="+pod+".logx:20001")
		checkNode(t, pod, a)
	}
}

func TestDeployCompose(t *testing.T) {
	docs := yamlDocs(t, filepath.Join(deployDir, "compose", "compose.yaml"))
	require.Len(t, docs, 1)
	services := dig(t, docs[0], "services").(map[string]any)
	require.Len(t, services, 3)
	for name, s := range services {
		args := strs(dig(t, s, "command"))
		for i, a := range args {
			if a == "/data" {
				args[i] = t.TempDir()
			}
		}
		require.Contains(t, strings.Join(args, " "), "-id "+name+" -addr "+name+":20001")
		checkNode(t, name, args)
	}
}

// TestDeployDockerfile: the image's build command builds a static binary
// from the repository root, and the image runs `logx node`.
func TestDeployDockerfile(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(deployDir, "docker", "Dockerfile"))
	require.NoError(t, err)
	s := string(b)
	require.Contains(t, s, `ENTRYPOINT ["/logx", "node"]`)
	m := regexp.MustCompile(`(?m)^RUN (CGO_ENABLED=0 go build .*) -o /out/logx (\./cmd/logx)$`).FindStringSubmatch(s)
	require.NotNil(t, m, "no go build line of the expected form")
	bin := filepath.Join(t.TempDir(), "logx")
	cmd := exec.Command("sh", "-c", m[1]+" -o "+bin+" "+m[2])
	cmd.Dir = "../.."
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	out, _ = exec.Command("file", bin).CombinedOutput() // where file(1) is installed
	if len(out) > 0 && !strings.Contains(string(out), "No such file") && strings.Contains(string(out), "ELF") {
		require.Contains(t, string(out), "statically linked", "%s", out)
	}
	goMod, err := os.ReadFile("../../go.mod")
	require.NoError(t, err)
	want := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(string(goMod))
	got := regexp.MustCompile(`(?m)^FROM golang:(\d+\.\d+)`).FindStringSubmatch(s)
	require.NotNil(t, got)
	require.GreaterOrEqual(t, minor(got[1]), minor(want[1]), "the builder image's Go is older than go.mod's")
}

func minor(v string) int {
	_, m, _ := strings.Cut(v, ".")
	n := 0
	for _, c := range m {
		n = n*10 + int(c-'0')
	}
	return n
}
