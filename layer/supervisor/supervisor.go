package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/kwarp-dev/kwarp/layer"
	"github.com/kwarp-dev/kwarp/layer/seccomp"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// Supervisor answers the trapped calls of one process tree, read from its seccomp listener.
type Supervisor struct {
	// OnExec, when set, is called for each execve and execveat the tree makes, just before
	// the kernel runs it: the calling process's id (TGID), the program's path (absolute,
	// resolved like any path; for fexecve the fd's target), and argv and envp as read from the
	// process (at most 4096 strings and 1 MiB per array). It runs on a serving goroutine, so
	// the exec waits for it: keep it quick. Set it before Serve.
	OnExec func(pid int, path string, argv []string, envp []string)
	// Workers is how many calls may be in the Handler at once (default 4). Set it before Serve.
	Workers int

	listener *os.File
	fd       int
	h        layer.Handler
	log      zerolog.Logger
	kinds    []kind // by syscall number
	dirs     dirMap
	noSend   atomic.Bool // the kernel lacks ADDFD_FLAG_SEND (before 5.14)
	stats    counters
	served   atomic.Bool
	syncWake bool
}

// DefaultWorkers serves a few calls at once: enough that one slow remote open does not stall
// the other threads of the process, small because each trapped call is short.
const DefaultWorkers = 4

// New returns a supervisor for the listener the launcher handed over. It owns the listener from
// now on and closes it when Serve returns. h decides and serves; log gets a line per remote
// call at debug level and a line per trapped call at trace level.
func New(listener *os.File, h layer.Handler, log zerolog.Logger) *Supervisor {
	s := &Supervisor{
		Workers:  DefaultWorkers,
		listener: listener,
		fd:       int(listener.Fd()),
		h:        h,
		log:      log,
		kinds:    kindTable(),
	}
	// SYNC_WAKE_UP (6.6) lets the kernel switch straight between the trapped thread and the
	// worker that answers it; best effort, older kernels say EINVAL.
	s.syncWake = seccomp.SetFlags(s.fd, seccomp.FDSyncWakeUp) == nil
	return s
}

// Stats counts what the supervisor did, for debugging (kwarp's debug log prints it at the end
// of a session).
type Stats struct {
	Local    uint64 // calls routed Local: CONTINUE
	Remote   uint64 // calls routed Remote and served by the Handler (errors included)
	NotFound uint64 // calls routed NotFound: ENOENT
	Exec     uint64 // execve and execveat seen (not routed)
	Passed   uint64 // trapped calls let through unrouted: unreadable or empty path (fstat-like), a dirfd without a path
	Failed   uint64 // remote calls answered with an error (the Handler's errno, or EIO)
	Gone     uint64 // calls whose thread stopped waiting before the answer (signal, death)
}

type counters struct {
	local, remote, notFound, exec, passed, failed, gone atomic.Uint64
}

// Stats returns the counts so far; safe to call at any time.
func (s *Supervisor) Stats() Stats {
	c := &s.stats
	return Stats{
		Local: c.local.Load(), Remote: c.remote.Load(), NotFound: c.notFound.Load(),
		Exec: c.exec.Load(), Passed: c.passed.Load(), Failed: c.failed.Load(), Gone: c.gone.Load(),
	}
}

// Serve answers trapped calls until every process that carries the filter is gone (the
// listener reports POLLHUP; Serve returns nil) or ctx ends (Serve returns ctx.Err()). Either
// way it closes the listener before returning.
//
// What the process tree sees afterwards is the kernel's doing: with the listener closed, a
// call that was waiting and every later trapped call fails with ENOSYS. A tree left running
// without its supervisor is therefore broken, not hung: the CLI must kill the process group
// before it stops the supervisor (cancel ctx only after the tree has exited or been killed).
//
// Workers take turns as the receiver (leader/follower): one polls the listener and receives a
// call, hands the receiver role on, and answers the call itself, so no call changes hands
// between goroutines. Only one receive is ever in flight, because a receive blocks in the
// kernel until a call comes (O_NONBLOCK is ignored) and could not be interrupted to stop.
func (s *Supervisor) Serve(ctx context.Context) error {
	if !s.served.CompareAndSwap(false, true) {
		return errors.New("supervisor: Serve called twice")
	}
	defer s.listener.Close()
	defer runtime.KeepAlive(s.listener)

	// Handler calls get their own context: when the tree is gone (or Serve fails) nobody waits
	// for their answers any more, so they are cancelled rather than waited for.
	hctx, cancelCalls := context.WithCancel(ctx)
	defer cancelCalls()
	stop, err := newStopper(cancelCalls)
	if err != nil {
		return err
	}
	defer stop.close()
	cancelWake := context.AfterFunc(ctx, stop.fire)
	defer cancelWake()

	workers := s.Workers
	if workers <= 0 {
		workers = DefaultWorkers
	}
	var (
		wg       sync.WaitGroup
		leader   sync.Mutex
		errOnce  sync.Once
		serveErr error
	)
	fatal := func(err error) {
		errOnce.Do(func() { serveErr = err })
		stop.fire()
	}
	s.log.Debug().Int("workers", workers).Bool("sync_wake_up", s.syncWake).Msg("supervisor serving")
	for range workers {
		wg.Go(func() {
			w := newWorker(s)
			for {
				leader.Lock()
				got, err := s.receive(w, stop)
				leader.Unlock()
				if err != nil {
					if !errors.Is(err, errStop) {
						fatal(err)
					}
					return
				}
				if got {
					s.handle(hctx, w)
				}
			}
		})
	}
	wg.Wait()
	st := s.Stats()
	s.log.Debug().Uint64("local", st.Local).Uint64("remote", st.Remote).Uint64("not_found", st.NotFound).
		Uint64("exec", st.Exec).Uint64("passed", st.Passed).Uint64("failed", st.Failed).Uint64("gone", st.Gone).
		Msg("supervisor stopped")
	if serveErr != nil {
		return serveErr
	}
	return ctx.Err()
}

var errStop = errors.New("stop")

// receive waits for a trapped call (or the stop signal) and receives it into w.n. got is false
// when the call went away before it could be received.
func (s *Supervisor) receive(w *worker, stop *stopper) (got bool, err error) {
	pfd := [2]unix.PollFd{{Fd: int32(s.fd), Events: unix.POLLIN}, {Fd: int32(stop.fd), Events: unix.POLLIN}}
	for {
		pfd[0].Revents, pfd[1].Revents = 0, 0
		if _, err := unix.Poll(pfd[:], -1); err != nil {
			if err == unix.EINTR {
				continue
			}
			return false, fmt.Errorf("supervisor: poll seccomp listener: %w", err)
		}
		if pfd[1].Revents != 0 {
			return false, errStop
		}
		if pfd[0].Revents&unix.POLLIN != 0 {
			switch err := seccomp.Recv(s.fd, &w.n); err {
			case nil:
				return true, nil
			case unix.ENOENT, unix.EINTR:
				// The caller got a signal or died between the wake-up and the receive.
				return false, nil
			default:
				return false, fmt.Errorf("supervisor: receive seccomp notification: %w", err)
			}
		}
		if pfd[0].Revents&(unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) != 0 {
			// No task uses the filter any more: the whole tree has exited (and been reaped).
			s.log.Debug().Msg("supervisor: every process under the filter is gone")
			stop.fire()
			return false, errStop
		}
	}
}

// stopper wakes the receiver: an eventfd that, once written, stays readable, so every worker
// that polls next sees it too.
type stopper struct {
	mu     sync.Mutex
	fd     int
	closed bool
	cancel context.CancelFunc
}

func newStopper(cancel context.CancelFunc) (*stopper, error) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("supervisor: eventfd: %w", err)
	}
	return &stopper{fd: fd, cancel: cancel}, nil
}

func (st *stopper) fire() {
	st.cancel()
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.closed {
		one := [8]byte{1}
		_, _ = unix.Write(st.fd, one[:])
	}
}

func (st *stopper) close() {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.closed = true
	unix.Close(st.fd)
}
