// Package netns opens the agent's outgoing sockets inside the target container's network
// namespace, so that a connection or a DNS query leaves from the pod: its addresses, its routes,
// its loopback, its network policies.
//
// A socket belongs to the network namespace of the thread that created it, for its whole life:
// connect, bind, routing and every later send use the socket's namespace, not the namespace of
// the thread that happens to call them. So only the socket(2) call has to run in the target's
// namespace. Dialer keeps one OS thread per target namespace for that: a goroutine locked to
// its thread, which entered the namespace with setns(2) and then only creates sockets on
// request. Everything else (the non-blocking connect, its timeout, the reads and writes) runs
// on ordinary goroutines through Go's netpoller, like any other socket of the agent.
//
// Why not simply call net.Dialer.DialContext on a locked thread in the namespace: it would be
// correct only as long as the dial stays on that goroutine, and net may start helper
// goroutines (the parallel IPv4/IPv6 "happy eyeballs" race, a resolver) that run on other
// threads and would create sockets in the agent's own namespace, silently. A net.Dialer's
// Control hook does not help either: it runs after socket(2), when the namespace is already
// decided. And a locked thread blocked for a whole connect timeout per dial would cost a thread
// per connection attempt; here one thread serves every socket of a namespace and each socket
// costs one channel round trip.
//
// A thread that entered another namespace must never run another goroutine: the thread is
// locked and never unlocked, so when its goroutine returns the Go runtime ends the thread and
// the namespace goes with it (the kernel drops the thread's reference). The runtime never
// clones a new thread from a locked one either (it hands thread creation to a clean template
// thread), so the namespace does not leak that way. The one exception is the process's main
// thread, which the runtime parks for good instead of ending it; the worker refuses to enter a
// namespace there and starts again on another thread (package creds does the same).
//
// The target's PID changes when its container restarts: every dial asks the Locator for the
// current process and compares its namespace (device and inode of /proc/PID/ns/net) with the
// worker's. In Kubernetes a restart keeps the pod's namespace (the sandbox holds it), so the
// worker usually stays; a new namespace gets a new worker and the old one exits.
//
// A targetless Dialer (nil Locator) creates its sockets in the agent's own namespace, on any
// thread: no thread of the agent is ever in another namespace except the locked workers.
//
// Run lends the worker's thread for other work that must happen in the target's namespace:
// a netlink socket (sockets, again), or a program to execute there (agent/netfilter runs
// iptables that way). A process forked from a thread starts in that thread's namespaces: the
// kernel copies the forking task's namespace set, and a task is a thread, not the process. Go's
// os/exec forks on the calling goroutine's thread (clone(2) with CLONE_VFORK runs on the
// current M), and a goroutine locked to the worker's thread can only be on that thread.
package netns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/kwarp-dev/kwarp/agent/target"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Error is a failure to work in the target's namespace: the target is gone, or the agent could
// not enter its namespace or create a socket there. It is the agent's trouble, reported to the
// CLI, never an errno for the user's process (setns's EPERM must not look like connect's).
type Error struct{ Err error }

func (e *Error) Error() string { return "target network namespace: " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Dialer opens sockets in the network namespace of the target a Locator gives.
type Dialer struct {
	loc target.Locator // nil: the agent's own namespace

	mu     sync.Mutex
	w      *worker // the current namespace's worker; nil until the first dial
	closed bool
}

// New returns a Dialer for loc's target; a nil loc dials from the agent's own namespace.
func New(loc target.Locator) *Dialer {
	return &Dialer{loc: loc}
}

// Close ends the namespace worker (its thread exits, releasing its hold on the namespace).
// Sockets already made stay open; dials into the target's namespace fail from now on.
func (d *Dialer) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	if d.w != nil {
		d.w.stop()
		d.w = nil
	}
}

// DialTCP connects to addr from the target's namespace. timeout bounds the connect (0: only
// ctx does); when it passes, the error is ETIMEDOUT, as a program's connect with a timeout
// would see. When ctx ends first, the error is ctx's.
//
// A refused or unreachable connect is returned as a wrapped unix.Errno (ECONNREFUSED,
// ENETUNREACH…); a failure of the agent's own is an *Error.
func (d *Dialer) DialTCP(ctx context.Context, addr netip.AddrPort, timeout time.Duration) (net.Conn, error) {
	return d.dial(ctx, unix.SOCK_STREAM, addr, timeout)
}

// DialUDP returns a UDP socket of the target's namespace connected to addr: it sends to addr
// and receives from addr only. Errors as for DialTCP.
func (d *Dialer) DialUDP(ctx context.Context, addr netip.AddrPort) (net.Conn, error) {
	return d.dial(ctx, unix.SOCK_DGRAM, addr, 0)
}

func (d *Dialer) dial(ctx context.Context, typ int, addr netip.AddrPort, timeout time.Duration) (net.Conn, error) {
	domain, sa, err := sockaddr(addr)
	if err != nil {
		return nil, err
	}
	fd, err := d.socket(domain, typ)
	if err != nil {
		return nil, err
	}
	// The fd is non-blocking, so os.NewFile registers it with the netpoller: connect can wait
	// for writability and honour a deadline without holding a thread.
	f := os.NewFile(uintptr(fd), "socket to "+addr.String())
	defer f.Close() // net.FileConn works on a duplicate
	if err := connect(ctx, f, sa, timeout); err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	c, err := net.FileConn(f)
	if err != nil {
		return nil, &Error{fmt.Errorf("socket to %s: %w", addr, err)}
	}
	return c, nil
}

// sockaddr converts addr for connect(2). An IPv4-mapped IPv6 address is dialled as IPv4, as
// the pod's programs get from getaddrinfo.
func sockaddr(addr netip.AddrPort) (int, unix.Sockaddr, error) {
	ip := addr.Addr().Unmap()
	port := int(addr.Port())
	if !ip.IsValid() {
		return 0, nil, fmt.Errorf("connect to %s: %w", addr, unix.EINVAL)
	}
	if ip.Is4() {
		return unix.AF_INET, &unix.SockaddrInet4{Port: port, Addr: ip.As4()}, nil
	}
	sa := &unix.SockaddrInet6{Port: port, Addr: ip.As16()}
	if z := ip.Zone(); z != "" {
		// An interface name would have to be looked up inside the target's namespace;
		// numeric zones are all a link-local dial needs.
		n, err := strconv.ParseUint(z, 10, 32)
		if err != nil {
			return 0, nil, fmt.Errorf("connect to %s: zone %q is not an interface index: %w", addr, z, unix.EINVAL)
		}
		sa.ZoneId = uint32(n)
	}
	return unix.AF_INET6, sa, nil
}

// aLongTimeAgo is a deadline in the past: it wakes a waiting connect at once.
var aLongTimeAgo = time.Unix(1, 0)

// connect runs a non-blocking connect(2) on f, waiting in the netpoller. It is what net's own
// dial does after socket(2), including its guard against spurious wake-ups.
func connect(ctx context.Context, f *os.File, sa unix.Sockaddr, timeout time.Duration) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return &Error{err}
	}
	if timeout > 0 {
		if err := f.SetWriteDeadline(time.Now().Add(timeout)); err != nil {
			return &Error{err}
		}
	}
	stop := context.AfterFunc(ctx, func() { _ = f.SetWriteDeadline(aLongTimeAgo) })
	defer stop()

	var cerr error
	started := false
	werr := rc.Write(func(fd uintptr) bool {
		if !started {
			started = true
			cerr = unix.Connect(int(fd), sa)
			switch cerr {
			case unix.EINPROGRESS, unix.EALREADY, unix.EINTR:
				return false // wait until writable
			}
			return true
		}
		n, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
		if err != nil {
			cerr = err
			return true
		}
		switch e := unix.Errno(n); e {
		case unix.EINPROGRESS, unix.EALREADY, unix.EINTR:
			return false
		case 0:
			// The poller can wake us before the handshake is done (Go issues 14548, 19289):
			// connected only when the peer has a name.
			if _, err := unix.Getpeername(int(fd)); err == nil {
				cerr = nil
				return true
			}
			return false
		default:
			cerr = e
			return true
		}
	})
	if werr != nil {
		if err := ctx.Err(); err != nil {
			return err
		}
		if errors.Is(werr, os.ErrDeadlineExceeded) {
			return unix.ETIMEDOUT
		}
		return &Error{werr}
	}
	return cerr
}

// Run calls fn on the worker's OS thread, inside the target's network namespace, and returns
// its error. Sockets fn creates belong to the namespace for good; processes it starts (os/exec
// forks on the calling thread) run in it; threads it would start do not (the runtime starts
// them from its template thread), so fn must not hand namespace work to other goroutines.
//
// fn holds the worker: sockets the Dialer makes meanwhile wait for it. A caller with slow or
// frequent work should use a Dialer of its own (one thread each). fn must leave the thread as
// it found it: no setns, unshare or credential change.
//
// A targetless Dialer runs fn on a locked thread of the agent's own namespace.
func (d *Dialer) Run(fn func() error) error {
	if d.loc == nil {
		errc := make(chan error, 1)
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			errc <- fn()
		}()
		return <-errc
	}
	for range 3 {
		w, err := d.worker()
		if err != nil {
			return err
		}
		if ok, err := w.call(fn); ok {
			return err
		}
	}
	return &Error{errors.New("the target's namespace keeps changing")}
}

// socket creates a non-blocking socket in the target's namespace.
func (d *Dialer) socket(domain, typ int) (int, error) {
	typ |= unix.SOCK_NONBLOCK | unix.SOCK_CLOEXEC
	if d.loc == nil {
		fd, err := unix.Socket(domain, typ, 0)
		if err != nil {
			return -1, &Error{fmt.Errorf("socket: %w", err)}
		}
		return fd, nil
	}
	// A worker replaced between worker() and the request refuses it; the next one will not
	// be replaced again unless the target restarts into yet another namespace meanwhile.
	for range 3 {
		w, err := d.worker()
		if err != nil {
			return -1, err
		}
		r, ok := w.socket(domain, typ)
		if !ok {
			continue
		}
		if r.err != nil {
			return -1, &Error{fmt.Errorf("socket: %w", r.err)}
		}
		return r.fd, nil
	}
	return -1, &Error{errors.New("the target's namespace keeps changing")}
}

// nsID names a network namespace: the device and inode of its nsfs file.
type nsID struct{ dev, ino uint64 }

// worker returns the worker of the target's current namespace, starting one when the target
// moved to another namespace (or on the first dial).
func (d *Dialer) worker() (*worker, error) {
	p, err := d.loc.Process()
	if err != nil {
		return nil, &Error{err}
	}
	path := p.Path("ns", "net")
	var st unix.Stat_t
	err = unix.Stat(path, &st)
	// The path names the process by PID: only once it is known alive afterwards is the
	// namespace the target's and not that of a process that got the PID since.
	if aerr := p.Alive(); aerr != nil {
		return nil, &Error{aerr}
	}
	if err != nil {
		return nil, &Error{fmt.Errorf("stat %s: %w", path, err)}
	}
	id := nsID{st.Dev, st.Ino}

	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, &Error{errors.New("dialer closed: the agent is stopping")}
	}
	if d.w != nil && d.w.id == id && !d.w.gone() {
		return d.w, nil
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if aerr := p.Alive(); aerr != nil {
		if err == nil {
			unix.Close(fd)
		}
		return nil, &Error{aerr}
	}
	if err != nil {
		return nil, &Error{fmt.Errorf("open %s: %w", path, err)}
	}
	defer unix.Close(fd) // the worker holds the namespace through its thread once it entered
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, &Error{fmt.Errorf("stat %s: %w", path, err)}
	}
	w, err := startWorker(fd, nsID{st.Dev, st.Ino})
	if err != nil {
		return nil, &Error{fmt.Errorf("enter %s: %w", path, err)}
	}
	if d.w != nil {
		d.w.stop()
	}
	d.w = w
	return w, nil
}

// worker is a locked OS thread inside one network namespace that creates sockets there.
type worker struct {
	id     nsID
	tid    int // the thread's id, for tests
	reqs   chan sockReq
	calls  chan callReq
	quit   chan struct{}
	exited chan struct{}
	once   sync.Once
}

type sockReq struct {
	domain, typ int
	reply       chan<- sockReply
}

type sockReply struct {
	fd  int
	err error
}

type callReq struct {
	fn    func() error
	reply chan<- error
}

// errMainThread: the worker's goroutine landed on the process's main thread.
var errMainThread = errors.New("on the main thread")

func startWorker(nsfd int, id nsID) (*worker, error) {
	for {
		w := &worker{id: id, reqs: make(chan sockReq), calls: make(chan callReq), quit: make(chan struct{}), exited: make(chan struct{})}
		started := make(chan error, 1)
		go w.run(nsfd, started)
		err := <-started
		if err == errMainThread {
			continue
		}
		if err != nil {
			return nil, err
		}
		return w, nil
	}
}

func (w *worker) run(nsfd int, started chan<- error) {
	// Never unlocked: see the package doc. The thread ends when this function returns.
	runtime.LockOSThread()
	defer close(w.exited)
	if unix.Gettid() == unix.Getpid() {
		started <- errMainThread
		return
	}
	if err := unix.Setns(nsfd, unix.CLONE_NEWNET); err != nil {
		started <- fmt.Errorf("setns: %w", err)
		return
	}
	w.tid = unix.Gettid()
	started <- nil
	for {
		select {
		case r := <-w.reqs:
			fd, err := unix.Socket(r.domain, r.typ, 0)
			r.reply <- sockReply{fd, err}
		case c := <-w.calls:
			c.reply <- c.fn()
		case <-w.quit:
			return
		}
	}
}

// socket asks the worker for a socket; ok is false when the worker has stopped.
func (w *worker) socket(domain, typ int) (r sockReply, ok bool) {
	reply := make(chan sockReply, 1)
	select {
	case w.reqs <- sockReq{domain, typ, reply}:
	case <-w.exited:
		return sockReply{}, false
	}
	return <-reply, true
}

// call runs fn on the worker's thread; ok is false when the worker has stopped.
func (w *worker) call(fn func() error) (ok bool, err error) {
	reply := make(chan error, 1)
	select {
	case w.calls <- callReq{fn, reply}:
	case <-w.exited:
		return false, nil
	}
	return true, <-reply
}

func (w *worker) stop() { w.once.Do(func() { close(w.quit) }) }

func (w *worker) gone() bool {
	select {
	case <-w.exited:
		return true
	default:
		return false
	}
}

// Classify sorts a dial or I/O error for a reply to the CLI: the errno a program in the pod
// would have got (non-zero; err's text says more), or else a gRPC status error for the agent's
// own trouble: FailedPrecondition when the target's namespace is out of reach, the context's
// status when the call ended, Internal for anything else.
func Classify(err error) (unix.Errno, error) {
	if err == nil {
		return 0, nil
	}
	var nse *Error
	if errors.As(err, &nse) {
		return 0, status.Error(codes.FailedPrecondition, err.Error())
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return 0, status.FromContextError(err).Err()
	}
	var e unix.Errno
	if errors.As(err, &e) && e != 0 {
		return e, nil
	}
	if _, ok := status.FromError(err); ok {
		return 0, err
	}
	return 0, status.Error(codes.Internal, err.Error())
}
