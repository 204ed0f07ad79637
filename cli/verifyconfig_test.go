package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writePolicy(t *testing.T, src string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kwarp.hcl")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestVerifyConfig(t *testing.T) {
	clean := writePolicy(t, "target \"deploy\" \"checkout\" {\n  namespace = \"staging\"\n}\nfs {\n  mode = \"read\"\n}\n")
	bad := writePolicy(t, "fs {\n  mode = \"raed\"\n}\nnetwrok {}\n")
	warn := writePolicy(t, "network {\n  outgoing {\n    filter \"remote\" { subnets = [\"10.96.0.1/12\"] }\n  }\n}\n")
	tests := []struct {
		name     string
		args     []string
		code     int
		stderr   []string
		noStderr []string
	}{
		{"clean", []string{"verify-config", "-f", clean}, ExitOK, []string{clean + ": ok\n"}, []string{"error", "warning"}},
		{"long flag", []string{"verify-config", "--policy", clean}, ExitOK, []string{clean + ": ok\n"}, nil},
		{"design example: a warning is not a failure", []string{"verify-config", "-f", "../config/testdata/full.hcl"}, ExitOK,
			[]string{"../config/testdata/full.hcl:58:12: warning: Invalid SHA-256 checksum", "../config/testdata/full.hcl: ok (1 warning)"}, []string{"error"}},
		{"warning", []string{"verify-config", "-f", warn}, ExitOK, []string{warn + ":3:34: warning: Subnet has host bits set", "ok (1 warning)"}, nil},
		{"errors", []string{"verify-config", "-f", bad}, ExitUsage, []string{
			bad + ":2:10: error: Invalid value for \"mode\"",
			"  on " + bad + " line 2, in fs:\n     2:   mode = \"raed\"\n                 ^^^^^^\n",
			`Did you mean "read"?`,
			bad + ":4:1: error: Unsupported block type",
			`Did you mean "network"?`,
			"kwarp: " + bad + ": 2 errors",
		}, []string{": ok"}},
		{"missing file", []string{"verify-config", "-f", "/nonexistent/kwarp.hcl"}, ExitUsage, []string{"Cannot read the policy file", "/nonexistent/kwarp.hcl"}, nil},
		{"extra argument", []string{"verify-config", "x.hcl"}, ExitUsage, []string{"unknown command"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := run(t, tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d\n%s", code, tt.code, errOut)
			}
			if out != "" {
				t.Errorf("stdout %q, want nothing", out)
			}
			for _, want := range tt.stderr {
				if !strings.Contains(errOut, want) {
					t.Errorf("stderr lacks %q:\n%s", want, errOut)
				}
			}
			for _, not := range tt.noStderr {
				if strings.Contains(errOut, not) {
					t.Errorf("stderr has %q:\n%s", not, errOut)
				}
			}
		})
	}
}

func TestVerifyConfigDefaultPath(t *testing.T) {
	t.Chdir(t.TempDir())
	code, _, errOut := run(t, "verify-config")
	if code != ExitUsage || !strings.Contains(errOut, "pass -f FILE, or create .kwarp/kwarp.hcl") {
		t.Fatalf("no policy: exit %d, stderr %q", code, errOut)
	}
	if err := os.MkdirAll(".kwarp", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(".kwarp/kwarp.hcl", []byte("dns { enabled = false }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = run(t, "verify-config")
	if code != ExitOK || errOut != ".kwarp/kwarp.hcl: ok\n" {
		t.Fatalf("default policy: exit %d, stderr %q", code, errOut)
	}
}
