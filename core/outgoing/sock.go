package outgoing

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// The process's socket is used through SyscallConn().Control only: (*os.File).Fd would put the
// shared open file description into blocking mode, changing the process's own socket.

// control runs fn on sock's descriptor.
func control(sock *os.File, fn func(fd int) error) error {
	rc, err := sock.SyscallConn()
	if err != nil {
		return fmt.Errorf("the process's socket: %w", err)
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return fmt.Errorf("the process's socket: %w", err)
	}
	return ferr
}

// sockInfo is what Connect needs to know of the process's socket.
type sockInfo struct {
	family    int
	nonblock  bool
	local     netip.AddrPort
	peer      netip.AddrPort
	connected bool
}

func inspect(sock *os.File) (sockInfo, error) {
	var si sockInfo
	err := control(sock, func(fd int) error {
		var err error
		if si.family, err = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN); err != nil {
			return fmt.Errorf("socket domain: %w", err)
		}
		if si.family != unix.AF_INET && si.family != unix.AF_INET6 {
			return fmt.Errorf("socket of family %d: %w", si.family, unix.EAFNOSUPPORT)
		}
		fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
		if err != nil {
			return fmt.Errorf("socket flags: %w", err)
		}
		si.nonblock = fl&unix.O_NONBLOCK != 0
		sa, err := unix.Getsockname(fd)
		if err != nil {
			return fmt.Errorf("getsockname: %w", err)
		}
		si.local = fromSockaddr(sa)
		if sa, err := unix.Getpeername(fd); err == nil {
			si.peer, si.connected = fromSockaddr(sa), true
		}
		return nil
	})
	return si, err
}

func localAddr(sock *os.File) (netip.AddrPort, error) {
	var ap netip.AddrPort
	err := control(sock, func(fd int) error {
		sa, err := unix.Getsockname(fd)
		if err != nil {
			return fmt.Errorf("getsockname: %w", err)
		}
		ap = fromSockaddr(sa)
		return nil
	})
	return ap, err
}

// connectSock connects the process's socket to sa. A non-blocking socket's connect under way
// is returned as EINPROGRESS, for the process to wait on as it would have; a blocking one is
// waited for here, as the process's connect would have waited.
func connectSock(ctx context.Context, sock *os.File, sa unix.Sockaddr, nonblock bool) error {
	return control(sock, func(fd int) error {
		err := unix.Connect(fd, sa)
		for err == unix.EINTR {
			// The connect goes on in the kernel; asking again says how it stands.
			err = unix.Connect(fd, sa)
		}
		switch {
		case err == nil:
			return nil
		case nonblock && (err == unix.EINPROGRESS || err == unix.EALREADY):
			return unix.EINPROGRESS
		case err == unix.EINPROGRESS || err == unix.EALREADY:
			// A blocking socket says EINPROGRESS when its SO_SNDTIMEO ran out, or EALREADY
			// after an interrupted attempt.
			return waitConnected(ctx, fd)
		case err == unix.EISCONN:
			return nil // an interrupted attempt finished in the meantime
		}
		return err
	})
}

func waitConnected(ctx context.Context, fd int) error {
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := unix.Poll(pfd, int((100 * time.Millisecond).Milliseconds()))
		if err == unix.EINTR || n == 0 {
			continue
		}
		if err != nil {
			return fmt.Errorf("wait for connect: %w", err)
		}
		soerr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
		if err != nil {
			return fmt.Errorf("connect outcome: %w", err)
		}
		if soerr != 0 {
			return unix.Errno(soerr)
		}
		return nil
	}
}

func fromSockaddr(sa unix.Sockaddr) netip.AddrPort {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(sa.Port))
	}
	return netip.AddrPort{}
}

// toSockaddr writes ap for a socket of family: an IPv6 socket takes IPv4 addresses mapped.
func toSockaddr(ap netip.AddrPort, family int) (unix.Sockaddr, error) {
	a := ap.Addr()
	switch {
	case family == unix.AF_INET && a.Unmap().Is4():
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: a.Unmap().As4()}, nil
	case family == unix.AF_INET6:
		return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: a.As16()}, nil
	}
	return nil, unix.EAFNOSUPPORT
}

// inForm writes ap as the process's socket sees addresses: mapped when the socket is IPv6 and
// spoke of IPv4 destinations as mapped.
func inForm(ap netip.AddrPort, mapped bool) netip.AddrPort {
	if mapped && ap.Addr().Is4() {
		return netip.AddrPortFrom(netip.AddrFrom16(ap.Addr().As16()), ap.Port())
	}
	return ap
}
