package cli

import (
	"strings"
	"testing"

	"github.com/kwarp-dev/kwarp/version"
)

func TestCheckString(t *testing.T) {
	tests := []struct {
		c    Check
		want string
	}{
		{Check{Status: CheckOK, What: "API server https://x reachable"}, "OK   API server https://x reachable"},
		{Check{Status: CheckFail, What: "RBAC create jobs.batch", Fix: "ask a cluster admin"}, "FAIL RBAC create jobs.batch — ask a cluster admin"},
		{Check{Status: CheckInfo, What: "kernel: checked when `kwarp exec` lands", Fix: "ignored"}, "INFO kernel: checked when `kwarp exec` lands"},
	}
	for _, tt := range tests {
		if got := tt.c.String(); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
}

func TestPermissionsCoverWhatKwarpCalls(t *testing.T) {
	var got []string
	for _, p := range permissions {
		got = append(got, p.String())
	}
	for _, want := range []string{"get pods", "list pods", "get deployments.apps", "get statefulsets.apps", "get jobs.batch",
		"create jobs.batch", "delete jobs.batch", "create pods/portforward", "update pods/ephemeralcontainers", "get pods/log", "list events"} {
		found := false
		for _, g := range got {
			found = found || g == want
		}
		if !found {
			t.Errorf("doctor does not check %q (checks %v)", want, got)
		}
	}
}

func TestDoctorUnreachable(t *testing.T) {
	path, server := refusedKubeconfig(t)
	t.Setenv(version.AgentImageEnv, "")
	code, out, errOut := run(t, "--kubeconfig", path, "doctor")
	if code != ExitCluster {
		t.Errorf("exit %d, want %d (stderr %q)", code, ExitCluster, errOut)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if !strings.Contains(l, " kernel ") { // the kernel's lines depend on the machine
			lines = append(lines, l)
		}
	}
	want := []string{
		"OK   agent image " + version.DefaultAgentImage() + " (this release's default)",
		"FAIL API server " + server + ": cannot reach the API server at " + server,
	}
	if len(lines) != len(want) {
		t.Fatalf("doctor printed\n%s\nwant %d lines", out, len(want))
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d %q\nwant prefix %q", i, lines[i], w)
		}
	}
	if !strings.Contains(lines[1], " — ") {
		t.Errorf("FAIL line without what to do: %q", lines[1])
	}
}

func TestDoctorKernelHook(t *testing.T) {
	old := kernelCheck
	t.Cleanup(func() { kernelCheck = old })
	kernelCheck = func() []Check { return []Check{{Status: CheckOK, What: "kernel 6.8: seccomp user notification"}} }
	path, _ := refusedKubeconfig(t)
	_, out, _ := run(t, "--kubeconfig", path, "doctor")
	if !strings.HasPrefix(out, "OK   kernel 6.8: seccomp user notification\n") {
		t.Errorf("kernelCheck's lines not printed first:\n%s", out)
	}
}
