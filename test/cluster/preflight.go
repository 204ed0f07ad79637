package cluster

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// requiredCommands are the programs Up runs, with the Debian package that brings each.
var requiredCommands = []struct{ cmd, pkg string }{
	{"containerd", "containerd"},
	{"ctr", "containerd"},
	{"runc", "runc"},
	{"ip", "iproute2"},
	{"iptables", "iptables"},
	{"iptables-save", "iptables"},
	{"conntrack", "conntrack"},
}

// preflight checks what Up needs before it changes anything, so a missing piece is named
// instead of surfacing as a component's cryptic failure.
func preflight(c Config) error {
	if err := needRoot(os.Geteuid()); err != nil {
		return err
	}
	var missing []string
	for _, r := range requiredCommands {
		if _, err := exec.LookPath(r.cmd); err != nil {
			missing = append(missing, fmt.Sprintf("%s (Debian package %s)", r.cmd, r.pkg))
		}
	}
	if _, err := os.Stat("/usr/lib/cni/bridge"); err != nil {
		missing = append(missing, "/usr/lib/cni/bridge (Debian package containernetworking-plugins)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing on this machine: %s; `make deps` installs them", strings.Join(missing, ", "))
	}
	if err := needNetns("/proc/self/ns/net"); err != nil {
		return err
	}
	return missingBinaries(c)
}

// needNetns checks the kernel has network namespaces (nsPath is this process's).
func needNetns(nsPath string) error {
	if _, err := os.Stat(nsPath); err != nil {
		return fmt.Errorf("this kernel has no network namespaces (%s is missing); the cluster and the laptop namespace need them", nsPath)
	}
	return nil
}

func needRoot(euid int) error {
	if euid != 0 {
		return errors.New("the test cluster needs root (it runs the kubelet and containerd and creates network namespaces): run as root or with sudo")
	}
	return nil
}

func missingBinaries(c Config) error {
	var bins []string
	for _, b := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "kubectl", "coredns"} {
		if fi, err := os.Stat(c.binary(b)); err != nil || fi.Mode()&0o111 == 0 {
			bins = append(bins, b)
		}
	}
	if len(bins) > 0 {
		return fmt.Errorf("component binaries missing from %s: %s; `make cluster-bins` builds them", c.Bin, strings.Join(bins, ", "))
	}
	return nil
}

// hostSettings are the kernel settings a bridge CNI with kube-proxy needs: forwarding, and
// bridged traffic seen by iptables (so a pod reaching a Service backed by a pod on the same
// bridge gets its reply un-NATed).
func hostSettings() error {
	_ = exec.Command("modprobe", "br_netfilter").Run() // built in, or loaded already, on most kernels
	for path, want := range map[string]string{
		"/proc/sys/net/ipv4/ip_forward":                 "1",
		"/proc/sys/net/bridge/bridge-nf-call-iptables":  "1",
		"/proc/sys/net/bridge/bridge-nf-call-ip6tables": "1",
	} {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			return fmt.Errorf("kernel setting %s=%s: %w (is br_netfilter available?)", path, want, err)
		}
	}
	return nil
}
