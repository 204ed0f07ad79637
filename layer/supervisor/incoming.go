package supervisor

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"time"
	"unsafe"

	"github.com/kwarp-dev/kwarp/layer"
	"github.com/kwarp-dev/kwarp/layer/seccomp"
	"golang.org/x/sys/unix"
)

// Incoming connections, served through the IncomingHandler (seccomp.IncomingRules).
//
//	listen       on an AF_INET/AF_INET6 TCP (or MPTCP) socket that does not listen yet:
//	             listen runs on the duplicate with the caller's backlog (the same socket:
//	             the process's listen is done), its errno is the answer; on success the
//	             duplicate is closed, the call answered, and Listening told the address
//	             getsockname gives (the kernel's port for port 0), the socket's inode and
//	             IPV6_V6ONLY. A listen on a socket already listening (a new backlog), UDP or
//	             another family: CONTINUE.
//	accept       with an address buffer (the filter traps no other) on an AF_INET/AF_INET6
//	accept4      TCP (or MPTCP) listener: emulated. accept4 runs on the duplicate with the
//	             caller's SOCK_NONBLOCK (the new socket's file flag; SOCK_CLOEXEC is the new
//	             fd's, set with ADDFD); the peer's address is written to the caller's buffer
//	             (the pod client's when Delivered names the connection, else the kernel's;
//	             truncated to *addrlen, the full length written back), and the new socket is
//	             installed in the process with ADDFD_FLAG_SEND, which also answers the call
//	             with its fd number. The listener's O_NONBLOCK decides whether the call waits
//	             (else EAGAIN); SO_RCVTIMEO bounds the wait (EAGAIN) and a signal ends it
//	             (ERESTARTSYS or EINTR), as in the kernel (see waitFor). Anything else
//	             (no listener, unknown flags, an unreadable or negative *addrlen): CONTINUE.
//
// A connection is never taken for a caller that has gone: a blocking accept polls the
// listener, checks the id, then accepts while the queue still holds one (a blocking accept4
// on a listener whose queue another thread has just emptied would wait out of the caller's
// reach: the trapped accepts of one listener take turns, so only an untrapped accept, one
// without an address buffer, can race it); a non-blocking one checks the id and accepts. A
// connection taken that the process cannot get after all is reset (SO_LINGER 0) rather than
// closed quietly: a full fd table (EMFILE from ADDFD; the kernel's accept would leave it
// queued), an address buffer the supervisor cannot write (EFAULT; the kernel drops it too),
// a caller gone between the check and ADDFD.
//
// Nothing here keeps a duplicate of a listener past the call: the port closes when the
// process closes it (see layer.IncomingHandler for how the core notices).

// listen serves listen(fd, backlog).
func (s *Supervisor) listen(ctx context.Context, w *worker, st *serving) {
	id, tid, a := w.n.ID, int(w.n.Pid), &w.n.Data.Args
	so, ok := s.openSock(tid, i32(a[0]))
	if !ok {
		s.netPass(id)
		return
	}
	defer so.close()
	if so.proto != layer.TCP || listening(so.fd) {
		// UDP (EOPNOTSUPP), a new backlog for a listener: the kernel's to answer. A
		// connected socket gets EINVAL from the listen below, as from the kernel's.
		s.netPass(id)
		return
	}
	if err := seccomp.IDValid(s.fd, id); err != nil {
		s.stats.gone.Add(1)
		return
	}
	if err := unix.Listen(so.fd, int(i32(a[1]))); err != nil {
		errno := errnoOf(err)
		s.stats.netFailed.Add(1)
		s.log.Debug().Str("call", "listen").Int("tid", tid).Str("result", errnoString(errno)).Msg("listen failed")
		s.replyErrno(id, errno)
		return
	}
	local, ok := sockAddr(so.fd, false, w.net.name[:])
	l := layer.Listener{Local: local}
	var stat unix.Stat_t
	if unix.Fstat(so.fd, &stat) == nil {
		l.Inode = stat.Ino
	}
	if so.family == unix.AF_INET6 {
		v, _ := sockoptInt(so.fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY)
		l.V6Only = v != 0
	}
	so.close() // the process's socket listens; no duplicate stays behind
	l.Pid = tgid(tid)
	s.respond(seccomp.Resp{ID: id})
	if !ok {
		// a scoped IPv6 address (one of this machine's links): not a port the pod could have
		s.log.Debug().Int("tid", tid).Msg("listening on an address kwarp does not report")
		return
	}
	s.stats.netListen.Add(1)
	s.log.Debug().Int("pid", l.Pid).Stringer("local", l.Local).Uint64("inode", l.Inode).Bool("v6only", l.V6Only).Msg("listening")
	// Listening may take a moment: the next receiver takes over first.
	s.handOver(ctx, w, st)
	s.Incoming.Listening(ctx, l)
}

// errSupervisorFull: the supervisor's own fd table is full; the kernel serves the call.
var errSupervisorFull = errors.New("the supervisor has no fd to spare")

// accept serves accept(fd, addr, addrlen) and accept4(fd, addr, addrlen, flags).
func (s *Supervisor) accept(ctx context.Context, w *worker, st *serving, k kind) {
	id, tid, a := w.n.ID, int(w.n.Pid), &w.n.Data.Args
	nb := w.net
	addr, lenAddr := a[1], a[2]
	flags := 0
	if k == kAccept4 {
		flags = int(i32(a[3]))
	}
	// Without an address buffer the peer does not matter. Unknown flags (EINVAL), no length
	// or an unreadable or negative one are the kernel's to answer: the kernel takes the
	// connection first, then drops it (EFAULT, EINVAL), as the supervisor would have to.
	if addr == 0 || lenAddr == 0 || flags&^(unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC) != 0 ||
		w.mem.read(tid, lenAddr, nb.word[:4]) != nil {
		s.netPass(id)
		return
	}
	ulen := int32(nativeGet32(nb.word[:4]))
	if ulen < 0 {
		s.netPass(id)
		return
	}
	so, ok := s.openSock(tid, i32(a[0]))
	if !ok {
		s.netPass(id)
		return
	}
	defer so.close()
	if so.proto != layer.TCP || !listening(so.fd) {
		s.netPass(id) // not listening (EINVAL), UDP (EOPNOTSUPP): the kernel's
		return
	}
	cfd, n, err := s.acceptOne(ctx, w, st, &so, flags)
	switch {
	case errors.Is(err, errGone):
		s.stats.gone.Add(1)
		return
	case errors.Is(err, errSupervisorFull):
		s.log.Warn().Msg("supervisor: out of file descriptors; an accept runs untouched (the peer's address is this machine's)")
		s.netPass(id)
		return
	case err != nil:
		errno := errnoOf(err)
		if failure(errno) {
			s.stats.netFailed.Add(1)
		}
		s.replyErrno(id, errno)
		return
	}
	s.handAccepted(w, &so, cfd, n, addr, lenAddr, ulen, flags)
}

// acceptOne takes a connection from the listener so for the caller and returns the
// supervisor's fd for it, with the peer's address in w.net.name[:n]: at once when one is
// queued or the listener is non-blocking (EAGAIN when none is), else after waiting for one as
// the kernel's accept would (waitFor; the receiver role is handed on first).
func (s *Supervisor) acceptOne(ctx context.Context, w *worker, st *serving, so *sock, flags int) (int, int, error) {
	block := !nonblocking(so.fd, 0)
	var turn *sync.Mutex
	var deadline time.Time
	if block {
		var stat unix.Stat_t
		if unix.Fstat(so.fd, &stat) == nil {
			turn = &s.acceptMu[stat.Ino%uint64(len(s.acceptMu))]
		}
		if d := rcvTimeout(so.fd); d > 0 {
			deadline = time.Now().Add(d)
		}
	}
	for {
		if block && !pollReady(so.fd) {
			if !w.handedOver {
				s.handOver(ctx, w, st)
			}
			if err := s.waitFor(w, st, so.fd, unix.POLLIN, deadline); err != nil {
				return -1, 0, err
			}
		}
		if err := seccomp.IDValid(s.fd, w.n.ID); err != nil {
			return -1, 0, errGone
		}
		if turn != nil {
			turn.Lock()
			if !pollReady(so.fd) {
				turn.Unlock()
				continue // another caller took it
			}
		}
		fd, n, errno := accept4Raw(so.fd, w.net.name[:], flags&unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		if turn != nil {
			turn.Unlock()
		}
		switch errno {
		case 0:
			return fd, n, nil
		case unix.EAGAIN:
			if block {
				continue // the listener turned non-blocking meanwhile, and the queue is empty
			}
		case unix.EMFILE, unix.ENFILE:
			return -1, 0, errSupervisorFull // the connection is still queued
		}
		return -1, 0, errno
	}
}

// handAccepted writes the peer of the supervisor's new socket cfd (the kernel's address in
// w.net.name[:n], or the pod client's) to the caller's buffer and installs cfd in the process
// as its accept's result. A connection the process does not get is reset.
func (s *Supervisor) handAccepted(w *worker, so *sock, cfd, n int, addr, lenAddr uint64, ulen int32, flags int) {
	id, tid := w.n.ID, int(w.n.Pid)
	nb := w.net
	defer func() {
		if cfd >= 0 {
			resetConn(cfd)
			s.stats.netReset.Add(1)
		}
	}()
	out := nb.name[:n]
	peer, _, ok1 := parseSockaddr(out)
	var local netip.AddrPort
	ok2 := false
	if ok1 {
		local, ok2 = sockAddr(cfd, false, nb.out[:])
	}
	var client netip.AddrPort
	delivered := false
	if ok2 {
		if f, ok := s.Incoming.Delivered(local, peer); ok && f.Remote.IsValid() {
			if m := putSockaddr(nb.out[:], so.family, f.Remote); m > 0 {
				out, client, delivered = nb.out[:m], f.Remote, true
			}
		}
	}
	nativePut32(nb.word[:], uint32(len(out)))
	if w.mem.write(tid, addr, out[:min(int(ulen), len(out))]) != nil || w.mem.write(tid, lenAddr, nb.word[:4]) != nil {
		s.stats.netFailed.Add(1)
		s.log.Debug().Int("tid", tid).Stringer("peer", peer).Msg("accept: the caller's address buffer is not writable; the connection is reset (EFAULT)")
		s.replyErrno(id, unix.EFAULT)
		return
	}
	var newFlags uint32
	if flags&unix.SOCK_CLOEXEC != 0 {
		newFlags = unix.O_CLOEXEC
	}
	fd, installed, err := s.addFD(id, uint32(cfd), newFlags)
	if installed {
		unix.Close(cfd) // the process holds the socket now
		cfd = -1
	}
	switch {
	case err == unix.ENOENT || err == unix.ESRCH:
		s.stats.gone.Add(1)
		s.log.Debug().Int("tid", tid).Stringer("peer", peer).Msg("accept: the caller went away; the connection it was given is reset")
		return
	case err != nil && !installed:
		// EMFILE, ENFILE: the caller still waits for an answer
		errno := errnoOf(err)
		s.stats.netFailed.Add(1)
		lvl := s.log.Debug()
		if !s.resetWarned.Swap(true) {
			lvl = s.log.Warn()
		}
		lvl.Int("tid", tid).Stringer("peer", peer).Str("errno", errnoString(errno)).
			Msg("supervisor: the process cannot take an accepted connection; it is reset (the kernel would have left it queued)")
		s.replyErrno(id, errno)
		return
	case err != nil:
		s.log.Error().Err(err).Uint64("id", id).Msg("supervisor: answering an accept")
		return
	}
	s.stats.netAccepted.Add(1)
	if delivered {
		s.stats.netDelivered.Add(1)
		if e := s.log.Debug(); e.Enabled() { // Stringer boxes its argument even for a nil event
			e.Int("tid", tid).Int("fd", fd).Stringer("local", local).Stringer("peer", peer).
				Stringer("client", client).Msg("delivered connection accepted")
		}
	} else if e := s.log.Trace(); e.Enabled() {
		e.Int("tid", tid).Int("fd", fd).Stringer("local", local).Stringer("peer", peer).Msg("accepted")
	}
}

// listening says whether a socket listens (SO_ACCEPTCONN; tcp_info's state would do for TCP,
// not for MPTCP on every kernel).
func listening(fd int) bool {
	v, ok := sockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
	return ok && v != 0
}

// pollReady says whether a listener has a connection queued (or is in error: accept then
// says which), without waiting.
func pollReady(fd int) bool {
	pfd := [1]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, err := unix.Poll(pfd[:], 0)
	return err == nil && n > 0 && pfd[0].Revents != 0
}

// accept4Raw accepts on fd, the peer's address into name; it returns the new fd and the
// address's length. It may block (a blocking listener): a plain Syscall.
func accept4Raw(fd int, name []byte, flags int) (int, int, unix.Errno) {
	l := uint32(len(name))
	r, _, e := unix.Syscall6(unix.SYS_ACCEPT4, uintptr(fd), uintptr(unsafe.Pointer(&name[0])),
		uintptr(unsafe.Pointer(&l)), uintptr(flags), 0, 0)
	if e != 0 {
		return -1, 0, e
	}
	return int(r), min(int(l), len(name)), 0
}

// resetConn closes a connection with a reset (SO_LINGER 0) rather than a FIN: its client must
// not take it for one the server answered and closed.
func resetConn(fd int) {
	_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	unix.Close(fd)
}
