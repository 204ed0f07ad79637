package cli

import (
	"bytes"
	"strings"
	"testing"

	"github.com/kwarp-dev/kwarp/version"
)

func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Execute(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestVersion(t *testing.T) {
	code, out, errOut := run(t, "version")
	if code != ExitOK {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	for _, want := range []string{version.Version, "commit: " + version.Commit, "agent image: " + version.DefaultAgentImage(), "go: go1."} {
		if !strings.Contains(out, want) {
			t.Errorf("version output lacks %q:\n%s", want, out)
		}
	}
}

func TestUsageErrorsExit2(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"unknown flag", []string{"version", "--nope"}, "unknown flag: --nope"},
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"extra argument", []string{"version", "extra"}, "unknown command"},
		{"bad log level", []string{"--log-level", "loud", "version"}, `unknown log level "loud"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := run(t, tt.args...)
			if code != ExitUsage {
				t.Errorf("exit %d, want %d (stderr %q)", code, ExitUsage, errOut)
			}
			if out != "" {
				t.Errorf("stdout %q, want nothing: stdout belongs to the user's command", out)
			}
			if !strings.Contains(errOut, tt.wantErr) {
				t.Errorf("stderr %q lacks %q", errOut, tt.wantErr)
			}
		})
	}
}

func TestBadLogLevelFromEnv(t *testing.T) {
	t.Setenv("KWARP_LOG", "shouty")
	code, _, errOut := run(t, "version")
	if code != ExitUsage || !strings.Contains(errOut, "KWARP_LOG") {
		t.Fatalf("exit %d, stderr %q: want exit 2 naming KWARP_LOG", code, errOut)
	}
}

func TestKubectlFlagsAccepted(t *testing.T) {
	code, _, errOut := run(t, "--kubeconfig", "/nonexistent", "--context", "c", "-n", "ns", "--log-level", "debug", "version")
	if code != ExitOK {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}
