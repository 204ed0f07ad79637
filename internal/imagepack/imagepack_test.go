package imagepack

import (
	"archive/tar"
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestWriteArchiveLayout(t *testing.T) {
	dir := t.TempDir()
	agent := writeSrc(t, dir, "bin/kwarp-agent", "#agent", 0o755)
	conf := writeSrc(t, dir, "agent.yaml", "conf: 1\n", 0o644)
	real := writeSrc(t, dir, "libfoo.so.1.2.3", "ELF-ish", 0o644)
	link := filepath.Join(dir, "libfoo.so.1")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}

	s := Spec{
		Ref:        "kwarp.dev/kwarp-agent:v0.1.0",
		Entrypoint: []string{"/kwarp-agent"},
		Cmd:        []string{"--log-level", "debug"},
		Env:        []string{"KWARP_MODE=test"},
		WorkingDir: "/var/lib/kwarp",
		Files: []File{
			{Src: agent, Dst: "/kwarp-agent"},
			{Src: conf, Dst: "/etc/kwarp/agent.yaml", Mode: 0o600},
			{Src: link, Dst: "/usr/lib/x86_64-linux-gnu/libfoo.so.1"},
			{Src: agent, Dst: "/usr/local/bin/suid", Mode: 0o755 | os.ModeSetuid},
		},
		Dirs: []string{"/tmp:1777", "/var/lib/kwarp"},
	}
	a := parseArchive(t, pack(t, s))

	layerHex := sha256Hex(a.layerRaw)
	cfgHex := sha256Hex(a.rawCfg)
	wantNames := []string{layerHex + "/", layerHex + "/layer.tar", cfgHex + ".json", "manifest.json"}
	if !slices.Equal(a.names, wantNames) {
		t.Errorf("archive members:\n got %v\nwant %v", a.names, wantNames)
	}
	m := a.manifest[0]
	if m.Config != cfgHex+".json" {
		t.Errorf("manifest Config = %s, want sha256 of config %s.json", m.Config, cfgHex)
	}
	if !slices.Equal(m.RepoTags, []string{s.Ref}) {
		t.Errorf("RepoTags = %v, want [%s]", m.RepoTags, s.Ref)
	}
	if m.Layers[0] != layerHex+"/layer.tar" {
		t.Errorf("Layers = %v, want [%s/layer.tar]", m.Layers, layerHex)
	}

	c := a.config
	if got := c.RootFS; got.Type != "layers" || !slices.Equal(got.DiffIDs, []string{"sha256:" + layerHex}) {
		t.Errorf("rootfs = %+v, want layers with diff_id sha256:%s", got, layerHex)
	}
	if c.Architecture != runtime.GOARCH || c.OS != "linux" {
		t.Errorf("platform = %s/%s, want linux/%s", c.OS, c.Architecture, runtime.GOARCH)
	}
	if !slices.Equal(c.Config.Entrypoint, s.Entrypoint) || !slices.Equal(c.Config.Cmd, s.Cmd) {
		t.Errorf("Entrypoint/Cmd = %q %q, want %q %q", c.Config.Entrypoint, c.Config.Cmd, s.Entrypoint, s.Cmd)
	}
	if want := []string{DefaultPath, "KWARP_MODE=test"}; !slices.Equal(c.Config.Env, want) {
		t.Errorf("Env = %q, want %q", c.Config.Env, want)
	}
	if c.Config.WorkingDir != s.WorkingDir {
		t.Errorf("WorkingDir = %q, want %q", c.Config.WorkingDir, s.WorkingDir)
	}
	if len(c.History) != 1 {
		t.Errorf("history = %+v, want one entry for the one layer", c.History)
	}

	type want struct {
		name string
		typ  byte
		mode int64
		data string
	}
	wantLayer := []want{
		{"etc/", tar.TypeDir, 0o755, ""},
		{"etc/kwarp/", tar.TypeDir, 0o755, ""},
		{"etc/kwarp/agent.yaml", tar.TypeReg, 0o600, "conf: 1\n"},
		{"kwarp-agent", tar.TypeReg, 0o755, "#agent"},
		{"tmp/", tar.TypeDir, 0o1777, ""},
		{"usr/", tar.TypeDir, 0o755, ""},
		{"usr/lib/", tar.TypeDir, 0o755, ""},
		{"usr/lib/x86_64-linux-gnu/", tar.TypeDir, 0o755, ""},
		{"usr/lib/x86_64-linux-gnu/libfoo.so.1", tar.TypeReg, 0o644, "ELF-ish"},
		{"usr/local/", tar.TypeDir, 0o755, ""},
		{"usr/local/bin/", tar.TypeDir, 0o755, ""},
		{"usr/local/bin/suid", tar.TypeReg, 0o4755, "#agent"},
		{"var/", tar.TypeDir, 0o755, ""},
		{"var/lib/", tar.TypeDir, 0o755, ""},
		{"var/lib/kwarp/", tar.TypeDir, 0o755, ""},
	}
	if len(a.layer) != len(wantLayer) {
		var got []string
		for _, e := range a.layer {
			got = append(got, e.hdr.Name)
		}
		t.Fatalf("layer has %d entries %v, want %d", len(a.layer), got, len(wantLayer))
	}
	for i, w := range wantLayer {
		h, data := a.layer[i].hdr, string(a.layer[i].data)
		if h.Name != w.name || h.Typeflag != w.typ || h.Mode != w.mode || data != w.data {
			t.Errorf("layer[%d] = %s type %c mode %#o %q, want %s type %c mode %#o %q",
				i, h.Name, h.Typeflag, h.Mode, data, w.name, w.typ, w.mode, w.data)
		}
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" {
			t.Errorf("layer[%d] %s owner = %d:%d (%q:%q), want 0:0", i, h.Name, h.Uid, h.Gid, h.Uname, h.Gname)
		}
		if !h.ModTime.Equal(time.Unix(0, 0)) {
			t.Errorf("layer[%d] %s mtime = %v, want Unix 0", i, h.Name, h.ModTime)
		}
	}
}

func TestWriteDeterministic(t *testing.T) {
	dir := t.TempDir()
	bin := writeSrc(t, dir, "prog", "program bytes", 0o755)
	lib := writeSrc(t, dir, "lib.so", "library bytes", 0o644)
	s := Spec{
		Ref:        "kwarp.dev/workload:v1",
		Entrypoint: []string{"/prog"},
		Files:      []File{{Src: lib, Dst: "/lib/lib.so"}, {Src: bin, Dst: "/prog"}},
		Dirs:       []string{"/tmp:1777"},
	}
	first := pack(t, s)

	// Source mtimes and list order must not leak into the output.
	later := time.Now().Add(time.Hour)
	for _, p := range []string{bin, lib} {
		if err := os.Chtimes(p, later, later); err != nil {
			t.Fatal(err)
		}
	}
	s.Files[0], s.Files[1] = s.Files[1], s.Files[0]
	second := pack(t, s)
	if !bytes.Equal(first, second) {
		t.Fatalf("two writes of the same inputs differ (%d vs %d bytes)", len(first), len(second))
	}

	if err := os.WriteFile(bin, []byte("other program"), 0o755); err != nil {
		t.Fatal(err)
	}
	third := parseArchive(t, pack(t, s))
	if third.manifest[0].Config == parseArchive(t, first).manifest[0].Config {
		t.Error("changed content kept the same image ID")
	}
}

func TestWriteEnv(t *testing.T) {
	bin := writeSrc(t, t.TempDir(), "prog", "x", 0o755)
	tests := []struct {
		name string
		env  []string
		want []string
	}{
		{"empty gets default PATH", nil, []string{DefaultPath}},
		{"PATH added in front", []string{"A=1", "B="}, []string{DefaultPath, "A=1", "B="}},
		{"own PATH kept", []string{"PATH=/opt/bin", "A=1"}, []string{"PATH=/opt/bin", "A=1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := parseArchive(t, pack(t, Spec{
				Ref: "kwarp.dev/env:v1", Env: tt.env,
				Files: []File{{Src: bin, Dst: "/prog"}},
			}))
			if !slices.Equal(a.config.Config.Env, tt.want) {
				t.Errorf("Env = %q, want %q", a.config.Config.Env, tt.want)
			}
		})
	}
}

func TestWriteValidation(t *testing.T) {
	dir := t.TempDir()
	bin := writeSrc(t, dir, "prog", "x", 0o755)
	other := writeSrc(t, dir, "other", "y", 0o644)
	valid := func() Spec {
		return Spec{
			Ref:        "kwarp.dev/kwarp-agent:v0.1.0",
			Entrypoint: []string{"/prog"},
			Files:      []File{{Src: bin, Dst: "/prog"}},
		}
	}
	tests := []struct {
		name   string
		mutate func(*Spec)
		is     error
		substr string
	}{
		{"latest tag", func(s *Spec) { s.Ref = "kwarp.dev/kwarp-agent:latest" }, ErrLatestTag, "kubelet always pulls :latest"},
		{"no tag", func(s *Spec) { s.Ref = "kwarp.dev/kwarp-agent" }, ErrBadReference, "no tag"},
		{"empty tag", func(s *Spec) { s.Ref = "kwarp.dev/kwarp-agent:" }, ErrBadReference, "no tag"},
		{"registry port but no tag", func(s *Spec) { s.Ref = "localhost:5000/agent" }, ErrBadReference, "no tag"},
		{"empty ref", func(s *Spec) { s.Ref = "" }, ErrBadReference, "empty reference"},
		{"uppercase path", func(s *Spec) { s.Ref = "kwarp.dev/Kwarp-Agent:v1" }, ErrBadReference, "lowercase"},
		{"space in name", func(s *Spec) { s.Ref = "kwarp.dev/kwarp agent:v1" }, ErrBadReference, "is not [domain"},
		{"trailing separator", func(s *Spec) { s.Ref = "kwarp.dev/agent-:v1" }, ErrBadReference, "is not [domain"},
		{"empty component", func(s *Spec) { s.Ref = "kwarp.dev//agent:v1" }, ErrBadReference, "is not [domain"},
		{"bad tag", func(s *Spec) { s.Ref = "kwarp.dev/agent:-v1" }, ErrBadReference, "tag \"-v1\""},
		{"long tag", func(s *Spec) { s.Ref = "kwarp.dev/agent:" + strings.Repeat("a", 129) }, ErrBadReference, "tag"},
		{"long name", func(s *Spec) { s.Ref = strings.Repeat("a", 256) + ":v1" }, ErrBadReference, "more than 255"},
		{"digest", func(s *Spec) { s.Ref = "kwarp.dev/agent@sha256:" + strings.Repeat("0", 64) }, ErrBadReference, "digest"},
		{"relative Dst", func(s *Spec) { s.Files[0].Dst = "prog" }, ErrBadPath, `"prog" must be an absolute, clean path`},
		{"unclean Dst", func(s *Spec) { s.Files = append(s.Files, File{Src: other, Dst: "/etc/../other"}) }, ErrBadPath, "clean"},
		{"trailing slash Dst", func(s *Spec) { s.Files = append(s.Files, File{Src: other, Dst: "/etc/"}) }, ErrBadPath, "clean"},
		{"root Dst", func(s *Spec) { s.Files = append(s.Files, File{Src: other, Dst: "/"}) }, ErrBadPath, "image root"},
		{"duplicate Dst", func(s *Spec) { s.Files = append(s.Files, File{Src: other, Dst: "/prog"}) }, ErrDuplicatePath, "already used by file " + bin},
		{"Dst equals Dir", func(s *Spec) { s.Dirs = []string{"/prog"} }, ErrDuplicatePath, "already used by directory"},
		{"file where dir needed", func(s *Spec) { s.Files = append(s.Files, File{Src: other, Dst: "/prog/other"}) }, ErrDuplicatePath, "needs it to be a directory"},
		{"duplicate Dir", func(s *Spec) { s.Dirs = []string{"/tmp", "/tmp:1777"} }, ErrDuplicatePath, "listed twice"},
		{"relative Dir", func(s *Spec) { s.Dirs = []string{"tmp:1777"} }, ErrBadPath, "absolute"},
		{"bad Dir mode", func(s *Spec) { s.Dirs = []string{"/tmp:1778"} }, ErrBadMode, "octal"},
		{"Dir mode too big", func(s *Spec) { s.Dirs = []string{"/tmp:17777"} }, ErrBadMode, "octal"},
		{"missing Src", func(s *Spec) { s.Files[0].Src = filepath.Join(dir, "nope") }, fs.ErrNotExist, "nope"},
		{"Src is a directory", func(s *Spec) { s.Files[0].Src = dir }, ErrNotRegular, "is d"},
		{"raw octal setuid", func(s *Spec) { s.Files[0].Mode = 0o4755 }, ErrBadMode, "os.ModeSetuid"},
		{"type bits in Mode", func(s *Spec) { s.Files[0].Mode = os.ModeDir | 0o755 }, ErrBadMode, "beyond permissions"},
		{"relative WorkingDir", func(s *Spec) { s.WorkingDir = "work" }, ErrBadPath, "working dir"},
		{"Env without =", func(s *Spec) { s.Env = []string{"FOO"} }, nil, "KEY=VALUE"},
		{"entrypoint not packed", func(s *Spec) { s.Entrypoint = []string{"/kwarp-agent"} }, ErrBadPath, "program /kwarp-agent is not one of the packed files"},
		{"cmd not packed", func(s *Spec) { s.Entrypoint = nil; s.Cmd = []string{"/bin/sh", "-c", "x"} }, ErrBadPath, "program /bin/sh"},
		{"entrypoint is a dir", func(s *Spec) { s.Entrypoint = []string{"/tmp"}; s.Dirs = []string{"/tmp"} }, ErrBadPath, "program /tmp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := valid()
			tt.mutate(&s)
			var buf bytes.Buffer
			err := Write(&buf, s)
			if err == nil {
				t.Fatal("Write succeeded, want error")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %q is not %v", err, tt.is)
			}
			if !strings.Contains(err.Error(), tt.substr) {
				t.Errorf("error %q does not mention %q", err, tt.substr)
			}
			if !strings.HasPrefix(err.Error(), "pack "+s.Ref+": ") {
				t.Errorf("error %q does not start with %q", err, "pack "+s.Ref+": ")
			}
			if buf.Len() != 0 {
				t.Errorf("validation error after writing %d bytes; output must be untouched", buf.Len())
			}
		})
	}
}

func TestCheckRefValid(t *testing.T) {
	for _, ref := range []string{
		"kwarp.dev/kwarp-agent:v0.1.0",
		"redis:7.2.4",
		"localhost:5000/team/app:1",
		"Registry.Example.com/app:v1", // domains may be upper case
		"[::1]:5000/app:v1",
		"a_b__c-d--e.f/g:V1_x.y-z",
		"kwarp.dev/agent:LATEST", // kubelet only special-cases exactly "latest"
	} {
		if err := checkRef(ref); err != nil {
			t.Errorf("checkRef(%q) = %v, want nil", ref, err)
		}
	}
}

func TestWriteStaticBinaryRoundTrip(t *testing.T) {
	bin := buildStatic(t)
	want, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	a := parseArchive(t, pack(t, Spec{
		Ref:        "kwarp.dev/static-test:v1",
		Entrypoint: []string{"/static-test"},
		Files:      []File{{Src: bin, Dst: "/static-test"}},
	}))
	if len(a.layer) != 1 || a.layer[0].hdr.Name != "static-test" || !bytes.Equal(a.layer[0].data, want) {
		t.Fatalf("layer does not hold exactly the binary")
	}
	if a.layer[0].hdr.Mode&0o111 == 0 {
		t.Errorf("binary mode %#o is not executable", a.layer[0].hdr.Mode)
	}
}
