// Package version holds what a kwarp build knows about itself: its version, the commit it was
// built from, and the agent image that release runs in the cluster. The Makefile sets the
// variables with -ldflags so the CLI and the agent it starts always agree on one image.
package version

import (
	"fmt"
	"os"
	"runtime"
)

// Set at link time by the Makefile (-X). The defaults describe a `go build` outside make.
var (
	Version = "v0.0.0-dev"
	Commit  = "unknown"
	// AgentImageRepo is the image name without tag; the tag is the release's version so a CLI
	// never starts an agent of another release.
	AgentImageRepo = "kwarp.dev/kwarp-agent"
)

// AgentImageEnv overrides the default agent image (the policy's agent.image wins over both).
const AgentImageEnv = "KWARP_AGENT_IMAGE"

// DefaultAgentImage is the image reference this build starts agents with. Its tag is never
// "latest": the kubelet always pulls "latest", and our images come from no registry.
func DefaultAgentImage() string {
	return AgentImageRepo + ":" + imageTag(Version)
}

// AgentImage is the image to run: KWARP_AGENT_IMAGE when set, else DefaultAgentImage.
func AgentImage() string {
	if v := os.Getenv(AgentImageEnv); v != "" {
		return v
	}
	return DefaultAgentImage()
}

// imageTag turns a version into a valid image tag: [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}.
// git describe output ("v0.1.0-3-gabc+dirty") may carry '+', which tags do not allow.
func imageTag(v string) string {
	b := []byte(v)
	for i, c := range b {
		ok := c == '_' || c == '.' || c == '-' ||
			(c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
		if !ok {
			b[i] = '-'
		}
	}
	if len(b) == 0 {
		return "dev"
	}
	if b[0] == '.' || b[0] == '-' {
		b = append([]byte("v"), b...)
	}
	if len(b) > 128 {
		b = b[:128]
	}
	if string(b) == "latest" {
		return "dev-latest"
	}
	return string(b)
}

// String is the multi-line text `kwarp version` prints.
func String(program string) string {
	return fmt.Sprintf("%s %s\ncommit: %s\nagent image: %s\ngo: %s %s/%s\n",
		program, Version, Commit, DefaultAgentImage(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
