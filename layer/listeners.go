package layer

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ListeningSockets lists the TCP sockets that listen in this network namespace (the
// process's: kwarp runs it on this machine), by inode (Listener.Inode), with their
// addresses. The core calls it every few seconds to learn which of the listeners Listening
// reported are gone (see IncomingHandler). It asks the kernel through sock_diag
// (NETLINK_SOCK_DIAG, as ss does), which dumps listening sockets only: cheap on a busy
// machine too, and no privilege is needed.
func ListeningSockets() (map[uint64]netip.AddrPort, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("layer: sock_diag socket: %w", err)
	}
	defer unix.Close(fd)
	out := map[uint64]netip.AddrPort{}
	buf := make([]byte, 64<<10)
	for seq, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
		if err := listenDump(fd, uint32(seq+1), family, buf, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// inetDiagReqV2 is struct inet_diag_req_v2 after its netlink header.
type inetDiagReqV2 struct {
	Family   uint8
	Protocol uint8
	Ext      uint8
	_        uint8
	States   uint32
	ID       [48]byte // struct inet_diag_sockid: all zero, nothing to match
}

const (
	tcpListenState    = 10 // TCP_LISTEN
	sizeofInetDiagMsg = 72
)

var _ [unsafe.Sizeof(inetDiagReqV2{}) - 56]struct{}

func listenDump(fd int, seq uint32, family uint8, buf []byte, out map[uint64]netip.AddrPort) error {
	req := struct {
		h unix.NlMsghdr
		r inetDiagReqV2
	}{
		h: unix.NlMsghdr{Type: unix.SOCK_DIAG_BY_FAMILY, Flags: unix.NLM_F_REQUEST | unix.NLM_F_DUMP, Seq: seq},
		r: inetDiagReqV2{Family: family, Protocol: unix.IPPROTO_TCP, States: 1 << tcpListenState},
	}
	req.h.Len = uint32(unsafe.Sizeof(req))
	b := unsafe.Slice((*byte)(unsafe.Pointer(&req)), unsafe.Sizeof(req))
	if err := unix.Sendto(fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("layer: sock_diag request: %w", err)
	}
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("layer: sock_diag answer: %w", err)
		}
		for b := buf[:n]; len(b) >= unix.NLMSG_HDRLEN; {
			l := int(binary.NativeEndian.Uint32(b))
			if l < unix.NLMSG_HDRLEN || l > len(b) {
				return fmt.Errorf("layer: sock_diag answer: a message of %d bytes in %d", l, len(b))
			}
			typ, mseq, data := binary.NativeEndian.Uint16(b[4:]), binary.NativeEndian.Uint32(b[8:]), b[unix.NLMSG_HDRLEN:l]
			b = b[min((l+unix.NLMSG_ALIGNTO-1)&^(unix.NLMSG_ALIGNTO-1), len(b)):]
			if mseq != seq {
				continue
			}
			switch typ {
			case unix.NLMSG_DONE:
				return nil
			case unix.NLMSG_ERROR:
				if len(data) >= 4 {
					if e := int32(binary.NativeEndian.Uint32(data)); e != 0 {
						return fmt.Errorf("layer: sock_diag: %w", unix.Errno(-e))
					}
				}
				return nil
			case unix.SOCK_DIAG_BY_FAMILY:
				if ino, ap, ok := parseInetDiagMsg(data); ok {
					out[ino] = ap
				}
			}
		}
	}
}

// parseInetDiagMsg reads struct inet_diag_msg: u8 family, state, timer, retrans; struct
// inet_diag_sockid {be16 sport, dport; be32 src[4], dst[4]; u32 if; u32 cookie[2]}; u32
// expires, rqueue, wqueue, uid, inode. (Not the cookie: on some kernels a listener's
// idiag_cookie differs from its SO_COOKIE.)
func parseInetDiagMsg(d []byte) (uint64, netip.AddrPort, bool) {
	if len(d) < sizeofInetDiagMsg {
		return 0, netip.AddrPort{}, false
	}
	id := d[4:]
	port := binary.BigEndian.Uint16(id[0:])
	var a netip.Addr
	switch d[0] {
	case unix.AF_INET:
		a = netip.AddrFrom4([4]byte(id[4:8]))
	case unix.AF_INET6:
		a = netip.AddrFrom16([16]byte(id[4:20])).Unmap()
	default:
		return 0, netip.AddrPort{}, false
	}
	return uint64(binary.NativeEndian.Uint32(d[68:])), netip.AddrPortFrom(a, port), true
}
