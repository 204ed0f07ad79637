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
	// process (at most 4096 strings and 1 MiB per array). The exec waits for it (other calls
	// do not). Set it before Serve.
	OnExec func(pid int, path string, argv []string, envp []string)

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
	workers  sync.Pool      // *worker, for calls served on their own goroutine
	inflight sync.WaitGroup // those calls
}

// New returns a supervisor for the listener the launcher handed over. It owns the listener from
// now on and closes it when Serve returns. h decides and serves; log gets a line per remote
// call at debug level and a line per trapped call at trace level.
func New(listener *os.File, h layer.Handler, log zerolog.Logger) *Supervisor {
	s := &Supervisor{
		listener: listener,
		fd:       int(listener.Fd()),
		h:        h,
		log:      log,
		kinds:    kindTable(),
	}
	s.workers.New = func() any { return newWorker(s) }
	// SYNC_WAKE_UP (6.6) lets the kernel switch straight between the trapped thread and the
	// receiver that answers it; best effort, older kernels say EINVAL.
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
// Only one receive is ever in flight, and only after poll said a call is waiting: a receive
// blocks in the kernel until a call comes (O_NONBLOCK is ignored) and could not be interrupted
// to stop. Calls routed Remote, and execs when OnExec is set, are answered on goroutines of
// their own, so a slow Handler holds up only the thread that asked.
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

	// One goroutine receives every call and answers the quick ones itself, on one locked
	// thread: handing calls between goroutines costs more than answering them (measured: a
	// trapped local open took 9 µs with one receiver, 13 µs with two taking turns, 20 µs with
	// four). With SYNC_WAKE_UP the kernel then switches straight between the trapped thread
	// and this one.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	s.log.Debug().Bool("sync_wake_up", s.syncWake).Msg("supervisor serving")
	w := newWorker(s)
	var serveErr error
	for {
		got, err := s.receive(w, stop)
		if err != nil {
			if !errors.Is(err, errStop) {
				serveErr = err
				stop.fire()
			}
			break
		}
		if got {
			s.handle(hctx, w)
		}
	}
	s.inflight.Wait()
	st := s.Stats()
	s.log.Debug().Uint64("local", st.Local).Uint64("remote", st.Remote).Uint64("not_found", st.NotFound).
		Uint64("exec", st.Exec).Uint64("passed", st.Passed).Uint64("failed", st.Failed).Uint64("gone", st.Gone).
		Msg("supervisor stopped")
	if serveErr != nil {
		return serveErr
	}
	return ctx.Err()
}

// spawn runs a call that may block (it waits for the Handler or a hook) on its own goroutine
// with its own worker state, so the receiver goes on answering the rest of the tree. There is
// no pool to size: each waiting call is a thread of the tree stopped in the kernel, so the
// tree's own thread count bounds them.
func (s *Supervisor) spawn(from *worker, run func(w *worker)) {
	w := s.workers.Get().(*worker)
	w.n = from.n
	s.inflight.Add(1)
	go func() {
		defer s.inflight.Done()
		defer s.workers.Put(w)
		defer s.recoverCall(w.n.ID)
		run(w)
	}()
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
