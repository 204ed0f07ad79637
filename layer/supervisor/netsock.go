package supervisor

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/kwarp-dev/kwarp/layer"
	"golang.org/x/sys/unix"
)

// The supervisor's side of the process's sockets: duplicates taken with pidfd_getfd, what
// they are, raw socket calls on them that do not allocate, and socket addresses as the
// process and the kernel lay them out.

// sock is the supervisor's duplicate of a process's socket.
type sock struct {
	fd     int
	family int // AF_INET or AF_INET6
	proto  layer.Proto
}

func (so *sock) close() {
	if so.fd >= 0 {
		unix.Close(so.fd)
		so.fd = -1
	}
}

// openSock duplicates the caller's fd with pidfd_getfd. ok is false when the call is not the
// layer's business: fd is not an AF_INET or AF_INET6 TCP (or MPTCP) or UDP socket, or it
// cannot be had (the kernel then answers the call itself: EBADF, ENOTSOCK).
func (s *Supervisor) openSock(tid int, fd int32) (sock, bool) {
	so := sock{fd: -1}
	if fd < 0 {
		return so, false
	}
	pfd, err := s.pidfd(tid)
	if err != nil {
		s.warnPidfd(err)
		return so, false
	}
	so.fd, err = unix.PidfdGetfd(pfd, int(fd), 0)
	unix.Close(pfd)
	if err != nil {
		if err != unix.EBADF {
			s.warnPidfd(err)
		}
		so.fd = -1
		return so, false
	}
	fam, ok1 := sockoptInt(so.fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	typ, ok2 := sockoptInt(so.fd, unix.SOL_SOCKET, unix.SO_TYPE)
	proto, ok3 := sockoptInt(so.fd, unix.SOL_SOCKET, unix.SO_PROTOCOL)
	so.family = fam
	switch {
	case !ok1 || !ok2 || !ok3 || (fam != unix.AF_INET && fam != unix.AF_INET6):
	case typ == unix.SOCK_STREAM && (proto == unix.IPPROTO_TCP || proto == unix.IPPROTO_MPTCP):
		// MPTCP is TCP to its peers when they do not speak it (the core does not); Go makes
		// its listeners MPTCP by default since 1.24
		so.proto = layer.TCP
	case typ == unix.SOCK_DGRAM && proto == unix.IPPROTO_UDP:
		so.proto = layer.UDP
	}
	if so.proto == 0 {
		so.close()
		return so, false
	}
	return so, true
}

// pidfd opens a pidfd for the thread tid: PIDFD_THREAD where the kernel has it (6.9);
// before, a pidfd can only name a thread group, so a thread that is not the leader is
// mapped to its TGID (the notification carries a TID).
func (s *Supervisor) pidfd(tid int) (int, error) {
	if !s.noPidfdThread.Load() {
		fd, err := unix.PidfdOpen(tid, pidfdThread)
		if err != unix.EINVAL {
			return fd, err
		}
		s.noPidfdThread.Store(true)
	}
	fd, err := unix.PidfdOpen(tid, 0)
	if err == nil {
		return fd, nil
	}
	if g := tgid(tid); g != tid {
		return unix.PidfdOpen(g, 0)
	}
	return -1, err
}

// warnPidfd says once that the supervisor cannot take the process's sockets (pidfd_getfd
// needs ptrace access to the process): outgoing traffic then stays on this machine.
func (s *Supervisor) warnPidfd(err error) {
	if err == unix.ESRCH || s.pidfdWarned.Swap(true) {
		return
	}
	s.log.Warn().Err(err).Msg("supervisor: cannot take a socket from the process (pidfd_open/pidfd_getfd); its connections stay on this machine")
}

// sockoptInt is getsockopt for an int option, without the allocation of unix.GetsockoptInt
// (this runs several times for every trapped socket call).
func sockoptInt(fd, level, opt int) (int, bool) {
	var v int32
	l := uint32(4)
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt),
		uintptr(unsafe.Pointer(&v)), uintptr(unsafe.Pointer(&l)), 0)
	return int(v), e == 0
}

// rcvTimeout is a socket's SO_RCVTIMEO, 0 for none, without the allocation of
// unix.GetsockoptTimeval.
func rcvTimeout(fd int) time.Duration {
	var tv unix.Timeval
	l := uint32(unsafe.Sizeof(tv))
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_RCVTIMEO,
		uintptr(unsafe.Pointer(&tv)), uintptr(unsafe.Pointer(&l)), 0)
	if e != 0 {
		return 0
	}
	return time.Duration(tv.Nano())
}

// tcpClosed says whether a TCP socket is in TCP_CLOSE: neither connected, connecting nor
// listening. tcp_info's first byte is the state; the kernel copies as much as asked.
func tcpClosed(fd int) bool {
	var state [1]byte
	l := uint32(1)
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.IPPROTO_TCP, unix.TCP_INFO,
		uintptr(unsafe.Pointer(&state[0])), uintptr(unsafe.Pointer(&l)), 0)
	return e == 0 && state[0] == tcpClose
}

// sockAddr is the local (getsockname) or peer (getpeername) address of a socket of ours,
// read into buf; ok is false when it has none or it is not an IP address.
func sockAddr(fd int, peer bool, buf []byte) (netip.AddrPort, bool) {
	nr := uintptr(unix.SYS_GETSOCKNAME)
	if peer {
		nr = unix.SYS_GETPEERNAME
	}
	l := uint32(len(buf))
	_, _, e := unix.RawSyscall(nr, uintptr(fd), uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&l)))
	if e != 0 {
		return netip.AddrPort{}, false
	}
	ap, _, ok := parseSockaddr(buf[:min(int(l), len(buf))])
	return ap, ok
}

// recvResult is what recvmsg said: the datagram's length, the source's length, the control
// data's length and msg_flags.
type recvResult struct {
	n, nameLen, oobn, flags int
}

func recvmsgRaw(fd int, p, oob, name []byte, flags int) (recvResult, unix.Errno) {
	var msg unix.Msghdr
	var iov unix.Iovec
	if len(p) > 0 {
		iov.Base = &p[0]
		iov.SetLen(len(p))
		msg.Iov, msg.Iovlen = &iov, 1
	}
	if len(oob) > 0 {
		msg.Control = &oob[0]
		msg.SetControllen(len(oob))
	}
	msg.Name, msg.Namelen = &name[0], uint32(len(name))
	r, _, e := unix.Syscall(unix.SYS_RECVMSG, uintptr(fd), uintptr(unsafe.Pointer(&msg)), uintptr(flags))
	if e != 0 {
		return recvResult{}, e
	}
	return recvResult{n: int(r), nameLen: min(int(msg.Namelen), len(name)), oobn: int(msg.Controllen), flags: int(msg.Flags)}, 0
}

// sendmsgRaw sends p (and oob) from fd to name (nil: the socket's peer). MSG_NOSIGNAL keeps
// a broken connection from raising SIGPIPE in the supervisor, which is not the process.
func sendmsgRaw(fd int, p, oob, name []byte, flags int) (int, unix.Errno) {
	var msg unix.Msghdr
	var iov unix.Iovec
	if len(p) > 0 {
		iov.Base = &p[0]
		iov.SetLen(len(p))
		msg.Iov, msg.Iovlen = &iov, 1
	}
	if len(oob) > 0 {
		msg.Control = &oob[0]
		msg.SetControllen(len(oob))
	}
	if len(name) > 0 {
		msg.Name, msg.Namelen = &name[0], uint32(len(name))
	}
	r, _, e := unix.Syscall(unix.SYS_SENDMSG, uintptr(fd), uintptr(unsafe.Pointer(&msg)), uintptr(flags|unix.MSG_NOSIGNAL))
	if e != 0 {
		return 0, e
	}
	return int(r), 0
}

// readSockaddr reads the address argument of connect or a send. ok is false for what the
// layer does not route: other families, lengths the kernel refuses, IPv6 addresses with a
// scope id, unreadable memory (the kernel then answers EFAULT).
func (w *worker) readSockaddr(tid int, addr uint64, alen int64) (netip.AddrPort, int, bool) {
	if addr == 0 || alen < 2 {
		return netip.AddrPort{}, 0, false
	}
	b := w.net.name[:min(alen, sizeofSockaddrIn6)]
	if w.mem.read(tid, addr, b) != nil {
		return netip.AddrPort{}, 0, false
	}
	return parseSockaddr(b)
}

// parseSockaddr decodes a sockaddr_in or sockaddr_in6 of len(b) bytes, as the kernel would
// take it; IPv4-mapped IPv6 addresses come out as IPv4. ok is false for anything else and for
// scoped IPv6 addresses.
func parseSockaddr(b []byte) (ap netip.AddrPort, family int, ok bool) {
	if len(b) < 2 {
		return ap, 0, false
	}
	family = int(nativeGet16(b))
	switch family {
	case unix.AF_INET:
		if len(b) < sizeofSockaddrIn {
			return ap, family, false
		}
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), beGet16(b[2:])), family, true
	case unix.AF_INET6:
		if len(b) < sin6LenRFC2133 {
			return ap, family, false
		}
		if len(b) >= sizeofSockaddrIn6 && nativeGet32(b[24:]) != 0 {
			return ap, family, false // a scope: one of this machine's links
		}
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[8:24])).Unmap(), beGet16(b[2:])), family, true
	}
	return ap, family, false
}

// putSockaddr encodes ap for a socket of family into b (at least sizeofSockaddrIn6 bytes)
// and returns its length: an IPv4 address is IPv4-mapped for an AF_INET6 socket, as the
// kernel reports it there. 0 when ap cannot be said in that family.
func putSockaddr(b []byte, family int, ap netip.AddrPort) int {
	a := ap.Addr()
	switch family {
	case unix.AF_INET:
		a = a.Unmap()
		if !a.Is4() {
			return 0
		}
		clear(b[:sizeofSockaddrIn])
		nativePut16(b, unix.AF_INET)
		bePut16(b[2:], ap.Port())
		a4 := a.As4()
		copy(b[4:], a4[:])
		return sizeofSockaddrIn
	case unix.AF_INET6:
		if !a.IsValid() {
			return 0
		}
		clear(b[:sizeofSockaddrIn6])
		nativePut16(b, unix.AF_INET6)
		bePut16(b[2:], ap.Port())
		a16 := a.As16()
		copy(b[8:], a16[:])
		return sizeofSockaddrIn6
	}
	return 0
}

// sockSet remembers sockets by inode: unique while the socket is open, where an fd number
// (per process, reused) or a local address (reused once the socket is closed) is not.
type sockSet struct {
	mu sync.Mutex
	n  atomic.Int32
	m  map[uint64]struct{}
}

// maxSocks bounds the set; sockets closed long ago are forgotten first, at random.
const maxSocks = 1 << 14

func (ss *sockSet) add(fd int) {
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil {
		return
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.m == nil {
		ss.m = map[uint64]struct{}{}
	}
	if _, ok := ss.m[st.Ino]; !ok && len(ss.m) >= maxSocks {
		for k := range ss.m {
			delete(ss.m, k)
			break
		}
	}
	ss.m[st.Ino] = struct{}{}
	ss.n.Store(int32(len(ss.m)))
}

func (ss *sockSet) has(fd int) bool {
	if ss.n.Load() == 0 {
		return false
	}
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil {
		return false
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	_, ok := ss.m[st.Ino]
	return ok
}

// The process's structs are in native byte order, sockaddr ports in network order.
func nativeGet16(b []byte) uint16    { return binary.NativeEndian.Uint16(b) }
func nativeGet32(b []byte) uint32    { return binary.NativeEndian.Uint32(b) }
func nativePut16(b []byte, v uint16) { binary.NativeEndian.PutUint16(b, v) }
func beGet16(b []byte) uint16        { return binary.BigEndian.Uint16(b) }
func bePut16(b []byte, v uint16)     { binary.BigEndian.PutUint16(b, v) }
func nativePut32(b []byte, v uint32) { binary.NativeEndian.PutUint32(b, v) }
func nativePut64(b []byte, v uint64) { binary.NativeEndian.PutUint64(b, v) }
