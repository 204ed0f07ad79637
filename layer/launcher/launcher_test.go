package launcher

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kwarp-dev/kwarp/layer/seccomp"
)

func TestLookPath(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	other := filepath.Join(dir, "other")
	for _, d := range []string{bin, other, filepath.Join(bin, "adir")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p string, mode os.FileMode) {
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(bin, "tool"), 0o755)
	write(filepath.Join(bin, "plain"), 0o644)
	write(filepath.Join(other, "plain"), 0o755)
	write(filepath.Join(other, "onlyplain"), 0o644)
	write(filepath.Join(dir, "here"), 0o755)
	t.Chdir(dir)

	tests := []struct {
		name, file, path string
		want             string
		code             int
		msg              string
	}{
		{"found", "tool", bin, filepath.Join(bin, "tool"), 0, ""},
		{"the first executable wins", "plain", bin + ":" + other, filepath.Join(other, "plain"), 0, ""},
		{"only a non-executable match", "onlyplain", bin + ":" + other, "", ExitNotExecutable, "onlyplain: Permission denied"},
		{"not found", "nope", bin + ":" + other, "", ExitNotFound, "nope: command not found"},
		{"empty PATH", "tool", "", "", ExitNotFound, "tool: command not found"},
		{"empty entry is the cwd", "here", bin + "::" + other, "./here", 0, ""},
		{"a directory in PATH is not a command", "adir", bin, "", ExitNotFound, "adir: command not found"},
		{"slash: as is", "./here", "", "./here", 0, ""},
		{"slash: missing", "./missing", bin, "", ExitNotFound, "./missing: No such file or directory"},
		{"slash: not executable", filepath.Join(bin, "plain"), "", "", ExitNotExecutable, filepath.Join(bin, "plain") + ": Permission denied"},
		{"slash: directory", bin, "", "", ExitNotExecutable, bin + ": Is a directory"},
		{"empty name", "", bin, "", ExitNotFound, "'': command not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := lookPath(tt.file, tt.path)
			if tt.code == 0 {
				if err != nil || got != tt.want {
					t.Errorf("lookPath = %q, %v; want %q", got, err, tt.want)
				}
				return
			}
			le, ok := err.(*lookupError)
			if !ok {
				t.Fatalf("lookPath = %q, %v; want exit %d", got, err, tt.code)
			}
			if le.code != tt.code || le.msg != tt.msg {
				t.Errorf("lookPath error = %d %q, want %d %q", le.code, le.msg, tt.code, tt.msg)
			}
		})
	}
}

func TestSetupRoundTrip(t *testing.T) {
	f, err := seccomp.NewFilter(seccomp.FileSyscalls)
	if err != nil {
		t.Fatal(err)
	}
	for _, wk := range []bool{false, true} {
		got, err := decodeSetup(encodeSetup(setup{program: f.Program, waitKillable: wk}))
		if err != nil {
			t.Fatal(err)
		}
		if got.waitKillable != wk || !slices.Equal(got.program, f.Program) {
			t.Errorf("round trip changed the setup (waitKillable %v)", wk)
		}
	}
	good := encodeSetup(setup{program: f.Program})
	bad := map[string][]byte{
		"short":         good[:6],
		"magic":         append([]byte("XXXX"), good[4:]...),
		"flags":         append(append([]byte(magic), 0xff, 0, 0, 0), good[8:]...),
		"torn program":  good[:len(good)-3],
		"empty program": good[:8],
	}
	for name, b := range bad {
		if _, err := decodeSetup(b); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestEnvHelpers(t *testing.T) {
	env := []string{"PATH=/a", "HOME=/root", FDEnv + "=3", "PATH=/b", "PATHX=/c"}
	if got := envValue(env, "PATH"); got != "/b" {
		t.Errorf("envValue = %q, want the last PATH", got)
	}
	if got := envValue(env, "NOPE"); got != "" {
		t.Errorf("envValue of a missing name = %q", got)
	}
	if got := WithoutLauncherEnv(env); slices.ContainsFunc(got, func(kv string) bool { return strings.HasPrefix(kv, FDEnv) }) || len(got) != 4 {
		t.Errorf("WithoutLauncherEnv = %q", got)
	}
}

func TestFromEnv(t *testing.T) {
	t.Setenv(FDEnv, "")
	if _, err := FromEnv(); err == nil {
		t.Error("FromEnv with an empty variable: no error")
	}
	t.Setenv(FDEnv, "1")
	if _, err := FromEnv(); err == nil {
		t.Error("FromEnv naming stdout: no error")
	}
}
