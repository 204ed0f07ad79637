package imagepack

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// archive is a parsed docker-archive as the tests need to see it.
type archive struct {
	names    []string // outer tar member names, in order
	manifest []manifestEntry
	config   imageConfig
	rawCfg   []byte
	layerRaw []byte
	layer    []layerEntry
}

type layerEntry struct {
	hdr  *tar.Header
	data []byte
}

func readTar(t *testing.T, data []byte) ([]*tar.Header, map[string][]byte) {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(data))
	var hdrs []*tar.Header
	bodies := map[string][]byte{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read tar: %v", err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("read tar member %s: %v", h.Name, err)
		}
		hdrs = append(hdrs, h)
		bodies[h.Name] = b
	}
	return hdrs, bodies
}

func parseArchive(t *testing.T, data []byte) archive {
	t.Helper()
	var a archive
	hdrs, bodies := readTar(t, data)
	for _, h := range hdrs {
		a.names = append(a.names, h.Name)
	}
	m, ok := bodies["manifest.json"]
	if !ok {
		t.Fatalf("no manifest.json in %v", a.names)
	}
	if err := json.Unmarshal(m, &a.manifest); err != nil {
		t.Fatalf("manifest.json: %v\n%s", err, m)
	}
	if len(a.manifest) != 1 || len(a.manifest[0].Layers) != 1 {
		t.Fatalf("manifest.json: want one image with one layer, got %s", m)
	}
	a.rawCfg, ok = bodies[a.manifest[0].Config]
	if !ok {
		t.Fatalf("config %s not in archive %v", a.manifest[0].Config, a.names)
	}
	if err := json.Unmarshal(a.rawCfg, &a.config); err != nil {
		t.Fatalf("config: %v\n%s", err, a.rawCfg)
	}
	a.layerRaw, ok = bodies[a.manifest[0].Layers[0]]
	if !ok {
		t.Fatalf("layer %s not in archive %v", a.manifest[0].Layers[0], a.names)
	}
	lh, lb := readTar(t, a.layerRaw)
	for _, h := range lh {
		a.layer = append(a.layer, layerEntry{hdr: h, data: lb[h.Name]})
	}
	return a
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func writeSrc(t *testing.T, dir, name, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	// WriteFile's mode is filtered by umask; tests assert exact modes.
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func pack(t *testing.T, s Spec) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Write(&buf, s); err != nil {
		t.Fatalf("Write: %v", err)
	}
	return buf.Bytes()
}

const staticProgram = `package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Println("imagepack test binary", os.Args[1:])
}
`

// buildStatic builds a CGO-free Go program, the shape of kwarp's own
// binaries, into dir and returns its path.
func buildStatic(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("go tool not in PATH: %v", err)
	}
	src := t.TempDir()
	writeSrc(t, src, "go.mod", "module imagepacktest\n\ngo 1.21\n", 0o644)
	writeSrc(t, src, "main.go", staticProgram, 0o644)
	out := filepath.Join(t.TempDir(), "static-test")
	cmd := exec.Command(goTool, "build", "-trimpath", "-o", out, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	return out
}
