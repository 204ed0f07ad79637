package kube

import (
	"errors"
	"strings"
	"testing"

	"k8s.io/client-go/util/exec"
)

func TestExecError(t *testing.T) {
	cmd := []string{"/probe", "--dial", "10.0.0.1:80"}
	err := execError(cmd, podRef("ns1", "client", "app"), "dial tcp: connection refused\n",
		exec.CodeExitError{Err: errors.New("command terminated with exit code 3"), Code: 3})
	want := `kube: exec ["/probe" "--dial" "10.0.0.1:80"] in pod ns1/client container app: exit code 3: stderr: dial tcp: connection refused: command terminated with exit code 3`
	if err.Error() != want {
		t.Errorf("error = %q\nwant      %q", err, want)
	}
	var exitErr exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitStatus() != 3 {
		t.Errorf("errors.As(ExitError) = %v, want exit status 3 reachable", exitErr)
	}

	// A command that never ran has no exit code to report, and no stderr.
	err = execError([]string{"/nonexistent"}, podRef("ns1", "p", ""), "", errors.New(`exec: "/nonexistent": no such file or directory`))
	if s := err.Error(); strings.Contains(s, "exit code") || strings.Contains(s, "stderr") || !strings.Contains(s, "in pod ns1/p: exec:") {
		t.Errorf("error = %q", s)
	}
}
