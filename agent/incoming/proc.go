package incoming

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// soOriginalDst is SO_ORIGINAL_DST (and IP6T_SO_ORIGINAL_DST at SOL_IPV6): the destination a
// connection had before nat REDIRECT rewrote it.
const soOriginalDst = 80

// originalDst is where c's client connected to in the pod, before the redirect.
func originalDst(c net.Conn) (netip.AddrPort, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return netip.AddrPort{}, errors.New("not a socket")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, err
	}
	local := addrPort(c.LocalAddr()).Addr()
	var ap netip.AddrPort
	var gerr error
	cerr := rc.Control(func(fd uintptr) {
		if local.Is4() || local.Is4In6() {
			// An IPv4 connection, on an AF_INET socket or a dual-stack AF_INET6 one: the IPv4
			// nat entry.
			var sa unix.RawSockaddrInet4
			if gerr = getsockopt(fd, unix.SOL_IP, soOriginalDst, unsafe.Pointer(&sa), unsafe.Sizeof(sa)); gerr == nil {
				ap = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), ntohs(sa.Port))
			}
			return
		}
		var sa unix.RawSockaddrInet6
		if gerr = getsockopt(fd, unix.SOL_IPV6, soOriginalDst, unsafe.Pointer(&sa), unsafe.Sizeof(sa)); gerr == nil {
			ap = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), ntohs(sa.Port))
		}
	})
	if cerr != nil {
		return netip.AddrPort{}, cerr
	}
	if gerr != nil {
		return netip.AddrPort{}, fmt.Errorf("SO_ORIGINAL_DST: %w", gerr)
	}
	return ap, nil
}

func getsockopt(fd uintptr, level, opt int, p unsafe.Pointer, size uintptr) error {
	l := uint32(size)
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, uintptr(level), uintptr(opt), uintptr(p), uintptr(unsafe.Pointer(&l)), 0)
	if e != 0 {
		return e
	}
	return nil
}

// ntohs reads a port as the kernel stores it in a sockaddr (network order).
func ntohs(p uint16) uint16 {
	var b [2]byte
	*(*uint16)(unsafe.Pointer(&b[0])) = p
	return binary.BigEndian.Uint16(b[:])
}

// podPorts are the TCP ports the target's namespace listens on, less the agent's own: for the
// client to warn about a port nothing listens on.
func (s *Server) podPorts() []uint32 {
	if s.opts.TargetPID == nil {
		return nil
	}
	pid, err := s.opts.TargetPID()
	if err != nil {
		s.log.Debug().Err(err).Msg("incoming: the target's listening ports")
		return nil
	}
	skip := map[int]bool{}
	s.mu.Lock()
	for _, p := range s.ports {
		skip[p.lport] = true
	}
	s.mu.Unlock()
	if s.opts.AgentPorts != nil {
		for _, p := range s.opts.AgentPorts() {
			skip[p] = true
		}
	}
	var out []uint32
	for _, name := range []string{"tcp", "tcp6"} {
		f, err := os.Open(filepath.Join(s.opts.ProcRoot, strconv.Itoa(pid), "net", name))
		if err != nil {
			continue // tcp6 is missing where IPv6 is disabled
		}
		ports, err := listeningPorts(f)
		f.Close()
		if err != nil {
			s.log.Debug().Err(err).Str("file", name).Msg("incoming: the target's listening ports")
		}
		for _, p := range ports {
			if !skip[p] && !slices.Contains(out, uint32(p)) {
				out = append(out, uint32(p))
			}
		}
	}
	slices.Sort(out)
	return out
}

// listeningPorts reads /proc/net/tcp{,6}: the local port of every socket in state 0A
// (TCP_LISTEN).
func listeningPorts(r io.Reader) ([]int, error) {
	var ports []int
	sc := bufio.NewScanner(r)
	first := true
	for sc.Scan() {
		if first { // the header
			first = false
			continue
		}
		f := strings.Fields(sc.Text())
		if len(f) < 4 || f[3] != "0A" {
			continue
		}
		i := strings.LastIndexByte(f[1], ':')
		if i < 0 {
			continue
		}
		p, err := strconv.ParseUint(f[1][i+1:], 16, 16)
		if err != nil || p == 0 {
			continue
		}
		if !slices.Contains(ports, int(p)) {
			ports = append(ports, int(p))
		}
	}
	return ports, sc.Err()
}

// gatewayCache remembers the target's default gateway for a while: it is read for every
// connection and changes about never.
type gatewayCache struct {
	mu   sync.Mutex
	at   time.Time
	addr netip.Addr
}

const gatewayTTL = 10 * time.Second

// fromNode reports whether a connection from addr comes from the node: one of
// Options.NodeAddrs or the pod's default gateway (the node's end of the pod's link, where the
// kubelet's probes come from with bridge CNIs).
func (s *Server) fromNode(addr netip.Addr) bool {
	if slices.Contains(s.opts.NodeAddrs, addr) {
		return true
	}
	gw := s.gateway()
	return gw.IsValid() && gw == addr
}

func (s *Server) gateway() netip.Addr {
	if s.opts.TargetPID == nil {
		return netip.Addr{}
	}
	g := &s.gw
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.at.IsZero() && time.Since(g.at) < gatewayTTL {
		return g.addr
	}
	g.at = time.Now()
	g.addr = netip.Addr{}
	pid, err := s.opts.TargetPID()
	if err != nil {
		return g.addr
	}
	f, err := os.Open(filepath.Join(s.opts.ProcRoot, strconv.Itoa(pid), "net", "route"))
	if err != nil {
		return g.addr
	}
	defer f.Close()
	g.addr = defaultGateway(f)
	return g.addr
}

// defaultGateway reads /proc/net/route: the gateway of the default route (destination and
// mask 0), in the kernel's byte order (little-endian hex on the machines kwarp runs on).
func defaultGateway(r io.Reader) netip.Addr {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		// Iface Destination Gateway Flags RefCnt Use Metric Mask ...
		if len(f) < 8 || f[1] != "00000000" || f[7] != "00000000" {
			continue
		}
		b, err := hex.DecodeString(f[2])
		if err != nil || len(b) != 4 {
			continue
		}
		a := netip.AddrFrom4([4]byte{b[3], b[2], b[1], b[0]})
		if a.IsUnspecified() {
			continue
		}
		return a
	}
	return netip.Addr{}
}
