package cluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// The laptop namespace stands for a developer's machine outside the cluster: a veth link to
// the node and a filter that lets through only TCP to the API server. On the node itself pods
// and Services are directly routable, so a test that passes there proves nothing.

// laptopFilter is the raw-table chain the laptop link's traffic passes. Raw PREROUTING runs
// before kube-proxy's DNAT, so a NodePort or the kubelet's port is dropped too, not only
// pod and Service addresses (which the laptop has no route to anyway).
func laptopFilter() [][]string {
	return [][]string{
		{"-A", laptopChain, "-d", LaptopHostIP + "/32", "-p", "tcp", "--dport", fmt.Sprint(APIPort), "-j", "RETURN"},
		{"-A", laptopChain, "-j", "DROP"},
	}
}

func (c Config) ensureLaptop(ctx context.Context) error {
	run := func(args ...string) error {
		out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	if _, err := os.Stat("/run/netns/" + LaptopNetns); err != nil {
		// a half-made laptop from an interrupted Up: start over
		c.deleteLaptop(ctx)
		for _, args := range [][]string{
			{"ip", "netns", "add", LaptopNetns},
			{"ip", "link", "add", LaptopHostLink, "type", "veth", "peer", "name", LaptopNSLink},
			{"ip", "link", "set", LaptopNSLink, "netns", LaptopNetns},
			{"ip", "addr", "add", LaptopHostIP + "/30", "dev", LaptopHostLink},
			{"ip", "link", "set", LaptopHostLink, "up"},
			{"ip", "-n", LaptopNetns, "addr", "add", LaptopIP + "/30", "dev", LaptopNSLink},
			{"ip", "-n", LaptopNetns, "link", "set", LaptopNSLink, "up"},
			{"ip", "-n", LaptopNetns, "link", "set", "lo", "up"},
		} {
			if err := run(args...); err != nil {
				return err
			}
		}
	}
	// the filter is (re)built every time: iptables state can be flushed behind our back
	_ = exec.CommandContext(ctx, "iptables", "-t", "raw", "-N", laptopChain).Run()
	if err := run("iptables", "-t", "raw", "-F", laptopChain); err != nil {
		return err
	}
	for _, rule := range laptopFilter() {
		if err := run(append([]string{"iptables", "-t", "raw"}, rule...)...); err != nil {
			return err
		}
	}
	jump := []string{"PREROUTING", "-i", LaptopHostLink, "-j", laptopChain}
	if exec.CommandContext(ctx, "iptables", append([]string{"-t", "raw", "-C"}, jump...)...).Run() != nil {
		if err := run(append([]string{"iptables", "-t", "raw", "-I"}, jump...)...); err != nil {
			return err
		}
	}
	return nil
}

// deleteLaptop removes the namespace, the link and the filter; each step tolerates absence.
func (c Config) deleteLaptop(ctx context.Context) {
	_ = exec.CommandContext(ctx, "ip", "netns", "del", LaptopNetns).Run()
	_ = exec.CommandContext(ctx, "ip", "link", "del", LaptopHostLink).Run()
	for exec.CommandContext(ctx, "iptables", "-t", "raw", "-D", "PREROUTING", "-i", LaptopHostLink, "-j", laptopChain).Run() == nil {
	}
	_ = exec.CommandContext(ctx, "iptables", "-t", "raw", "-F", laptopChain).Run()
	_ = exec.CommandContext(ctx, "iptables", "-t", "raw", "-X", laptopChain).Run()
}
