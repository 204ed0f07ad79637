package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kwarp-dev/kwarp/internal/imagepack"
)

// members returns the archive's manifest, config and layer member names.
func members(t *testing.T, archive string) (manifest []map[string]any, config map[string]any, layer []string) {
	t.Helper()
	data, err := os.ReadFile(archive)
	if err != nil {
		t.Fatal(err)
	}
	bodies := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		bodies[h.Name], _ = io.ReadAll(tr)
	}
	if err := json.Unmarshal(bodies["manifest.json"], &manifest); err != nil || len(manifest) != 1 {
		t.Fatalf("manifest.json: %v %s", err, bodies["manifest.json"])
	}
	if err := json.Unmarshal(bodies[manifest[0]["Config"].(string)], &config); err != nil {
		t.Fatalf("config: %v", err)
	}
	lr := tar.NewReader(bytes.NewReader(bodies[manifest[0]["Layers"].([]any)[0].(string)]))
	for {
		h, err := lr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		layer = append(layer, h.Name)
	}
	return manifest, config, layer
}

func TestRun(t *testing.T) {
	dir := t.TempDir()
	agent := filepath.Join(dir, "bin", "kwarp-agent")
	if err := os.MkdirAll(filepath.Dir(agent), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(agent, []byte("agent"), 0o755); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(conf, []byte("x: 1"), 0o644); err != nil {
		t.Fatal(err)
	}

	out := filepath.Join(dir, "dist", "kwarp-agent.tar") // dist/ does not exist yet
	var stderr bytes.Buffer
	code := run([]string{
		"-o", out, "-ref", "kwarp.dev/kwarp-agent:v0.1.0", "-entrypoint", "/kwarp-agent",
		"-cmd", "--v", "-cmd", "2", "-env", "A=1", "-workdir", "/var/lib/kwarp",
		"-dir", "/tmp:1777", "-dir", "/var/lib/kwarp",
		agent, conf + ":/etc/kwarp/agent.yaml",
	}, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	manifest, config, layer := members(t, out)
	if tags := manifest[0]["RepoTags"].([]any); len(tags) != 1 || tags[0] != "kwarp.dev/kwarp-agent:v0.1.0" {
		t.Errorf("RepoTags = %v", tags)
	}
	cc := config["config"].(map[string]any)
	for key, want := range map[string]string{
		"Entrypoint": `["/kwarp-agent"]`,
		"Cmd":        `["--v","2"]`,
		"Env":        `["` + imagepack.DefaultPath + `","A=1"]`,
		"WorkingDir": `"/var/lib/kwarp"`,
	} {
		got, _ := json.Marshal(cc[key])
		if string(got) != want {
			t.Errorf("config %s = %s, want %s", key, got, want)
		}
	}
	wantLayer := []string{"etc/", "etc/kwarp/", "etc/kwarp/agent.yaml", "kwarp-agent", "tmp/", "var/", "var/lib/", "var/lib/kwarp/"}
	if !slices.Equal(layer, wantLayer) {
		t.Errorf("layer = %q, want %q", layer, wantLayer)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(dir, "dist", ".*")); len(leftovers) != 0 {
		t.Errorf("temp files left behind: %v", leftovers)
	}
}

func TestRunLibs(t *testing.T) {
	if _, err := exec.LookPath("ldd"); err != nil {
		t.Skip("ldd not installed")
	}
	ls, err := filepath.EvalSymlinks("/bin/ls")
	if err != nil {
		t.Skip("no /bin/ls")
	}
	libs, err := imagepack.SharedLibraries(ls)
	if err != nil || len(libs) == 0 {
		t.Skipf("/bin/ls is not dynamically linked here (%v)", err)
	}
	out := filepath.Join(t.TempDir(), "ls.tar")
	var stderr bytes.Buffer
	if code := run([]string{"-o", out, "-ref", "kwarp.dev/ls:v1", "-entrypoint", "/ls", "-libs", ls}, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	_, _, layer := members(t, out)
	for _, lib := range libs {
		if !slices.Contains(layer, strings.TrimPrefix(lib, "/")) {
			t.Errorf("layer %q lacks %s", layer, lib)
		}
	}
}

func TestRunErrors(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "prog")
	if err := os.WriteFile(src, []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.tar")
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"unknown flag", []string{"-bogus"}, 2, "usage: imagepack"},
		{"no -o", []string{"-ref", "a:v1", src}, 2, "-o is required"},
		{"no -ref", []string{"-o", out, src}, 2, "-ref is required"},
		{"no SRC", []string{"-o", out, "-ref", "a:v1"}, 2, "no SRC files"},
		{"empty DST", []string{"-o", out, "-ref", "a:v1", src + ":"}, 2, "empty DST"},
		{"empty SRC", []string{"-o", out, "-ref", "a:v1", ":/x"}, 2, "empty SRC"},
		{"latest tag", []string{"-o", out, "-ref", "a:latest", src}, 1, "kubelet always pulls :latest"},
		{"relative DST", []string{"-o", out, "-ref", "a:v1", src + ":prog"}, 1, "absolute"},
		{"missing SRC", []string{"-o", out, "-ref", "a:v1", filepath.Join(dir, "nope")}, 1, "no such file"},
		{"bad dir mode", []string{"-o", out, "-ref", "a:v1", "-dir", "/tmp:999", src}, 1, "octal"},
		{"entrypoint not packed", []string{"-o", out, "-ref", "a:v1", "-entrypoint", "/agent", src}, 1, "/agent is not one of the packed files"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			if code := run(tt.args, &stderr); code != tt.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tt.code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.stderr) {
				t.Errorf("stderr does not mention %q:\n%s", tt.stderr, stderr.String())
			}
			if _, err := os.Stat(out); err == nil {
				t.Errorf("%s was written despite the error", out)
			}
			if leftovers, _ := filepath.Glob(filepath.Join(dir, ".*")); len(leftovers) != 0 {
				t.Errorf("temp files left behind: %v", leftovers)
			}
		})
	}
}

func TestParseFileArg(t *testing.T) {
	tests := []struct {
		arg      string
		src, dst string
	}{
		{"bin/kwarp-agent", "bin/kwarp-agent", "/kwarp-agent"},
		{"bin/kwarp-agent:/usr/bin/agent", "bin/kwarp-agent", "/usr/bin/agent"},
		{"odd:name:/x", "odd:name", "/x"},
	}
	for _, tt := range tests {
		f, err := parseFileArg(tt.arg)
		if err != nil || f.Src != tt.src || f.Dst != tt.dst {
			t.Errorf("parseFileArg(%q) = %+v, %v; want %s -> %s", tt.arg, f, err, tt.src, tt.dst)
		}
	}
}
