package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Bad input to exec stops before anything touches the cluster or runs the command.
func TestExecUsageErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.hcl")
	if err := os.WriteFile(bad, []byte("fs {\n  mode = \"raed\"\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(dir, "ran")
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"fs mode", []string{"exec", "--fs-mode", "sideways", "--", "touch", marker}, []string{`--fs-mode "sideways"`, "localwithoverrides"}},
		{"no command", []string{"exec"}, []string{"requires at least 1 arg"}},
		{"policy", []string{"exec", "-f", bad, "--", "touch", marker}, []string{"bad.hcl:2:10", "^", "nothing was run"}},
		{"missing policy", []string{"exec", "-f", filepath.Join(dir, "nope.hcl"), "--", "touch", marker}, []string{"nope.hcl", "no such file", "nothing was run"}},
		{"target kind", []string{"exec", "--kubeconfig", "/nonexistent", "-t", "widget/x", "--", "touch", marker}, []string{"widget"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := run(t, tt.args...)
			if code != ExitUsage {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, ExitUsage, errOut)
			}
			if out != "" {
				t.Errorf("stdout %q: it belongs to the command", out)
			}
			for _, w := range tt.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut)
				}
			}
			if _, err := os.Stat(marker); err == nil {
				t.Fatal("the command ran")
			}
		})
	}
}

func TestWithModeKeepsTheBlock(t *testing.T) {
	got := string(withMode([]byte(`{"mode":"read","local":["/x/**"]}`), "write"))
	if !strings.Contains(got, `"mode":"write"`) || !strings.Contains(got, `"/x/**"`) {
		t.Fatalf("withMode = %s", got)
	}
}
