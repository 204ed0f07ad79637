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
	// ExecEnv, when set, decides the environment an exec starts with: given the envp the
	// process passes, it returns the one to use instead, or nil to keep it. The layer uses it
	// to give back the pod's variables to a child whose launcher dropped them (see
	// execenv.go for how an exec's arguments are changed). Set it before Serve.
	ExecEnv func(pid int, path string, envp []string) []string
	// WaitKillable says the filter was installed with WAIT_KILLABLE_RECV, which ExecEnv needs.
	WaitKillable bool
	// Net, when set, serves the socket calls of seccomp.NetRules (see net.go); the filter must
	// trap them then, and only then: with Net nil a trapped socket call runs untouched, but
	// each one pays a round trip for nothing. Set it before Serve.
	Net layer.NetHandler
	// Incoming, when set, serves the socket calls of seccomp.IncomingRules (see
	// incoming.go): listen is reported to it, accept and accept4 with an address buffer are
	// served to name the pod's client of a delivered connection, and getpeername and
	// getsockname ask it when Net has no flow. The filter must trap them then, and only
	// then. Set it before Serve.
	Incoming layer.IncomingHandler
	rewrites envRewrites

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
	workers  sync.Pool // *worker: one per receiver, reused across hand-overs

	// noPidfdThread: the kernel lacks PIDFD_THREAD (before 6.9), pidfds are opened on the TGID
	noPidfdThread atomic.Bool
	pidfdWarned   atomic.Bool
	resetWarned   atomic.Bool // a connection the process could not take was reset
	relayed       sockSet     // sockets the supervisor sent from to a relay
	connMu        sync.Mutex
	connecting    map[uint64]*inflight // Connect calls under way, by socket inode
	acceptMu      [16]sync.Mutex       // blocking accepts on one listener, by inode (see acceptOne)
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

	// Socket calls (Net set).
	NetLocal  uint64 // connects and sends to a destination RouteOutgoing kept Local: CONTINUE
	NetRemote uint64 // connects and sends routed Remote, served through the NetHandler (errors included)
	NetRecv   uint64 // receives served on a relayed socket, sources rewritten
	NetNamed  uint64 // getpeername and getsockname answered from a flow
	NetPassed uint64 // socket calls let through unasked: no address, not TCP or UDP over IP, not relayed, no flow
	NetFailed uint64 // served socket calls answered with an error (EINPROGRESS and EAGAIN are not failures)

	// Incoming connections (Incoming set).
	NetListen    uint64 // listens served and reported to Listening
	NetAccepted  uint64 // connections an emulated accept handed to the process
	NetDelivered uint64 // of those, connections the core delivered: the peer is the pod client's
	NetReset     uint64 // connections taken from a listener that the process could not get, reset
}

type counters struct {
	local, remote, notFound, exec, passed, failed, gone          atomic.Uint64
	netLocal, netRemote, netRecv, netNamed, netPassed, netFailed atomic.Uint64
	netListen, netAccepted, netDelivered, netReset               atomic.Uint64
}

// Stats returns the counts so far; safe to call at any time.
func (s *Supervisor) Stats() Stats {
	c := &s.stats
	return Stats{
		Local: c.local.Load(), Remote: c.remote.Load(), NotFound: c.notFound.Load(),
		Exec: c.exec.Load(), Passed: c.passed.Load(), Failed: c.failed.Load(), Gone: c.gone.Load(),
		NetLocal: c.netLocal.Load(), NetRemote: c.netRemote.Load(), NetRecv: c.netRecv.Load(),
		NetNamed: c.netNamed.Load(), NetPassed: c.netPassed.Load(), NetFailed: c.netFailed.Load(),
		NetListen: c.netListen.Load(), NetAccepted: c.netAccepted.Load(), NetDelivered: c.netDelivered.Load(),
		NetReset: c.netReset.Load(),
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
// to stop. A slow Handler holds up only the thread that asked (see receiver).
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

	s.log.Debug().Bool("sync_wake_up", s.syncWake).Msg("supervisor serving")
	st := &serving{stop: stop}
	st.wg.Add(1)
	go s.receiver(hctx, st)
	st.wg.Wait()
	stats := s.Stats()
	e := s.log.Debug().Uint64("local", stats.Local).Uint64("remote", stats.Remote).Uint64("not_found", stats.NotFound).
		Uint64("exec", stats.Exec).Uint64("passed", stats.Passed).Uint64("failed", stats.Failed).Uint64("gone", stats.Gone)
	if s.Net != nil || s.Incoming != nil {
		e = e.Uint64("net_local", stats.NetLocal).Uint64("net_remote", stats.NetRemote).Uint64("net_recv", stats.NetRecv).
			Uint64("net_named", stats.NetNamed).Uint64("net_passed", stats.NetPassed).Uint64("net_failed", stats.NetFailed)
	}
	if s.Incoming != nil {
		e = e.Uint64("net_listen", stats.NetListen).Uint64("net_accepted", stats.NetAccepted).
			Uint64("net_delivered", stats.NetDelivered).Uint64("net_reset", stats.NetReset)
	}
	e.Msg("supervisor stopped")
	if st.err != nil {
		return st.err
	}
	return ctx.Err()
}

// serving is the state of one Serve shared by its goroutines.
type serving struct {
	stop    *stopper
	wg      sync.WaitGroup // the receiver and the goroutines serving slow calls
	errOnce sync.Once
	err     error
}

// receiver is the one goroutine that receives calls; it answers the quick ones itself (Local,
// NotFound, passed through, exec without a hook). A call that may block (a Remote call, which
// waits for the Handler; an exec with a hook) makes it start a new receiver and serve that
// call itself, then end: the tree's other threads are never held up by a slow call, and the
// call is served where it was received, with its state at hand.
//
// Why not a pool taking turns, or a receiver feeding a pool: handing calls between goroutines
// costs more than answering them. Measured on a 2-vCPU VM, a trapped local open took 9 µs with
// one receiver, 13 µs with two goroutines taking turns, 20 µs with four; a remote open took
// 60-70 µs when passed to another goroutine, 30 µs served where received while the new
// receiver starts up in parallel. The receiver keeps its OS thread (so, with SYNC_WAKE_UP,
// the kernel switches straight between the trapped thread and it).
func (s *Supervisor) receiver(ctx context.Context, st *serving) {
	defer st.wg.Done()
	runtime.LockOSThread()
	// Unlocked on the way out: a goroutine that ends locked takes its thread with it.
	defer runtime.UnlockOSThread()
	w := s.workers.Get().(*worker)
	defer s.workers.Put(w)
	for {
		got, err := s.receive(w, st.stop)
		if err != nil {
			if !errors.Is(err, errStop) {
				st.errOnce.Do(func() { st.err = err })
				st.stop.fire()
			}
			return
		}
		if got {
			s.handle(ctx, w, st)
			if w.handedOver {
				w.handedOver = false
				return
			}
		}
	}
}

// handOver starts the next receiver before w's call, which may block, is served; the current
// receiver ends once the call is answered.
func (s *Supervisor) handOver(ctx context.Context, w *worker, st *serving) {
	w.handedOver = true
	st.wg.Add(1)
	go s.receiver(ctx, st)
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
