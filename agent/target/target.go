// Package target finds the process the agent serves: the main process of the target container,
// found from /proc alone so that containerd, CRI-O and Docker nodes are all the same and no
// container-runtime socket has to be mounted into the agent.
//
// Two ways to find it:
//
//   - Job mode (hostPID on the target's node): FindPID scans /proc/*/cgroup for the container ID
//     the pod status reports. Every process of the container names the ID in its cgroup path,
//     in both cgroup v1 (hybrid) and v2 layouts and with both the cgroupfs and systemd drivers:
//
//     /kubepods/besteffort/pod<uid>/<id>                                cgroupfs driver
//     /kubepods.slice/…/cri-containerd-<id>.scope                       containerd, systemd driver
//     /kubepods.slice/…/crio-<id>.scope                                 CRI-O, systemd driver
//     /kubepods.slice/…/docker-<id>.scope, /docker/<id>                 Docker (cri-dockerd)
//
//     Of the matching processes, the container's init is the one whose parent is outside the
//     container (the runtime's shim). `kubectl exec` sessions have an outside parent too, so the
//     oldest of those wins.
//
//   - Ephemeral mode (the agent is an ephemeral container created with targetContainerName, so
//     it shares the target container's PID namespace): the cgroup namespace may hide the ID, so
//     when the cgroup scan finds nothing, FindEphemeral takes the lowest PID in our PID namespace
//     that is not the agent and whose root directory is not the agent's own: the other
//     container's init. A process started later inside the target (a shell from `kubectl exec`)
//     has a higher PID, and the agent's own helpers share its root.
//
// A Tracker follows the target across container restarts: it holds a pidfd, so a recycled PID
// is never mistaken for the target, and finds the new process when the old one has exited.
package target

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/kwarp-dev/kwarp/agent/internal/inroot"
	"golang.org/x/sys/unix"
)

// ErrNotFound is wrapped by every "no such process" answer of FindPID and FindEphemeral.
var ErrNotFound = errors.New("target process not found")

// ParseContainerID strips the runtime scheme from a container ID as the pod status reports it
// ("containerd://<64 hex>", "cri-o://…", "docker://…") and checks what is left can be matched
// against a cgroup path.
func ParseContainerID(s string) (string, error) {
	id := strings.TrimSpace(s)
	if i := strings.Index(id, "://"); i >= 0 {
		id = id[i+3:]
	}
	if id == "" {
		return "", fmt.Errorf("container ID %q is empty", s)
	}
	for _, c := range id {
		ok := c == '-' || c == '_' || c == '.' ||
			(c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
		if !ok {
			return "", fmt.Errorf("container ID %q: unexpected character %q (want the ID from the pod status, as containerd://<hex>)", s, c)
		}
	}
	return id, nil
}

// FindPID returns the PID (in procRoot's PID namespace) of the main process of the container
// whose ID is containerID (with or without its "runtime://" scheme). procRoot is "/proc" except
// in tests.
func FindPID(procRoot, containerID string) (int, error) {
	id, err := ParseContainerID(containerID)
	if err != nil {
		return 0, err
	}
	pids, err := listPIDs(procRoot)
	if err != nil {
		return 0, err
	}
	type proc struct {
		pid, ppid int
		start     uint64
	}
	inContainer := map[int]proc{}
	for _, pid := range pids {
		// Processes come and go while we scan, and some may be unreadable: skip them.
		cg, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "cgroup"))
		if err != nil || !cgroupHasContainer(cg, id) {
			continue
		}
		ppid, start, err := readStat(procRoot, pid)
		if err != nil {
			continue
		}
		inContainer[pid] = proc{pid, ppid, start}
	}
	var roots []proc
	for _, p := range inContainer {
		if _, parentInside := inContainer[p.ppid]; !parentInside {
			roots = append(roots, p)
		}
	}
	if len(roots) == 0 {
		return 0, fmt.Errorf("%w: no process in %s has container %s in its cgroup (searched %d processes); is the agent running with hostPID on the pod's node?",
			ErrNotFound, procRoot, short(id), len(pids))
	}
	// The init started first; exec'd sessions later. Equal start ticks: the lower PID.
	sort.Slice(roots, func(i, j int) bool {
		if roots[i].start != roots[j].start {
			return roots[i].start < roots[j].start
		}
		return roots[i].pid < roots[j].pid
	})
	return roots[0].pid, nil
}

// cgroupHasContainer reports whether a /proc/PID/cgroup file places the process in the
// container: some line's path has a segment that is the ID, or "<prefix>-<ID>" with an optional
// ".scope" suffix. CRI-O's monitor lives in "crio-conmon-<ID>.scope": that is not the container.
func cgroupHasContainer(cgroup []byte, id string) bool {
	for _, line := range bytes.Split(cgroup, []byte("\n")) {
		// hierarchy-ID:controllers:path; the path itself may hold ':'.
		parts := strings.SplitN(string(line), ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, seg := range strings.Split(parts[2], "/") {
			seg = strings.TrimSuffix(seg, ".scope")
			if seg == id {
				return true
			}
			if prefix, ok := strings.CutSuffix(seg, "-"+id); ok && !strings.Contains(prefix, "conmon") {
				return true
			}
		}
	}
	return false
}

// FindEphemeral returns the target's PID when the agent shares its PID namespace (ephemeral
// container): the lowest PID that is not self and whose /proc/PID/root is another directory
// than the agent's own root. self is the agent's PID in that namespace (os.Getpid()).
func FindEphemeral(procRoot string, self int) (int, error) {
	var own unix.Stat_t
	ownRoot := filepath.Join(procRoot, strconv.Itoa(self), "root")
	if err := unix.Stat(ownRoot, &own); err != nil {
		return 0, fmt.Errorf("stat the agent's own root %s: %w", ownRoot, err)
	}
	pids, err := listPIDs(procRoot)
	if err != nil {
		return 0, err
	}
	for _, pid := range pids { // ascending
		if pid == self {
			continue
		}
		var st unix.Stat_t
		// EACCES (no CAP_SYS_PTRACE) or ENOENT (exited): not a candidate we can serve anyway.
		if err := unix.Stat(filepath.Join(procRoot, strconv.Itoa(pid), "root"), &st); err != nil {
			continue
		}
		if st.Dev != own.Dev || st.Ino != own.Ino {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("%w: no process in %s other than the agent (pid %d) has a root directory of its own (searched %d processes); is the ephemeral container created with targetContainerName, and does it have CAP_SYS_PTRACE?",
		ErrNotFound, procRoot, self, len(pids))
}

// Locate finds the target the way the agent's mode asks for: by container ID in the cgroups,
// and in ephemeral mode with FindEphemeral when the cgroup namespace hides the ID (or no ID was
// given).
func Locate(procRoot, containerID string, ephemeral bool, self int) (int, error) {
	if !ephemeral {
		return FindPID(procRoot, containerID)
	}
	if containerID != "" {
		pid, err := FindPID(procRoot, containerID)
		if err == nil {
			return pid, nil
		}
		if !errors.Is(err, ErrNotFound) {
			return 0, err
		}
	}
	return FindEphemeral(procRoot, self)
}

// Hostname reads the target's /etc/hostname inside its root (the file the kubelet mounts there),
// resolving it as the container would, so a symlink in the container cannot point outside it.
func Hostname(procRoot string, pid int) (string, error) {
	rootPath := filepath.Join(procRoot, strconv.Itoa(pid), "root")
	root, err := inroot.OpenRoot(rootPath)
	if err != nil {
		return "", err
	}
	defer unix.Close(root)
	b, err := inroot.ReadFile(root, "/etc/hostname", 256)
	if err != nil {
		return "", fmt.Errorf("read /etc/hostname in %s: %w", rootPath, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// listPIDs returns the numeric entries of procRoot, ascending.
func listPIDs(procRoot string) ([]int, error) {
	ents, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	var pids []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil && pid > 0 {
			pids = append(pids, pid)
		}
	}
	sort.Ints(pids)
	return pids, nil
}

// readStat returns the parent PID and start time (clock ticks after boot) from /proc/PID/stat.
// The command name is in parentheses and may itself hold spaces and ')', so the fields are
// counted from the last ')'.
func readStat(procRoot string, pid int) (ppid int, start uint64, err error) {
	b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state): ppid is field 4, starttime field 22.
	if len(f) < 20 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: %d fields after the command name, want 20", pid, len(f))
	}
	if ppid, err = strconv.Atoi(f[1]); err != nil {
		return 0, 0, fmt.Errorf("/proc/%d/stat: ppid: %w", pid, err)
	}
	if start, err = strconv.ParseUint(f[19], 10, 64); err != nil {
		return 0, 0, fmt.Errorf("/proc/%d/stat: starttime: %w", pid, err)
	}
	return ppid, start, nil
}

// short abbreviates a container ID for messages, as the runtimes' CLIs do.
func short(id string) string {
	if len(id) > 12 {
		return id[:12] + "…"
	}
	return id
}
