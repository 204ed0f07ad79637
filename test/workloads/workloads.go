// Package workloads describes the small servers and clients that kwarp's end-to-end tests deploy
// into a real Kubernetes cluster: the image they are packed into, the binaries in that image, and
// the manifests that run them. Keeping these in one package means the image build, the manifests
// and the tests cannot disagree about names.
//
// All binaries are built statically (CGO_ENABLED=0) and placed at the image root, e.g. /httpecho,
// so that manifests can call them by absolute path whatever the image's entrypoint is.
package workloads

import (
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"

	"github.com/kwarp-dev/kwarp/internal/imagepack"
)

// Image is the reference every manifest uses. It is never pushed to a registry: the test cluster
// is loaded with it directly, which is why the manifests use imagePullPolicy IfNotPresent.
const Image = "kwarp.test/workloads:dev"

// PackagePrefix is the import path under which each binary's main package lives.
const PackagePrefix = "github.com/kwarp-dev/kwarp/test/workloads/"

// Binaries are the commands packed into Image, each at /<name>.
var Binaries = []string{"httpecho", "echo", "meshproxy", "probe"}

// DebianPrograms are real third-party servers from this machine's Debian packages, packed
// at their own paths with the shared libraries ldd lists (installed by make deps).
var DebianPrograms = []imagepack.File{{Src: "/usr/bin/redis-server", Dst: "/usr/bin/redis-server"}}

// PackagePath returns the import path of the main package that builds binary name.
func PackagePath(name string) string { return PackagePrefix + name }

//go:embed manifests/*.yaml
var manifests embed.FS

// Manifest returns the manifest called name, with or without its ".yaml" suffix
// ("sample" and "sample.yaml" are the same). Manifests carry no namespace so that each test can
// apply them into a namespace of its own.
func Manifest(name string) ([]byte, error) {
	if !strings.HasSuffix(name, ".yaml") {
		name += ".yaml"
	}
	// path.Base keeps callers from reaching outside the manifests directory by accident.
	if path.Base(name) != name {
		return nil, fmt.Errorf("workloads: invalid manifest name %q", name)
	}
	b, err := manifests.ReadFile("manifests/" + name)
	if err != nil {
		return nil, fmt.Errorf("workloads: no manifest %q (have %s)", name, strings.Join(ManifestNames(), ", "))
	}
	return b, nil
}

// ManifestNames lists the embedded manifests without their ".yaml" suffix, sorted.
func ManifestNames() []string {
	entries, err := fs.ReadDir(manifests, "manifests")
	if err != nil {
		// The directory is embedded at compile time, so this cannot fail at run time.
		panic(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, strings.TrimSuffix(e.Name(), ".yaml"))
	}
	sort.Strings(names)
	return names
}
