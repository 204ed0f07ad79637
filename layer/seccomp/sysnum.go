package seccomp

import (
	"fmt"
	"sort"
)

// FileSyscalls are the path-taking calls the layer traps when the remote file system is on.
// The supervisor knows how to answer each of them; chdir and the exec calls are trapped to
// keep track of the process, not to serve them remotely.
var FileSyscalls = []string{
	"open", "openat", "openat2", "creat",
	"stat", "lstat", "newfstatat", "statx",
	"access", "faccessat", "faccessat2",
	"readlink", "readlinkat",
	"chdir",
	"getxattr", "lgetxattr", "listxattr", "llistxattr",
	"execve", "execveat",
}

// ExecSyscalls are the calls trapped to follow the process tree only.
var ExecSyscalls = []string{"execve", "execveat"}

// NetRules are the socket calls the layer traps when outgoing traffic goes through the pod
// (the supervisor's Net handler). sendto and recvfrom trap only with an address argument:
// without one, a send goes where the socket is connected (already decided by connect) and a
// receive does not report its source, so the kernel may serve them untouched. sendmsg and
// recvmsg carry their address behind a pointer, out of the filter's reach: they always trap,
// and the supervisor lets those without a msg_name through after one read.
var NetRules = []Rule{
	{Name: "connect"},
	{Name: "sendto", When: ArgNonZero(4)},
	{Name: "sendmsg"},
	{Name: "sendmmsg"},
	{Name: "recvfrom", When: ArgNonZero(4)},
	{Name: "recvmsg"},
	{Name: "recvmmsg"},
	{Name: "getpeername"},
	{Name: "getsockname"},
}

// NetSyscalls names the calls of NetRules, conditions aside.
var NetSyscalls = names(NetRules)

// IncomingRules are the socket calls the layer traps when the pod's incoming traffic is
// delivered to the process's listeners (the supervisor's Incoming handler): listen, to learn
// of each listener; accept and accept4 only with an address buffer (args[1]), since only then
// can the peer the process sees matter; getpeername and getsockname, to name the pod's
// addresses of an accepted connection. Several rule sets may be combined: a call both sets
// trap is trapped once.
var IncomingRules = []Rule{
	{Name: "listen"},
	{Name: "accept", When: ArgNonZero(1)},
	{Name: "accept4", When: ArgNonZero(1)},
	{Name: "getpeername"},
	{Name: "getsockname"},
}

// IncomingSyscalls names the calls of IncomingRules, conditions aside.
var IncomingSyscalls = names(IncomingRules)

func names(rules []Rule) []string {
	out := make([]string, len(rules))
	for i, r := range rules {
		out[i] = r.Name
	}
	return out
}

// Number returns the syscall number of name on this architecture. ok is false when the name
// is unknown, and also when the call exists on other architectures but not on this one
// (arm64 has no open, stat, access, readlink: only their *at forms); see Known.
func Number(name string) (nr int, ok bool) {
	nr, ok = syscallNumbers[name]
	return nr, ok
}

// Known reports whether name is a syscall this package knows on some architecture. A filter
// may name a call this architecture lacks (it is skipped: nothing can make it), but not a typo.
func Known(name string) bool {
	if _, ok := syscallNumbers[name]; ok {
		return true
	}
	return absentHere[name]
}

// Name returns the name of syscall nr on this architecture, "" when it is not in the table.
func Name(nr int) string {
	if nr >= 0 && nr < len(syscallNames) {
		return syscallNames[nr]
	}
	return ""
}

// Names lists every name in this architecture's table, sorted; for diagnostics and tests.
func Names() []string {
	out := make([]string, 0, len(syscallNumbers))
	for n := range syscallNumbers {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// syscallNames is the reverse table, indexed by number, built once.
var syscallNames = func() []string {
	max := 0
	for _, nr := range syscallNumbers {
		if nr > max {
			max = nr
		}
	}
	names := make([]string, max+1)
	for n, nr := range syscallNumbers {
		if names[nr] != "" {
			panic(fmt.Sprintf("seccomp: syscalls %s and %s share number %d", names[nr], n, nr))
		}
		names[nr] = n
	}
	return names
}()
