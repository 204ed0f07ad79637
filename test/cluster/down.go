package cluster

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Down stops the cluster and removes everything Up made: processes, pod sandboxes (through the
// runtime, so CNI removes their addresses and NAT rules), mounts, the laptop namespace, links,
// kube-proxy's rules, cgroups and directories. Without a cluster it does nothing and succeeds.
// The built binaries in the cache stay.
func Down(ctx context.Context, c Config, logf Logf) error {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	// Up makes the root first; without it there is nothing of ours (and the fixed names of the
	// laptop and bridge may belong to a cluster under another root)
	if _, err := os.Stat(c.Root); err != nil {
		if _, err := os.Stat(c.RunDir); err != nil {
			return nil
		}
	}
	c.deleteLaptop(ctx)
	logf("stopping the test cluster in %s", c.Root)
	// the kubelet first, or it restarts what the runtime removes
	c.stop("kubelet", 10*time.Second)
	if err := c.removeSandboxes(ctx); err != nil {
		logf("removing pod sandboxes through the runtime: %v (falling back to killing them)", err)
	}
	c.stop("kube-proxy", 5*time.Second)
	if _, err := os.Stat(c.binary("kube-proxy")); err == nil {
		_ = exec.CommandContext(ctx, c.binary("kube-proxy"), "--cleanup").Run()
	}
	for _, n := range []string{"kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"} {
		c.stop(n, 10*time.Second)
	}
	c.killTasks(ctx)
	c.stop("containerd", 10*time.Second)
	for _, pid := range c.shimPIDs() {
		killWait(pid, 2*time.Second)
	}
	c.sweepNetfilter(ctx)
	_ = exec.CommandContext(ctx, "ip", "link", "del", BridgeName).Run()
	if err := c.unmountAll(); err != nil {
		return err
	}
	removeCgroups("kubepods")
	for _, p := range []string{c.Root, c.RunDir, "/var/lib/cni/networks/" + CNINetwork} {
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("remove %s: %w", p, err)
		}
	}
	if ents, err := filepath.Glob("/var/lib/cni/results/" + CNINetwork + "-*"); err == nil {
		for _, e := range ents {
			os.Remove(e)
		}
	}
	left, err := Leftovers(ctx, c)
	if err != nil {
		return err
	}
	if len(left) > 0 {
		return fmt.Errorf("the cluster is stopped but these are left behind:\n  %s", strings.Join(left, "\n  "))
	}
	logf("the test cluster is gone")
	return nil
}

// removeSandboxes stops and removes every pod sandbox through CRI, which runs CNI DEL for each:
// that is what removes a pod's address, veth and masquerade rule.
func (c Config) removeSandboxes(ctx context.Context) error {
	if _, err := os.Stat(c.ContainerdSocket()); err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	conn, err := grpc.NewClient("unix://"+c.ContainerdSocket(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	rt := cri.NewRuntimeServiceClient(conn)
	resp, err := rt.ListPodSandbox(ctx, &cri.ListPodSandboxRequest{})
	if err != nil {
		return fmt.Errorf("list pod sandboxes: %w", err)
	}
	var firstErr error
	for _, sb := range resp.Items {
		if _, err := rt.StopPodSandbox(ctx, &cri.StopPodSandboxRequest{PodSandboxId: sb.Id}); err != nil && firstErr == nil {
			firstErr = fmt.Errorf("stop sandbox %s (%s/%s): %w", sb.Id[:12], sb.Metadata.GetNamespace(), sb.Metadata.GetName(), err)
		}
		if _, err := rt.RemovePodSandbox(ctx, &cri.RemovePodSandboxRequest{PodSandboxId: sb.Id}); err != nil && firstErr == nil {
			firstErr = fmt.Errorf("remove sandbox %s: %w", sb.Id[:12], err)
		}
	}
	return firstErr
}

// killTasks kills any container task left in our containerd (a fallback for removeSandboxes).
func (c Config) killTasks(ctx context.Context) {
	if _, err := os.Stat(c.ContainerdSocket()); err != nil {
		return
	}
	out, err := exec.CommandContext(ctx, "ctr", "-a", c.ContainerdSocket(), "-n", "k8s.io", "tasks", "ls", "-q").Output()
	if err != nil {
		return
	}
	for _, id := range strings.Fields(string(out)) {
		_ = exec.CommandContext(ctx, "ctr", "-a", c.ContainerdSocket(), "-n", "k8s.io", "tasks", "kill", "-a", "-s", "SIGKILL", id).Run()
	}
	if len(strings.Fields(string(out))) > 0 {
		time.Sleep(time.Second)
	}
}

// shimPIDs finds containerd shims that serve our containerd (their command line names its socket).
func (c Config) shimPIDs() []int {
	var pids []int
	for _, p := range procs() {
		if strings.HasPrefix(p.comm, "containerd-shim") && strings.Contains(p.cmdline, c.ContainerdSocket()) {
			pids = append(pids, p.pid)
		}
	}
	return pids
}

type proc struct {
	pid     int
	comm    string
	exe     string
	cmdline string
}

func procs() []proc {
	ents, _ := os.ReadDir("/proc")
	var out []proc
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil || fmt.Sprint(pid) != e.Name() {
			continue
		}
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		out = append(out, proc{pid: pid, comm: strings.TrimSpace(string(comm)), exe: exe,
			cmdline: strings.ReplaceAll(string(cmd), "\x00", " ")})
	}
	return out
}

// ourMounts lists mount points under the cluster's directories, deepest first.
func (c Config) ourMounts() []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var mounts []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if under(mp, c.Root) || under(mp, c.RunDir) {
			mounts = append(mounts, mp)
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(mounts)))
	return mounts
}

func under(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, strings.TrimSuffix(dir, "/")+"/")
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%3o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func (c Config) unmountAll() error {
	for _, mp := range c.ourMounts() {
		if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil && err != syscall.EINVAL && err != syscall.ENOENT {
			return fmt.Errorf("unmount %s: %w", mp, err)
		}
	}
	return nil
}

// removeCgroups removes the cgroup trees the kubelet made in every v1 hierarchy and in v2.
func removeCgroups(name string) {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*/" + name)
	if fi, err := os.Stat("/sys/fs/cgroup/" + name); err == nil && fi.IsDir() {
		roots = append(roots, "/sys/fs/cgroup/"+name)
	}
	for _, root := range roots {
		var dirs []string
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			_ = syscall.Rmdir(dirs[i])
		}
	}
}

// ourRule reports whether an iptables-save line belongs to the cluster: kube-proxy's KUBE-*
// chains, CNI's chains and rules for our network, and the laptop filter.
func ourRule(line string) bool {
	return strings.Contains(line, "KUBE-") || strings.Contains(line, CNINetwork) ||
		strings.Contains(line, laptopChain) || strings.Contains(line, "CNI-")
}

// sweepNetfilter deletes rules of ours that survived (a pod killed without CNI DEL leaves its
// masquerade rule): rules first, then the chains they jumped to.
func (c Config) sweepNetfilter(ctx context.Context) {
	for _, table := range []string{"nat", "filter", "mangle", "raw"} {
		out, err := exec.CommandContext(ctx, "iptables-save", "-t", table).Output()
		if err != nil {
			continue
		}
		var chains []string
		for _, line := range strings.Split(string(out), "\n") {
			switch {
			case strings.HasPrefix(line, ":") && ourRule(line):
				chains = append(chains, strings.Fields(line[1:])[0])
			case strings.HasPrefix(line, "-A ") && ourRule(line):
				args := append([]string{"-t", table, "-D"}, splitRule(line[3:])...)
				_ = exec.CommandContext(ctx, "iptables", args...).Run()
			}
		}
		for _, ch := range chains {
			_ = exec.CommandContext(ctx, "iptables", "-t", table, "-F", ch).Run()
		}
		for _, ch := range chains {
			_ = exec.CommandContext(ctx, "iptables", "-t", table, "-X", ch).Run()
		}
	}
}

// splitRule splits an iptables-save rule into arguments, keeping quoted comments whole.
func splitRule(s string) []string {
	var args []string
	var cur strings.Builder
	inQuote, have := false, false
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == '\\' && inQuote && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
		case ch == '"':
			inQuote = !inQuote
			have = true
		case ch == ' ' && !inQuote:
			if have {
				args = append(args, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteByte(ch)
			have = true
		}
	}
	if have {
		args = append(args, cur.String())
	}
	return args
}

// Leftovers lists what of the cluster still exists on this machine: nothing after Down.
func Leftovers(ctx context.Context, c Config) ([]string, error) {
	var left []string
	for _, p := range procs() {
		switch {
		case p.exe != "" && under(p.exe, c.Bin):
			left = append(left, fmt.Sprintf("process %d %s", p.pid, p.exe))
		case strings.Contains(p.cmdline, c.ContainerdSocket()) || strings.Contains(p.cmdline, c.path("containerd.toml")):
			left = append(left, fmt.Sprintf("process %d %s", p.pid, strings.TrimSpace(p.cmdline)))
		}
	}
	for _, m := range c.ourMounts() {
		left = append(left, "mount "+m)
	}
	if _, err := os.Stat("/run/netns/" + LaptopNetns); err == nil {
		left = append(left, "network namespace "+LaptopNetns)
	}
	for _, l := range []string{BridgeName, LaptopHostLink} {
		if _, err := os.Stat("/sys/class/net/" + l); err == nil {
			left = append(left, "link "+l)
		}
	}
	for _, table := range []string{"nat", "filter", "mangle", "raw"} {
		out, err := exec.CommandContext(ctx, "iptables-save", "-t", table).Output()
		if err != nil {
			return nil, fmt.Errorf("iptables-save -t %s: %w", table, err)
		}
		for _, line := range strings.Split(string(out), "\n") {
			if (strings.HasPrefix(line, "-A ") || strings.HasPrefix(line, ":")) && ourRule(line) {
				left = append(left, fmt.Sprintf("iptables -t %s %s", table, line))
			}
		}
	}
	for _, p := range []string{c.Root, c.RunDir, "/var/lib/cni/networks/" + CNINetwork} {
		if _, err := os.Stat(p); err == nil {
			left = append(left, "directory "+p)
		}
	}
	if dirs, _ := filepath.Glob("/sys/fs/cgroup/*/kubepods"); len(dirs) > 0 {
		left = append(left, "cgroups "+strings.Join(dirs, " "))
	}
	return left, nil
}
