// Package supervise is the agent container's first process. It is small on purpose: it lives as
// long as the agent, and the netfilter guard is the same small program (cmd/kwarp-agent-init),
// so neither costs the resident memory of the agent's gRPC and HTTP code.
package supervise

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// WorkerEnv marks the agent process proper, started by Run: with it set, the agent's main runs
// the agent instead of supervising itself.
const WorkerEnv = "KWARP_AGENT_WORKER"

// orphanWait bounds how long the first process waits, after the agent ended, for what the
// agent left running (its netfilter guard cleaning up).
const orphanWait = 30 * time.Second

// Run is the container's first process: it runs the agent (the executable agent with args)
// as its child and outlives it. When a container's first process exits, the runtime kills everything left in
// the container, and that included the netfilter guard, which starts its cleanup when the
// agent dies: an agent that crashed or was killed left its rules behind whenever the runtime
// won that race. This process is the subreaper of the agent's descendants, so the guard,
// orphaned, becomes its child and is waited for; signals (SIGTERM at pod deletion) are passed
// to the agent. The exit status is the agent's (128+n for a death by signal n).
func Run(agent string, args []string) int {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, "kwarp-agent: become a subreaper (the netfilter guard may not outlive a crashed agent):", err)
	}
	cmd := exec.Command(agent, args...)
	cmd.Env = append(os.Environ(), WorkerEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "kwarp-agent: start the agent:", err)
		return 1
	}
	worker := cmd.Process.Pid
	go func() {
		for s := range sigs {
			_ = cmd.Process.Signal(s)
		}
	}()
	code := make(chan int, 1)
	allGone := make(chan struct{})
	go func() {
		defer close(allGone)
		for {
			var ws unix.WaitStatus
			pid, err := unix.Wait4(-1, &ws, 0, nil)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return // ECHILD: nothing left to wait for
			}
			if pid == worker {
				code <- exitCode(ws)
			}
		}
	}()
	c := <-code
	select {
	case <-allGone:
	case <-time.After(orphanWait):
		fmt.Fprintln(os.Stderr, "kwarp-agent: what the agent left running did not end in", orphanWait)
	}
	return c
}

func exitCode(ws unix.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}
