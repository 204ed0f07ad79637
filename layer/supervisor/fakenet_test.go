package supervisor_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kwarp-dev/kwarp/layer"
	"golang.org/x/sys/unix"
)

// fakeNet is the NetHandler of the tests: 10.255.0.0/16 and fd00:ff::/64 are "the cluster",
// served by servers on this machine the way the core will serve them. TCP: Connect connects
// the process's socket to a local server, which greets each connection with the destination
// the process asked for ("hello 10.255.0.1:80") and then echoes. UDP: Relay returns a local
// relay per destination that answers each datagram from its own address with
// "echo <dst> <payload>"; Lookup turns the relay's address back into the destination.
type fakeNet struct {
	tb         testing.TB
	tcp4, tcp6 *net.TCPListener

	// refused destinations get ECONNREFUSED; slow ones answer after the delay; silent ones
	// have a relay that never answers; broken ones fail with an error that is no errno.
	refused, silent, broken map[netip.Addr]bool
	slow                    map[netip.Addr]time.Duration

	mu        sync.Mutex
	flows     map[netip.AddrPort]netip.AddrPort // TCP: the process's local address → dst
	relays    map[netip.AddrPort]*net.UDPConn   // dst → relay
	byRelay   map[netip.AddrPort]netip.AddrPort // relay address → dst
	connected map[netip.AddrPort]bool           // UDP sockets Connect connected to a relay

	routes, connects, relayCalls, lookups atomic.Int64
}

var (
	clusterV4 = netip.MustParsePrefix("10.255.0.0/16")
	clusterV6 = netip.MustParsePrefix("fd00:ff::/64")
)

func newFakeNet(tb testing.TB) *fakeNet {
	f := &fakeNet{
		tb:      tb,
		refused: map[netip.Addr]bool{netip.MustParseAddr("10.255.0.9"): true},
		silent:  map[netip.Addr]bool{netip.MustParseAddr("10.255.0.99"): true},
		broken:  map[netip.Addr]bool{netip.MustParseAddr("10.255.0.13"): true},
		slow: map[netip.Addr]time.Duration{
			netip.MustParseAddr("10.255.0.3"): 300 * time.Millisecond,
			netip.MustParseAddr("10.255.0.4"): 20 * time.Second,
		},
		flows:     map[netip.AddrPort]netip.AddrPort{},
		relays:    map[netip.AddrPort]*net.UDPConn{},
		byRelay:   map[netip.AddrPort]netip.AddrPort{},
		connected: map[netip.AddrPort]bool{},
	}
	var err error
	if f.tcp4, err = net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
		tb.Fatal(err)
	}
	if f.tcp6, err = net.ListenTCP("tcp6", &net.TCPAddr{IP: net.IPv6loopback}); err != nil {
		tb.Skipf("no IPv6 loopback: %v", err)
	}
	for _, l := range []*net.TCPListener{f.tcp4, f.tcp6} {
		go f.serveTCP(l)
	}
	tb.Cleanup(func() {
		f.tcp4.Close()
		f.tcp6.Close()
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, r := range f.relays {
			r.Close()
		}
	})
	return f
}

func (f *fakeNet) serveTCP(l *net.TCPListener) {
	for {
		c, err := l.AcceptTCP()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			peer := c.RemoteAddr().(*net.TCPAddr).AddrPort()
			peer = netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port())
			// The handshake completes inside Connect, before it records the flow.
			var dst netip.AddrPort
			for range 200 {
				f.mu.Lock()
				dst = f.flows[peer]
				f.mu.Unlock()
				if dst.IsValid() {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			fmt.Fprintf(c, "hello %s\n", dst)
			io.Copy(c, c)
		}()
	}
}

func (f *fakeNet) RouteOutgoing(p layer.Proto, dst netip.AddrPort) layer.Route {
	f.routes.Add(1)
	if clusterV4.Contains(dst.Addr()) || clusterV6.Contains(dst.Addr()) {
		return layer.Remote
	}
	return layer.Local
}

func (f *fakeNet) Connect(ctx context.Context, p layer.Proto, sock *os.File, dst netip.AddrPort) error {
	f.connects.Add(1)
	if dst.Addr().Is4In6() {
		f.tb.Errorf("Connect got an IPv4-mapped destination %s", dst)
	}
	if d := f.slow[dst.Addr()]; d > 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	switch {
	case f.refused[dst.Addr()]:
		return unix.ECONNREFUSED
	case f.broken[dst.Addr()]:
		return errors.New("the agent went away")
	}
	var to netip.AddrPort
	if p == layer.TCP {
		l := f.tcp4
		if dst.Addr().Is6() {
			l = f.tcp6
		}
		to = l.Addr().(*net.TCPAddr).AddrPort()
	} else {
		r, err := f.Relay(ctx, dst)
		if err != nil {
			return err
		}
		to = r
	}
	raw, err := sock.SyscallConn()
	if err != nil {
		return err
	}
	var cerr error
	var local netip.AddrPort
	err = raw.Control(func(fd uintptr) {
		dom, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN)
		if err != nil {
			cerr = err
			return
		}
		cerr = unix.Connect(int(fd), toSockaddr(dom, to))
		if cerr != nil && cerr != unix.EINPROGRESS {
			return
		}
		sa, err := unix.Getsockname(int(fd))
		if err != nil {
			cerr = err
			return
		}
		local = fromSockaddr(sa)
	})
	if err != nil {
		return err
	}
	if cerr != nil && cerr != unix.EINPROGRESS {
		return fmt.Errorf("connect to %s: %w", to, cerr)
	}
	f.mu.Lock()
	if p == layer.TCP {
		f.flows[local] = dst
	} else {
		f.connected[local] = true
	}
	f.mu.Unlock()
	return cerr // nil or EINPROGRESS, as the contract says
}

func (f *fakeNet) Relay(ctx context.Context, dst netip.AddrPort) (netip.AddrPort, error) {
	f.relayCalls.Add(1)
	if dst.Addr().Is4In6() {
		f.tb.Errorf("Relay got an IPv4-mapped destination %s", dst)
	}
	if f.broken[dst.Addr()] {
		return netip.AddrPort{}, errors.New("no relay for you")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if r, ok := f.relays[dst]; ok {
		return r.LocalAddr().(*net.UDPAddr).AddrPort(), nil
	}
	network, ip := "udp4", net.IPv4(127, 0, 0, 1)
	if dst.Addr().Is6() {
		network, ip = "udp6", net.IPv6loopback
	}
	r, err := net.ListenUDP(network, &net.UDPAddr{IP: ip})
	if err != nil {
		return netip.AddrPort{}, err
	}
	addr := r.LocalAddr().(*net.UDPAddr).AddrPort()
	f.relays[dst], f.byRelay[addr] = r, dst
	silent := f.silent[dst.Addr()]
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := r.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if !silent {
				r.WriteToUDPAddrPort(fmt.Appendf(nil, "echo %s %s", dst, buf[:n]), from)
			}
		}
	}()
	return addr, nil
}

func (f *fakeNet) Lookup(p layer.Proto, local, peer netip.AddrPort) (layer.Flow, bool) {
	f.lookups.Add(1)
	if local.Addr().Is4In6() || peer.Addr().Is4In6() {
		f.tb.Errorf("Lookup got an IPv4-mapped address: %s %s", local, peer)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if p == layer.TCP {
		dst, ok := f.flows[local]
		if !ok {
			return layer.Flow{}, false
		}
		podIP := netip.MustParseAddr("10.1.0.9")
		if dst.Addr().Is6() {
			podIP = netip.MustParseAddr("fd00:1::9")
		}
		return layer.Flow{Remote: dst, PodLocal: netip.AddrPortFrom(podIP, local.Port())}, true
	}
	dst, ok := f.byRelay[peer]
	return layer.Flow{Remote: dst}, ok
}

func (f *fakeNet) Relayed(local netip.AddrPort) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.connected[local]
}

func toSockaddr(family int, ap netip.AddrPort) unix.Sockaddr {
	if family == unix.AF_INET {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().Unmap().As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}

func fromSockaddr(sa unix.Sockaddr) netip.AddrPort {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(sa.Port))
	}
	return netip.AddrPort{}
}

// localServer is a TCP server on this machine that the process reaches directly: it greets
// with "local hello".
func localServer(tb testing.TB) netip.AddrPort {
	l, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "local hello\n")
			go func() {
				defer c.Close()
				bufio.NewReader(c).ReadString('\n')
			}()
		}
	}()
	return l.Addr().(*net.TCPAddr).AddrPort()
}
