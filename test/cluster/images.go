package cluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/kwarp-dev/kwarp/internal/imagepack"
)

// HasImage reports whether the cluster's containerd has an image with this reference.
func (c Config) HasImage(ctx context.Context, ref string) (bool, error) {
	out, err := exec.CommandContext(ctx, "ctr", "-a", c.ContainerdSocket(), "-n", "k8s.io", "images", "ls", "-q").Output()
	if err != nil {
		return false, fmt.Errorf("list images in the cluster's containerd: %w", err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.TrimSpace(l) == ref || strings.TrimSpace(l) == "docker.io/"+ref {
			return true, nil
		}
	}
	return false, nil
}

// LoadImage imports an image archive (docker-archive, as imagepack writes) into the cluster.
func (c Config) LoadImage(ctx context.Context, archive string) error {
	return imagepack.Import(ctx, "ctr", c.ContainerdSocket(), archive)
}

// PackAndLoad packs the files into an image and imports it.
func (c Config) PackAndLoad(ctx context.Context, spec imagepack.Spec) error {
	dir, err := os.MkdirTemp("", "kwarp-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	archive := filepath.Join(dir, "image.tar")
	f, err := os.Create(archive)
	if err != nil {
		return err
	}
	if err := imagepack.Write(f, spec); err != nil {
		f.Close()
		return fmt.Errorf("pack %s: %w", spec.Ref, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	return c.LoadImage(ctx, archive)
}

// BuildStatic builds a Go main package of this module as a static binary into dir.
func BuildStatic(ctx context.Context, pkg, dir string) (string, error) {
	out := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return out, nil
}

// ensureImages loads the images the cluster itself runs: the sandbox and CoreDNS.
func (c Config) ensureImages(ctx context.Context) error {
	if ok, err := c.HasImage(ctx, PauseImage); err != nil {
		return err
	} else if !ok {
		dir, err := os.MkdirTemp("", "kwarp-pause-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		bin, err := BuildStatic(ctx, "github.com/kwarp-dev/kwarp/test/cluster/pause", dir)
		if err != nil {
			return fmt.Errorf("sandbox image: %w", err)
		}
		if err := c.PackAndLoad(ctx, imagepack.Spec{Ref: PauseImage, Entrypoint: []string{"/pause"},
			Files: []imagepack.File{{Src: bin, Dst: "/pause"}}}); err != nil {
			return fmt.Errorf("sandbox image: %w", err)
		}
	}
	if ok, err := c.HasImage(ctx, CoreDNSImage); err != nil {
		return err
	} else if !ok {
		if err := c.PackAndLoad(ctx, imagepack.Spec{Ref: CoreDNSImage, Entrypoint: []string{"/coredns"},
			Files: []imagepack.File{{Src: c.binary("coredns"), Dst: "/coredns"}}}); err != nil {
			return fmt.Errorf("CoreDNS image: %w", err)
		}
	}
	return nil
}
