package cli

import (
	"net"
	"strconv"
	"strings"
	"testing"
)

// Bad input to port-forward stops before the cluster is asked anything: no kubeconfig is
// needed to see these errors.
func TestPortForwardUsageErrors(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	port := strconv.Itoa(taken.Addr().(*net.TCPAddr).Port)
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"nothing to forward", []string{"port-forward", "-t", "deploy/x"}, []string{"give at least one -L"}},
		{"bad spec", []string{"port-forward", "-L", "8080:backend:http"}, []string{`"http" is not a port`, "8080:backend:80"}},
		{"target kind", []string{"port-forward", "-t", "widget/x", "-L", "backend:80"}, []string{"widget"}},
		{"port in use", []string{"port-forward", "--kubeconfig", "/nonexistent", "-L", port + ":backend:80"},
			[]string{"local port " + port + " (tcp) is already in use"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := run(t, tt.args...)
			if code != ExitUsage {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, ExitUsage, errOut)
			}
			if out != "" {
				t.Errorf("stdout %q", out)
			}
			for _, w := range tt.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut)
				}
			}
		})
	}
}
