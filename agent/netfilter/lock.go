package netfilter

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// An agent's lock is an abstract unix socket bound to a name made of its id, in the target's
// network namespace (the functions here must run on a thread inside it: a socket belongs to the
// namespace of the thread that creates it).
//
// Why this and not a pid or a lock file: the abstract socket namespace is per network
// namespace, the very place the rules are, and the kernel frees a name when its socket's last
// descriptor closes, which a SIGKILLed or OOM-killed process does too. Agents of one pod may
// run in different PID namespaces (a Job with hostPID, an ephemeral container in the pod's) and
// never share a file system, but they all see this namespace. Ids are random, so a name is
// never bound again once its agent is gone.
const lockPrefix = "@kwarp-netfilter/" // '@': abstract (x/sys/unix writes a leading NUL)

// errIDInUse: another live Redirector holds the id in this namespace.
var errIDInUse = errors.New("agent id already in use in the target's network namespace")

// takeLock binds agentID's name and returns the socket, to be held for the agent's life.
func takeLock(agentID string) (int, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("lock socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: lockPrefix + agentID}); err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.EADDRINUSE) {
			return -1, fmt.Errorf("%s: %w", agentID, errIDInUse)
		}
		return -1, fmt.Errorf("lock %s: %w", agentID, err)
	}
	return fd, nil
}

// lockHeld reports whether agentID's lock is held: the agent is alive. Anything but a clean
// answer counts as held, so that doubt never removes a live agent's rules.
func lockHeld(agentID string) (bool, error) {
	fd, err := takeLock(agentID)
	if errors.Is(err, errIDInUse) {
		return true, nil
	}
	if err != nil {
		return true, err
	}
	unix.Close(fd)
	return false, nil
}
