// Package netns runs code and commands inside a named network namespace (one made with
// `ip netns add`, mounted under /run/netns). E2e tests use it to run kwarp in the "laptop"
// namespace, which reaches the API server and nothing else of the cluster.
package netns

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"
)

// Dir is where iproute2 mounts named namespaces.
const Dir = "/run/netns"

// NS is a named network namespace.
type NS struct {
	Name string
	// Env is added to every command's environment (the laptop's KUBECONFIG).
	Env []string
}

// Path is the namespace's bind mount.
func (n NS) Path() string { return filepath.Join(Dir, n.Name) }

// Exists reports whether the namespace is there.
func (n NS) Exists() bool {
	_, err := os.Stat(n.Path())
	return err == nil
}

// Command returns a command that runs inside the namespace, with n.Env added to the current
// environment. `ip netns exec` also mounts a fresh /sys for the namespace, so programs that
// read interface details see the namespace's own.
func (n NS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	full := append([]string{"netns", "exec", n.Name, name}, args...)
	cmd := exec.CommandContext(ctx, "ip", full...)
	cmd.Env = append(os.Environ(), n.Env...)
	return cmd
}

// Do runs fn on an OS thread that has entered the namespace. Sockets fn creates belong to the
// namespace; goroutines fn starts do not (they may run on other threads), so fn must open its
// sockets itself. If the thread cannot be moved back, it is left locked so Go retires it
// instead of reusing a thread in the wrong namespace.
func (n NS) Do(fn func() error) error {
	target, err := os.Open(n.Path())
	if err != nil {
		return fmt.Errorf("open network namespace %s: %w", n.Name, err)
	}
	defer target.Close()
	runtime.LockOSThread()
	origin, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open current network namespace: %w", err)
	}
	defer origin.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter network namespace %s: %w", n.Name, err)
	}
	ferr := fn()
	if err := unix.Setns(int(origin.Fd()), unix.CLONE_NEWNET); err != nil {
		// stay locked: the thread exits with the goroutine rather than serve others in n
		return errors.Join(ferr, fmt.Errorf("leave network namespace %s: %w", n.Name, err))
	}
	runtime.UnlockOSThread()
	return ferr
}
