package netfilter

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/kwarp-dev/kwarp/logging"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// The guard removes an agent's rules when the agent dies, however it dies.
//
// It is the agent's own executable started again with GuardArg first (the agent's main hands
// those arguments to RunGuard), by the first Add: an agent that redirects nothing costs
// nothing. It gets the read end of a pipe as fd 3; only the agent holds the write end
// (close-on-exec, so no program the agent runs keeps it). When the agent exits, is killed or
// crashes, the kernel closes the write end and the guard's read returns end-of-file. An agent
// that closed cleanly (Close removed everything) writes guardClean first, and the guard just
// exits; otherwise the guard removes every rule and chain that names the agent, in both
// backends and both families, and lists again until nothing is left (a command the agent had
// started may still be finishing: see xtables.exec).
//
// The guard is forked from the namespace's thread, so the whole guard process lives in the
// target's network namespace: the iptables it runs land there with no setns of its own. It is
// a child, not a parent, of the agent so that it exists only once there are rules; a child
// survives its parent's death (it is reparented, not killed: no Pdeathsig), and it runs in its
// own session, ignoring SIGTERM, SIGINT and SIGHUP, so that a signal meant for the agent or
// its terminal does not take it along. What it cannot survive is being killed with the agent,
// as the kubelet kills a container's processes after the grace period or as a cgroup OOM kill
// does: that is what RemoveStale at the next agent's start is for.
const GuardArg = "__netfilter-guard"

// guardClean is what a cleanly closing agent writes before closing the pipe.
const guardClean = 'C'

// guard is the agent's side of a running guard.
type guard struct {
	pid    int
	w      *os.File // the pipe's write end
	exited chan struct{}
}

func (g *guard) gone() bool {
	select {
	case <-g.exited:
		return true
	default:
		return false
	}
}

// ensureGuard starts the guard unless one runs. Called with r.mu held.
func (r *Redirector) ensureGuard() error {
	if r.guard != nil && !r.guard.gone() {
		return nil
	}
	if r.guard != nil {
		r.guard.w.Close()
		r.log.Warn().Msg("the netfilter guard exited while the agent lives: starting another")
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("netfilter guard: %w", err)
	}
	cmd := exec.Command(r.opts.GuardExe, GuardArg,
		"-agent-id="+r.id,
		"-agent-pid="+strconv.Itoa(os.Getpid()),
		"-bin-dir="+r.opts.BinDir,
		"-backend="+string(r.backend),
		"-log-level="+r.log.GetLevel().String())
	cmd.ExtraFiles = []*os.File{pr}
	cmd.Stdin = bytes.NewReader(nil)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	// Started from the namespace's thread: the guard is born in the target's namespace.
	err = r.run(cmd.Start)
	pr.Close()
	if err != nil {
		pw.Close()
		return fmt.Errorf("netfilter guard: start %s: %w", r.opts.GuardExe, err)
	}
	g := &guard{pid: cmd.Process.Pid, w: pw, exited: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		close(g.exited)
		r.log.Debug().Int("guard_pid", g.pid).AnErr("exit", err).Msg("netfilter guard exited")
	}()
	r.guard = g
	r.log.Debug().Int("guard_pid", g.pid).Msg("netfilter guard started")
	return nil
}

// stopGuard lets the guard go: with nothing left to do when clean, to sweep otherwise. It
// waits a little for the guard to finish, so that a clean Close leaves no process behind.
func (r *Redirector) stopGuard(clean bool) {
	g := r.guard
	if g == nil {
		return
	}
	r.guard = nil
	if clean {
		_, _ = g.w.Write([]byte{guardClean})
	}
	g.w.Close()
	wait := 2 * time.Second
	if !clean {
		wait = 10 * time.Second
	}
	select {
	case <-g.exited:
	case <-time.After(wait):
		r.log.Warn().Int("guard_pid", g.pid).Msg("the netfilter guard is still running")
	}
}

// RunGuard is the guard's main (see GuardArg): args are what follows GuardArg. It returns the
// exit status: 0 when nothing was left or everything was removed, 1 when rules may remain, 2
// for bad arguments.
func RunGuard(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet(GuardArg, flag.ContinueOnError)
	fs.SetOutput(stderr)
	id := fs.String("agent-id", "", "id of the agent whose rules to remove")
	pid := fs.Int("agent-pid", 0, "the agent's pid (the guard's parent)")
	binDir := fs.String("bin-dir", DefaultBinDir, "where xtables-*-multi are")
	backend := fs.String("backend", string(NFT), "the backend the agent used")
	level := fs.String("log-level", "", "log level")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	lvl, err := logging.ParseLevel(*level)
	if err != nil || checkID(*id) != nil || *pid <= 0 || (Backend(*backend) != Legacy && Backend(*backend) != NFT) {
		fmt.Fprintf(stderr, "%s: bad arguments %q\n", GuardArg, args)
		return 2
	}
	log := logging.New(stderr, lvl, "netfilter-guard").With().Str("netfilter_id", *id).Logger()
	signal.Ignore(syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGPIPE)

	// A pidfd on the agent, taken while it is still our parent (so the pid is the agent's and
	// not a recycled one): readable once the agent has fully exited.
	pidfd := -1
	if fd, err := unix.PidfdOpen(*pid, 0); err == nil {
		if unix.Getppid() == *pid {
			pidfd = fd
		} else {
			unix.Close(fd)
		}
	}

	if waitForAgent(os.NewFile(3, "agent pipe")) {
		log.Debug().Msg("the agent closed cleanly")
		return 0
	}
	// The pipe closes as the agent's exit begins; wait for the exit to complete, by which
	// time the kernel has SIGKILLed every iptables the agent was running (Pdeathsig).
	if pidfd >= 0 {
		fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
		deadline := time.Now().Add(2 * time.Second)
		for time.Now().Before(deadline) {
			if n, err := unix.Poll(fds, 100); n > 0 || (err != nil && err != unix.EINTR) {
				break
			}
		}
		unix.Close(pidfd)
	}
	if err := sweep(*id, *binDir, Backend(*backend), log); err != nil {
		log.Error().Err(err).Msg("rules of the agent may remain (the next agent's start removes them)")
		return 1
	}
	return 0
}

// waitForAgent reads the pipe until the agent's end closes; true when it said guardClean.
func waitForAgent(f *os.File) bool {
	defer f.Close()
	buf := make([]byte, 16)
	clean := false
	for {
		n, err := f.Read(buf)
		if n > 0 {
			clean = buf[n-1] == guardClean
		}
		if err != nil {
			return clean && errors.Is(err, io.EOF)
		}
	}
}

// sweep removes the agent's rules from the namespace the guard lives in, listing again until
// a listing finds nothing.
func sweep(id, binDir string, backend Backend, log zerolog.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	xts := []*xtables{newXtables(backend, binDir, Here), newXtables(other(backend), binDir, Here)}
	ids := map[string]bool{id: true}
	var err error
	for round := 0; round < 5; round++ {
		var removed []string
		removed, err = removeAgents(ctx, xts, ids, log)
		if err == nil && len(removed) == 0 {
			return nil
		}
		if err == nil {
			log.Info().Int("round", round+1).Msg("removed the rules of an agent that is gone")
		} else {
			log.Warn().Err(err).Int("round", round+1).Msg("removing the agent's rules")
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err == nil {
		err = errors.New("the agent's rules keep coming back")
	}
	return err
}
