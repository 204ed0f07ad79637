package outgoing

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kwarp-dev/kwarp/layer"
)

func TestUDPConnected(t *testing.T) {
	srv := udpServer(t, "echo:")
	remote := newFakeRemote()
	dst := ap("10.30.0.1:9000")
	remote.route(dst, srv)
	h := newHandler(t, Options{Rules: Rules{UDP: true}, Remote: remote})

	for _, tt := range []struct {
		family int
		dst    netip.AddrPort
	}{{unix.AF_INET, dst}, {unix.AF_INET6, ap("[::ffff:10.30.0.1]:9000")}} {
		fd := socket(t, tt.family, unix.SOCK_DGRAM, false)
		must(t, connect(h, layer.UDP, fd, tt.dst))
		local, peer := sockname(t, fd), peername(t, fd)
		if !h.Relayed(local) {
			t.Fatalf("Relayed(%v) = false right after connect", local)
		}
		c := fileConn(t, fd)
		for _, msg := range []string{"one", "two"} {
			_, err := c.Write([]byte(msg))
			must(t, err)
			b := make([]byte, 100)
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := c.Read(b)
			must(t, err)
			if got := string(b[:n]); got != "echo:"+msg {
				t.Fatalf("got %q", got)
			}
		}
		f, ok := h.Lookup(layer.UDP, local, peer)
		if !ok || f.Remote != tt.dst || f.PodLocal != inForm(podLocal, tt.dst.Addr().Is4In6()) {
			t.Fatalf("Lookup(%v, %v) = %+v, %v", local, peer, f, ok)
		}
	}
	// One flow per socket: the second datagram of a socket reused the first one's.
	if got := remote.dialCount(dst); got != 2 {
		t.Errorf("%d pod flows, want 2", got)
	}
}

func TestUDPUnconnected(t *testing.T) {
	srv := udpServer(t, "echo:")
	remote := newFakeRemote()
	dsts := []netip.AddrPort{ap("10.30.0.2:53"), ap("10.30.0.3:53")}
	for _, d := range dsts {
		remote.route(d, srv)
	}
	h := newHandler(t, Options{Rules: Rules{UDP: true}, Remote: remote})
	ctx := context.Background()

	// One unconnected socket talks to two destinations, as the layer sends it: to each
	// one's relay.
	fd := socket(t, unix.AF_INET, unix.SOCK_DGRAM, false)
	defer unix.Close(fd)
	must(t, unix.Bind(fd, &unix.SockaddrInet4{}))
	local := sockname(t, fd) // 0.0.0.0:port
	if h.Relayed(local) {
		t.Fatal("Relayed before anything was sent")
	}
	relays := map[netip.AddrPort]netip.AddrPort{}
	for _, d := range dsts {
		r, err := h.Relay(ctx, d)
		must(t, err)
		relays[r] = d
		again, err := h.Relay(ctx, d)
		must(t, err)
		if again != r {
			t.Fatalf("two relays for %v: %v and %v", d, r, again)
		}
		sa, err := toSockaddr(r, unix.AF_INET)
		must(t, err)
		must(t, unix.Sendto(fd, []byte("to "+d.String()), 0, sa))
	}
	if len(relays) != 2 {
		t.Fatalf("relays %v", relays)
	}
	// The layer asks Relayed when the process calls recvfrom, which may be before the
	// relay's reader took the datagram: it must say yes either way.
	if !h.Relayed(local) {
		t.Fatal("Relayed = false after a send")
	}
	for range dsts {
		b := make([]byte, 100)
		must(t, unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 5}))
		n, from, err := unix.Recvfrom(fd, b, 0)
		must(t, err)
		src := fromSockaddr(from)
		d, ok := relays[src]
		if !ok {
			t.Fatalf("answer from %v, not a relay", src)
		}
		if got := string(b[:n]); got != "echo:to "+d.String() {
			t.Fatalf("answer %q from the relay of %v", got, d)
		}
		f, ok := h.Lookup(layer.UDP, local, src)
		if !ok || f.Remote != d || f.PodLocal != podLocal {
			t.Fatalf("Lookup(%v, %v) = %+v, %v", local, src, f, ok)
		}
	}
	if _, ok := h.Lookup(layer.UDP, local, srv); ok {
		t.Fatal("Lookup found a flow for a peer that is not a relay")
	}
}

func TestUDPMappedUnconnected(t *testing.T) {
	srv := udpServer(t, "echo:")
	remote := newFakeRemote()
	dst := ap("[::ffff:10.30.0.4]:700")
	remote.route(ap("10.30.0.4:700"), srv)
	h := newHandler(t, Options{Rules: Rules{UDP: true}, Remote: remote})
	r, err := h.Relay(context.Background(), dst)
	must(t, err)
	if !r.Addr().Is4In6() {
		t.Fatalf("relay %v for a mapped destination is not mapped", r)
	}
	fd := socket(t, unix.AF_INET6, unix.SOCK_DGRAM, false)
	defer unix.Close(fd)
	sa, err := toSockaddr(r, unix.AF_INET6)
	must(t, err)
	must(t, unix.Sendto(fd, []byte("x"), 0, sa))
	must(t, unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 5}))
	b := make([]byte, 10)
	_, from, err := unix.Recvfrom(fd, b, 0)
	must(t, err)
	f, ok := h.Lookup(layer.UDP, sockname(t, fd), fromSockaddr(from))
	if !ok || f.Remote != dst {
		t.Fatalf("Lookup = %+v %v, want %v", f, ok, dst)
	}
}

func TestUDPIdleFlowsExpire(t *testing.T) {
	srv := udpServer(t, "")
	remote := newFakeRemote()
	dst := ap("10.30.0.5:1")
	remote.route(dst, srv)
	h := newHandler(t, Options{Rules: Rules{UDP: true}, Remote: remote, UDPIdle: 100 * time.Millisecond})
	fd := socket(t, unix.AF_INET, unix.SOCK_DGRAM, false)
	must(t, connect(h, layer.UDP, fd, dst))
	local := sockname(t, fd)
	c := fileConn(t, fd)
	roundTrip := func() {
		t.Helper()
		_, err := c.Write([]byte("x"))
		must(t, err)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = c.Read(make([]byte, 10))
		must(t, err)
	}
	roundTrip()
	r := h.relays[dst]
	flows := func() int {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.flows)
	}
	if flows() != 1 {
		t.Fatalf("%d flows", flows())
	}
	eventually(t, "the idle flow to close", func() bool { return flows() == 0 && !h.Relayed(local) })
	roundTrip()
	if n := remote.dialCount(dst); n != 2 {
		t.Fatalf("%d pod flows, want 2 (one reopened after idling)", n)
	}
}

func TestUDPPodFlowFails(t *testing.T) {
	remote := newFakeRemote()
	dst := ap("10.30.0.6:1")
	remote.fail(dst, unix.ENETUNREACH)
	h := newHandler(t, Options{Rules: Rules{UDP: true}, Remote: remote})
	fd := socket(t, unix.AF_INET, unix.SOCK_DGRAM, false)
	must(t, connect(h, layer.UDP, fd, dst))
	c := fileConn(t, fd)
	for range 5 {
		_, err := c.Write([]byte("lost"))
		must(t, err)
	}
	eventually(t, "a dial", func() bool { return remote.dialCount(dst) > 0 })
	time.Sleep(50 * time.Millisecond)
	if n := remote.dialCount(dst); n != 1 {
		t.Fatalf("%d dials for datagrams sent together, want 1 (no dial storm)", n)
	}
}

func TestUDPFamilyMismatch(t *testing.T) {
	h := newHandler(t, Options{Rules: Rules{UDP: true}})
	fd := socket(t, unix.AF_INET, unix.SOCK_DGRAM, false)
	defer unix.Close(fd)
	if err := connect(h, layer.UDP, fd, ap("[2001:db8::1]:53")); !errors.Is(err, unix.EAFNOSUPPORT) {
		t.Fatalf("IPv6 destination on an IPv4 socket: %v", err)
	}
}

// The relay's datagrams to the process go to whichever address it sent from, also when the
// process's socket is bound to this machine's own address rather than loopback.
func TestUDPFromOwnAddress(t *testing.T) {
	own := firstNonLoopback(t)
	srv := udpServer(t, "echo:")
	remote := newFakeRemote()
	dst := ap("10.30.0.7:9")
	remote.route(dst, srv)
	h := newHandler(t, Options{Rules: Rules{UDP: true}, Remote: remote})
	fd := socket(t, unix.AF_INET, unix.SOCK_DGRAM, false)
	must(t, unix.Bind(fd, &unix.SockaddrInet4{Addr: own.As4()}))
	must(t, connect(h, layer.UDP, fd, dst))
	c := fileConn(t, fd)
	_, err := c.Write([]byte("hi"))
	if errors.Is(err, unix.EPERM) {
		t.Skip("this machine's firewall forbids loopback datagrams from its own address")
	}
	must(t, err)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 10)
	n, err := c.Read(b)
	must(t, err)
	if string(b[:n]) != "echo:hi" {
		t.Fatalf("got %q", b[:n])
	}
	local := netip.MustParseAddrPort(c.LocalAddr().String())
	if f, ok := h.Lookup(layer.UDP, local, netip.MustParseAddrPort(c.RemoteAddr().String())); !ok || f.PodLocal != podLocal {
		t.Fatalf("Lookup = %+v %v", f, ok)
	}
}

func firstNonLoopback(t *testing.T) netip.Addr {
	t.Helper()
	addrs, err := InterfaceAddrs()
	must(t, err)
	for _, a := range addrs {
		if a.Is4() && !a.IsLoopback() {
			return a
		}
	}
	t.Skip("no non-loopback IPv4 address")
	return netip.Addr{}
}
