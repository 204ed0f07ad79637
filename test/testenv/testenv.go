// Package testenv gives end-to-end test packages the real cluster, once per `go test` run: call
// testenv.Main from TestMain, then use Env, Cluster and Laptop in the tests. Main starts or
// reuses the cluster (test/cluster), loads the test workloads' image, and connects a client.
package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kwarp-dev/kwarp/test/cluster"
	"github.com/kwarp-dev/kwarp/test/kube"
	"github.com/kwarp-dev/kwarp/test/netns"
	"github.com/kwarp-dev/kwarp/test/workloads"
)

var (
	// Cluster is the running test cluster's configuration.
	Cluster cluster.Config
	// Env is a cluster-admin client for the tests' own setup and checks (node side).
	Env *kube.Env
	// Laptop is the network namespace kwarp runs in during e2e tests, with the laptop
	// kubeconfig in its KUBECONFIG.
	Laptop netns.NS
	// Bin holds local builds of the tools tests run on the laptop side (e.g. "probe").
	Bin string
)

// Main sets the cluster up, runs the tests and exits. Without root it skips every test,
// saying why: the cluster needs root.
func Main(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "e2e: skipped: the test cluster needs root (run `make test` as root)")
		os.Exit(0)
	}
	code, err := setup(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e setup:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func setup(m *testing.M) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	logf := func(format string, args ...any) { fmt.Fprintf(os.Stderr, "[cluster] "+format+"\n", args...) }
	Cluster = cluster.DefaultConfig()
	if err := cluster.Up(ctx, Cluster, logf); err != nil {
		return 0, err
	}
	if err := workloads.Load(ctx, Cluster); err != nil {
		return 0, err
	}
	var err error
	if Env, err = kube.Connect(Cluster.AdminKubeconfig()); err != nil {
		return 0, err
	}
	Laptop = netns.NS{Name: cluster.LaptopNetns, Env: []string{"KUBECONFIG=" + Cluster.LaptopKubeconfig()}}
	dir, err := os.MkdirTemp("", "kwarp-e2e-bin-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	Bin = dir
	// probe is the client the tests run; httpecho the sample app, run on the laptop as a
	// local stand-in for the deployed one
	for _, tool := range []string{"probe", "httpecho"} {
		if _, err := cluster.BuildStatic(ctx, workloads.PackagePath(tool), dir); err != nil {
			return 0, err
		}
	}
	cancel()
	return m.Run(), nil
}

// Tool is the path of a locally built tool in Bin.
func Tool(name string) string { return filepath.Join(Bin, name) }
