package netfilter

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"
)

// Connection tracking over netlink (ctnetlink), the little of it a flush by port needs: dump
// the table, delete the entries that match. The kernel deletes by tuple only (a flush with a
// filter takes marks, not ports), so this is what `conntrack -D -p tcp --dport P` does too.
// Doing it here instead of packing conntrack-tools keeps three libraries out of the image.
//
// Constants from linux/netfilter/nfnetlink_conntrack.h (x/sys/unix does not have them).
const (
	ipctnlMsgCtGet    = 1
	ipctnlMsgCtDelete = 2

	ctaTupleOrig = 1
	ctaID        = 12
	ctaZone      = 18

	ctaTupleIP    = 1
	ctaTupleProto = 2

	ctaIPv4Src = 1
	ctaIPv4Dst = 2
	ctaIPv6Src = 3
	ctaIPv6Dst = 4

	ctaProtoNum     = 1
	ctaProtoSrcPort = 2
	ctaProtoDstPort = 3

	nlaTypeMask = ^uint16(unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)
	nlmsgHdrLen = unix.SizeofNlMsghdr
	nfgenLen    = 4 // struct nfgenmsg
)

// ctEntry is a conntrack entry: its original direction, and the attributes that name it in a
// delete request (copied as the kernel sent them).
type ctEntry struct {
	family       uint8
	src, dst     netip.Addr
	proto        uint8
	sport, dport uint16
	key          []byte // CTA_TUPLE_ORIG, CTA_ZONE and CTA_ID attributes, each padded
}

// flushConntrack deletes the conntrack entries of TCP connections that came from outside the
// namespace to one of its addresses on port, and returns how many it deleted. It runs on a
// thread inside the namespace: the netlink socket and the address list are the namespace's.
//
// Connections the namespace opened itself (to port elsewhere, or to itself) are left alone:
// deleting their entries would let a mesh's OUTPUT rules redirect them mid-stream.
func flushConntrack(port uint16) (int, error) {
	local, err := localAddrs()
	if err != nil {
		return 0, err
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return 0, fmt.Errorf("conntrack: netlink socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, fmt.Errorf("conntrack: bind: %w", err)
	}
	tv := unix.Timeval{Sec: 5}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return 0, fmt.Errorf("conntrack: receive timeout: %w", err)
	}

	var victims []ctEntry
	err = ctRequest(fd, 1, ipctnlMsgCtGet, unix.NLM_F_DUMP, unix.AF_UNSPEC, nil, func(family uint8, attrs []byte) {
		e, ok := parseCtEntry(family, attrs)
		if ok && e.proto == unix.IPPROTO_TCP && e.dport == port && local[e.dst] && !local[e.src] && !e.src.IsLoopback() {
			victims = append(victims, e)
		}
	})
	if err != nil {
		return 0, fmt.Errorf("conntrack: dump: %w", err)
	}
	n := 0
	var errs []error
	for i, e := range victims {
		err := ctRequest(fd, uint32(i+2), ipctnlMsgCtDelete, unix.NLM_F_ACK, e.family, e.key, nil)
		switch {
		case err == nil:
			n++
		case errors.Is(err, unix.ENOENT): // ended meanwhile
		default:
			errs = append(errs, fmt.Errorf("conntrack: delete %s:%d → %s:%d: %w", e.src, e.sport, e.dst, e.dport, err))
		}
	}
	return n, errors.Join(errs...)
}

// localAddrs are the addresses of the calling thread's namespace.
func localAddrs() (map[netip.Addr]bool, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("conntrack: local addresses: %w", err)
	}
	local := map[netip.Addr]bool{}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				local[ip.Unmap()] = true
			}
		}
	}
	return local, nil
}

// ctRequest sends one ctnetlink request and reads the answer: each message of a dump goes to
// fn; an error message (an acknowledgement when its errno is 0) ends the answer.
func ctRequest(fd int, seq uint32, msgType uint16, flags uint16, family uint8, attrs []byte, fn func(family uint8, attrs []byte)) error {
	b := make([]byte, nlmsgHdrLen+nfgenLen, nlmsgHdrLen+nfgenLen+len(attrs))
	b = append(b, attrs...)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(len(b)))
	ne.PutUint16(b[4:], unix.NFNL_SUBSYS_CTNETLINK<<8|msgType)
	ne.PutUint16(b[6:], unix.NLM_F_REQUEST|flags)
	ne.PutUint32(b[8:], seq)
	b[nlmsgHdrLen] = family
	b[nlmsgHdrLen+1] = unix.NFNETLINK_V0
	if err := unix.Sendto(fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	buf := make([]byte, 64<<10)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return err
		}
		done, err := ctMessages(buf[:n], seq, fn)
		if done || err != nil {
			return err
		}
	}
}

// ctMessages walks the netlink messages in b that answer seq. done: the answer is complete.
func ctMessages(b []byte, seq uint32, fn func(family uint8, attrs []byte)) (done bool, err error) {
	ne := binary.NativeEndian
	for len(b) >= nlmsgHdrLen {
		l := int(ne.Uint32(b[0:]))
		if l < nlmsgHdrLen || l > len(b) {
			return true, errors.New("malformed netlink message")
		}
		typ, mseq, msg := ne.Uint16(b[4:]), ne.Uint32(b[8:]), b[nlmsgHdrLen:l]
		b = b[min(nlmAlign(l), len(b)):]
		if mseq != seq {
			continue // a late answer to an earlier request
		}
		switch typ {
		case unix.NLMSG_DONE:
			return true, nil
		case unix.NLMSG_ERROR:
			if len(msg) < 4 {
				return true, errors.New("short netlink error")
			}
			if e := int32(ne.Uint32(msg)); e != 0 {
				return true, unix.Errno(-e)
			}
			return true, nil
		default:
			if fn != nil && len(msg) >= nfgenLen {
				fn(msg[0], msg[nfgenLen:])
			}
		}
	}
	return false, nil
}

func nlmAlign(n int) int { return (n + 3) &^ 3 }

// forAttrs calls fn with each netlink attribute in b: its type, its payload and all of it
// (header included).
func forAttrs(b []byte, fn func(typ uint16, payload, raw []byte)) {
	ne := binary.NativeEndian
	for len(b) >= 4 {
		l := int(ne.Uint16(b[0:]))
		if l < 4 || l > len(b) {
			return
		}
		fn(ne.Uint16(b[2:])&nlaTypeMask, b[4:l], b[:l])
		b = b[min(nlmAlign(l), len(b)):]
	}
}

// appendAttr appends a whole attribute, padded.
func appendAttr(dst, raw []byte) []byte {
	dst = append(dst, raw...)
	for len(dst)%4 != 0 {
		dst = append(dst, 0)
	}
	return dst
}

// parseCtEntry reads the attributes of a conntrack message.
func parseCtEntry(family uint8, attrs []byte) (ctEntry, bool) {
	e := ctEntry{family: family}
	var tuple, zone, id []byte
	forAttrs(attrs, func(typ uint16, payload, raw []byte) {
		switch typ {
		case ctaTupleOrig:
			tuple = raw
			forAttrs(payload, func(typ uint16, payload, _ []byte) {
				switch typ {
				case ctaTupleIP:
					forAttrs(payload, func(typ uint16, p, _ []byte) {
						switch typ {
						case ctaIPv4Src, ctaIPv6Src:
							e.src, _ = netip.AddrFromSlice(p)
						case ctaIPv4Dst, ctaIPv6Dst:
							e.dst, _ = netip.AddrFromSlice(p)
						}
					})
				case ctaTupleProto:
					forAttrs(payload, func(typ uint16, p, _ []byte) {
						switch {
						case typ == ctaProtoNum && len(p) >= 1:
							e.proto = p[0]
						case typ == ctaProtoSrcPort && len(p) >= 2:
							e.sport = binary.BigEndian.Uint16(p)
						case typ == ctaProtoDstPort && len(p) >= 2:
							e.dport = binary.BigEndian.Uint16(p)
						}
					})
				}
			})
		case ctaZone:
			zone = raw
		case ctaID:
			id = raw
		}
	})
	if tuple == nil || !e.src.IsValid() || !e.dst.IsValid() {
		return ctEntry{}, false
	}
	e.src, e.dst = e.src.Unmap(), e.dst.Unmap()
	e.key = appendAttr(nil, tuple)
	if zone != nil {
		e.key = appendAttr(e.key, zone)
	}
	if id != nil {
		e.key = appendAttr(e.key, id) // the kernel refuses to delete a newer entry with the same tuple
	}
	return e, true
}
