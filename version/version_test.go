package version

import (
	"strings"
	"testing"
)

func TestImageTag(t *testing.T) {
	tests := []struct{ in, want string }{
		{"v0.1.0", "v0.1.0"},
		{"v0.1.0-3-gabc1234+dirty", "v0.1.0-3-gabc1234-dirty"},
		{"", "dev"},
		{"latest", "dev-latest"},
		{"-x", "v-x"},
		{strings.Repeat("a", 200), strings.Repeat("a", 128)},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := imageTag(tt.in); got != tt.want {
				t.Errorf("imageTag(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestAgentImageEnvWins(t *testing.T) {
	t.Setenv(AgentImageEnv, "")
	if got := AgentImage(); got != DefaultAgentImage() {
		t.Fatalf("AgentImage() = %q without override, want default %q", got, DefaultAgentImage())
	}
	t.Setenv(AgentImageEnv, "example.test/agent:7")
	if got := AgentImage(); got != "example.test/agent:7" {
		t.Fatalf("AgentImage() = %q, want the override", got)
	}
}

func TestDefaultAgentImageNeverLatest(t *testing.T) {
	old := Version
	defer func() { Version = old }()
	Version = "latest"
	if strings.HasSuffix(DefaultAgentImage(), ":latest") {
		t.Fatalf("DefaultAgentImage() = %q: a latest tag makes the kubelet pull", DefaultAgentImage())
	}
}
