package kwarp_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestForbiddenDependencies keeps small what must stay small: the agent ships alone in an image
// and must not grow the CLI's Kubernetes client, nor the plugin SDK's go-plugin and HCL; the
// layer runs inside the user's process tree and must not either. kwarp itself uses the few API
// groups of kube.Clientset: client-go's full clientset registers every API group at start-up in
// each of kwarp's processes (about 11 MiB each).
func TestForbiddenDependencies(t *testing.T) {
	tests := []struct {
		pkg       string
		forbidden []string
	}{
		{"./cmd/kwarp-agent", []string{"k8s.io/client-go", "github.com/spf13/cobra", "github.com/kwarp-dev/kwarp/cli",
			"github.com/hashicorp/go-plugin", "github.com/hashicorp/hcl/v2"}},
		{"./cmd/kwarp", []string{"k8s.io/client-go/kubernetes"}},
		// the agent container's first process and guard: resident as long as the agent
		{"./cmd/kwarp-agent-init", []string{"google.golang.org/grpc", "google.golang.org/protobuf", "golang.org/x/net",
			"github.com/kwarp-dev/kwarp/agent/api"}},
		{"./agent/...", []string{"k8s.io/client-go", "github.com/spf13/cobra"}},
		{"./layer/...", []string{"k8s.io/client-go", "google.golang.org/grpc"}},
		{"./sdk/...", []string{"github.com/kwarp-dev/kwarp/core", "k8s.io/client-go"}},
	}
	for _, tt := range tests {
		t.Run(tt.pkg, func(t *testing.T) {
			out, err := exec.Command("go", "list", "-deps", tt.pkg).CombinedOutput()
			if err != nil {
				t.Fatalf("go list -deps %s: %v\n%s", tt.pkg, err, out)
			}
			for _, dep := range strings.Fields(string(out)) {
				for _, f := range tt.forbidden {
					if dep == f || strings.HasPrefix(dep, f+"/") {
						t.Errorf("%s depends on %s", tt.pkg, dep)
					}
				}
			}
		})
	}
}
