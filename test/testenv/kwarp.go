package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/kwarp-dev/kwarp/internal/imagepack"
	"github.com/kwarp-dev/kwarp/version"
)

// KwarpVersion is the version the e2e builds of kwarp and its agent carry. The CLI's default
// agent image is version.AgentImageRepo:KwarpVersion, which AgentImage loads, so the CLI under
// test starts the agent built from the same tree, never a stale image of another build.
const KwarpVersion = "v0.0.0-e2e"

var (
	kwarpOnce sync.Once
	kwarpPath string
	kwarpErr  error

	agentOnce  sync.Once
	agentImage string
	agentErr   error
)

func versionLDFlags() string {
	return "-X github.com/kwarp-dev/kwarp/version.Version=" + KwarpVersion
}

// KwarpBinary builds cmd/kwarp into Bin once per run and returns its path. It also makes sure
// the agent image that binary starts is loaded (AgentImage): a test that runs kwarp needs both.
func KwarpBinary(t testing.TB) string {
	t.Helper()
	AgentImage(t)
	kwarpOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		kwarpPath = filepath.Join(Bin, "kwarp")
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", versionLDFlags(), "-o", kwarpPath,
			"github.com/kwarp-dev/kwarp/cmd/kwarp")
		if out, err := cmd.CombinedOutput(); err != nil {
			kwarpErr = fmt.Errorf("go build cmd/kwarp: %w\n%s", err, out)
		}
	})
	if kwarpErr != nil {
		t.Fatal(kwarpErr)
	}
	return kwarpPath
}

// AgentImage builds cmd/kwarp-agent and cmd/kwarp-agent-init statically with KwarpVersion, packs
// them the way `make image` does and loads the image into the cluster, once per run. It returns
// the image reference.
func AgentImage(t testing.TB) string {
	t.Helper()
	agentOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		dir, err := os.MkdirTemp("", "kwarp-e2e-agent-")
		if err != nil {
			agentErr = err
			return
		}
		defer os.RemoveAll(dir)
		var bins []imagepack.File
		for _, name := range []string{"kwarp-agent", "kwarp-agent-init"} {
			bin := filepath.Join(dir, name)
			cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", versionLDFlags(), "-o", bin,
				"github.com/kwarp-dev/kwarp/cmd/"+name)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				agentErr = fmt.Errorf("go build cmd/%s: %w\n%s", name, err, out)
				return
			}
			bins = append(bins, imagepack.File{Src: bin, Dst: "/" + name})
		}
		ref := version.AgentImageRepo + ":" + KwarpVersion
		// with iptables, as `make image` packs it: the steal tests need the real thing
		xt, err := imagepack.Xtables()
		if err != nil {
			agentErr = fmt.Errorf("agent image: %w", err)
			return
		}
		files, err := imagepack.WithLibraries(append(bins, xt...))
		if err != nil {
			agentErr = fmt.Errorf("agent image: %w", err)
			return
		}
		spec := imagepack.Spec{Ref: ref, Entrypoint: []string{"/kwarp-agent-init"}, Dirs: []string{"/tmp:1777", "/run:0755"}, Files: files}
		if err := Cluster.PackAndLoad(ctx, spec); err != nil {
			agentErr = fmt.Errorf("agent image: %w", err)
			return
		}
		agentImage = ref
	})
	if agentErr != nil {
		t.Fatal(agentErr)
	}
	return agentImage
}
