package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// proc is a process as /proc shows it.
type proc struct {
	pid  int
	argv []string
}

// processes lists the processes of this machine (the host PID namespace: the agent, which runs
// with hostPID on this node, is among them).
func processes() []proc {
	ents, _ := os.ReadDir("/proc")
	var out []proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || len(b) == 0 {
			continue // gone, or a kernel thread
		}
		out = append(out, proc{pid: pid, argv: strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")})
	}
	return out
}

// statusKiB reads a "Name:  N kB" line of /proc/PID/status or /proc/PID/smaps_rollup.
func statusKiB(file, name string) (int64, bool) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, false
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), name+":"); ok {
			f := strings.Fields(rest) // "12345 kB"
			if len(f) > 0 {
				n, err := strconv.ParseInt(f[0], 10, 64)
				return n, err == nil
			}
		}
	}
	return 0, false
}

// vmHWM is the process's peak resident set ("VmHWM" in /proc/PID/status) in KiB. It counts
// every page the process maps, the executable's text included, however many processes share it.
func vmHWM(pid int) (int64, bool) { return statusKiB(fmt.Sprintf("/proc/%d/status", pid), "VmHWM") }

// pss is the process's proportional set size now, in KiB: each shared page divided among the
// processes that map it, so a sum over processes counts shared text once.
func pss(pid int) (int64, bool) { return statusKiB(fmt.Sprintf("/proc/%d/smaps_rollup", pid), "Pss") }

// usage is what peaks saw of a group of processes.
type usage struct {
	hwm     map[int]int64 // each process's last (highest) VmHWM, KiB by pid
	pssPeak int64         // the highest sum of the group's PSS at one sample, KiB
}

// peaks runs cmd to its end while it samples, every 100 ms, the processes match selects: each
// one's VmHWM, and the sum of their PSS. A process that lives less than 100 ms may be missed;
// kwarp's processes all live as long as the session.
func peaks(cmd *exec.Cmd, match func(argv []string) bool) (usage, error) {
	u := usage{hwm: map[int]int64{}}
	if err := cmd.Start(); err != nil {
		return u, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	sample := func() {
		var sum int64
		for _, p := range processes() {
			if !match(p.argv) {
				continue
			}
			if kb, ok := vmHWM(p.pid); ok && kb > u.hwm[p.pid] {
				u.hwm[p.pid] = kb
			}
			if kb, ok := pss(p.pid); ok {
				sum += kb
			}
		}
		u.pssPeak = max(u.pssPeak, sum)
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		sample()
		select {
		case err := <-done:
			return u, err
		case <-tick.C:
		}
	}
}

// agentHWM is the VmHWM in KiB of the agent of pod podUID, summed over its processes: those
// whose command line starts with /kwarp-agent and whose cgroup is that pod's (the cgroupfs
// driver writes the UID with dashes, the systemd driver with underscores) — the container's
// supervising first process, the agent proper and, once it redirected a port, its netfilter
// guard. It returns how many of them it summed (0: none found) and how many agent processes it
// saw on the node in all, to explain a miss.
func agentHWM(podUID string) (kb int64, procs, agents int) {
	ids := []string{"pod" + podUID, "pod" + strings.ReplaceAll(podUID, "-", "_")}
	for _, p := range processes() {
		if p.argv[0] != "/kwarp-agent" && p.argv[0] != "/kwarp-agent-init" { // the agent, its first process, its guard
			continue
		}
		agents++
		cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", p.pid))
		if err != nil || !(bytes.Contains(cg, []byte(ids[0])) || bytes.Contains(cg, []byte(ids[1]))) {
			continue
		}
		if v, ok := vmHWM(p.pid); ok {
			kb += v
			procs++
		}
	}
	return kb, procs, agents
}
