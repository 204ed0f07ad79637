// Package cluster starts and stops kwarp's test cluster: a real single-node Kubernetes on this
// machine (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy,
// CoreDNS, containerd, runc, CNI bridge) and the "laptop" network namespace from which the local
// side of every end-to-end test runs. Up is idempotent and reuses a running cluster; Down removes
// every process, mount, network namespace, link, iptables rule and directory Up made.
package cluster

import (
	_ "embed"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

//go:embed versions.mk
var versionsMK string

// Versions are the pinned component versions (from versions.mk).
type Versions struct{ Kubernetes, Etcd, CoreDNS string }

// PinnedVersions parses versions.mk, the one place the versions are written.
func PinnedVersions() Versions { return parseVersions(versionsMK) }

func parseVersions(mk string) Versions {
	var v Versions
	for _, line := range strings.Split(mk, "\n") {
		k, val, ok := strings.Cut(line, ":=")
		if !ok || strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		val = strings.TrimSpace(val)
		switch strings.TrimSpace(k) {
		case "K8S_VERSION":
			v.Kubernetes = val
		case "ETCD_VERSION":
			v.Etcd = val
		case "COREDNS_VERSION":
			v.CoreDNS = val
		}
	}
	return v
}

// Fixed network layout. The laptop link uses link-local addresses no real network routes.
const (
	NodeName       = "node1"
	PodCIDR        = "10.244.0.0/24"
	ClusterCIDR    = "10.244.0.0/16"
	ServiceCIDR    = "10.96.0.0/16"
	DNSServiceIP   = "10.96.0.10"
	APIServiceIP   = "10.96.0.1"
	APIPort        = 6443
	CNINetwork     = "kwarp-testcluster"
	BridgeName     = "kwbr0"
	LaptopNetns    = "kwarp-laptop"
	LaptopHostLink = "kwl0"
	LaptopNSLink   = "kwl1"
	LaptopHostIP   = "169.254.78.1"
	LaptopIP       = "169.254.78.2"
	laptopChain    = "KWARP-LAPTOP"
	PauseImage     = "kwarp.test/pause:1"
	CoreDNSImage   = "kwarp.test/coredns:1"
)

// Config says where the cluster lives. The zero value is not usable; use DefaultConfig.
type Config struct {
	Root   string // state, logs, certificates, kubeconfigs, containerd and kubelet roots
	RunDir string // containerd's state and socket (a tmpfs under /run)
	Bin    string // the component binaries (built by scripts/build-components.sh)
	HostIP string // the node's address: the API server advertises it to pods; "" = detect
}

// Environment variables that move the cluster's directories.
const (
	EnvRoot  = "KWARP_CLUSTER_ROOT"
	EnvCache = "KWARP_CACHE"
)

// DefaultConfig is /var/lib/kwarp-testcluster for state and $KWARP_CACHE (default
// ~/.cache/kwarp) for the built binaries, which survive Down so the next Up is fast.
func DefaultConfig() Config {
	root := os.Getenv(EnvRoot)
	if root == "" {
		root = "/var/lib/kwarp-testcluster"
	}
	return Config{
		Root:   root,
		RunDir: "/run/kwarp-testcluster",
		Bin:    filepath.Join(CacheDir(), "k8s-"+PinnedVersions().Kubernetes),
	}
}

// CacheDir is where every build kwarp's tests need is cached: one directory to keep warm.
func CacheDir() string {
	if d := os.Getenv(EnvCache); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		home = "/root"
	}
	return filepath.Join(home, ".cache", "kwarp")
}

func (c Config) path(elem ...string) string {
	return filepath.Join(append([]string{c.Root}, elem...)...)
}

// AdminKubeconfig is a cluster-admin kubeconfig for the node side (tests' own setup).
func (c Config) AdminKubeconfig() string { return c.path("admin.kubeconfig") }

// LaptopKubeconfig is the kubeconfig a process in the laptop namespace uses: same admin
// credentials, the API server at the address the laptop link reaches.
func (c Config) LaptopKubeconfig() string { return c.path("laptop.kubeconfig") }

// ContainerdSocket is the socket of the cluster's own containerd (not the system's).
func (c Config) ContainerdSocket() string { return filepath.Join(c.RunDir, "containerd.sock") }

// LogPath is where a component's stdout and stderr go.
func (c Config) LogPath(component string) string { return c.path("logs", component+".log") }

func (c Config) pidPath(component string) string { return c.path("pids", component) }
func (c Config) pki(name string) string          { return c.path("pki", name) }
func (c Config) binary(name string) string       { return filepath.Join(c.Bin, name) }

// Kubectl is the kubectl built with the cluster, for tests and scripts that want the CLI.
func (c Config) Kubectl() string { return c.binary("kubectl") }

func (c Config) String() string {
	return fmt.Sprintf("cluster root %s, binaries %s", c.Root, c.Bin)
}
