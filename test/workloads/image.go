package workloads

import (
	"context"
	"fmt"
	"os"

	"github.com/kwarp-dev/kwarp/internal/imagepack"
	"github.com/kwarp-dev/kwarp/test/cluster"
)

// Load builds every binary statically, adds DebianPrograms with their libraries, and loads Image into the cluster's containerd. It always
// rebuilds and re-imports (a few seconds) so tests never run a stale server.
func Load(ctx context.Context, c cluster.Config) error {
	dir, err := os.MkdirTemp("", "kwarp-workloads-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	spec := imagepack.Spec{Ref: Image, Dirs: []string{"/tmp:1777"}}
	for _, b := range Binaries {
		bin, err := cluster.BuildStatic(ctx, PackagePath(b), dir)
		if err != nil {
			return fmt.Errorf("workload image: %w", err)
		}
		spec.Files = append(spec.Files, imagepack.File{Src: bin, Dst: "/" + b})
	}
	debian, err := imagepack.WithLibraries(DebianPrograms)
	if err != nil {
		return fmt.Errorf("workload image: %w (make deps installs the Debian packages the tests use)", err)
	}
	spec.Files = append(spec.Files, debian...)
	if err := c.PackAndLoad(ctx, spec); err != nil {
		return fmt.Errorf("workload image: %w", err)
	}
	return nil
}
