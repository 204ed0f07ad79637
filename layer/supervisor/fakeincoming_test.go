package supervisor_test

import (
	"context"
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

// fakeIncoming is the IncomingHandler of the tests. It records the listeners it is told of,
// and names the clients of the connections "the core" delivered: those the test made with
// deliver (bound first, recorded, then connected, as the core does), and any connection from
// 127.0.0.2, which the test programs make themselves: its client is 203.0.113.7 with the same
// port. PodLocal is 10.1.0.9 (fd00:1::9 for an IPv6 client) with the listener's port.
type fakeIncoming struct {
	tb        testing.TB
	listening chan layer.Listener

	mu    sync.Mutex
	ls    []layer.Listener
	peers map[netip.AddrPort]netip.AddrPort // the delivering socket's address → the client

	delivered atomic.Int64
}

var (
	selfDeliverer = netip.MustParseAddr("127.0.0.2")
	selfClient    = netip.MustParseAddr("203.0.113.7")
)

func newFakeIncoming(tb testing.TB) *fakeIncoming {
	return &fakeIncoming{tb: tb, listening: make(chan layer.Listener, 64), peers: map[netip.AddrPort]netip.AddrPort{}}
}

func (f *fakeIncoming) Listening(ctx context.Context, l layer.Listener) {
	if l.Local.Addr().Is4In6() {
		f.tb.Errorf("Listening got an IPv4-mapped address %s", l.Local)
	}
	f.mu.Lock()
	f.ls = append(f.ls, l)
	f.mu.Unlock()
	select {
	case f.listening <- l:
	default:
	}
}

func (f *fakeIncoming) listeners() []layer.Listener {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]layer.Listener(nil), f.ls...)
}

func (f *fakeIncoming) Delivered(local, peer netip.AddrPort) (layer.Flow, bool) {
	if local.Addr().Is4In6() || peer.Addr().Is4In6() {
		f.tb.Errorf("Delivered got an IPv4-mapped address: %s %s", local, peer)
	}
	f.mu.Lock()
	client, ok := f.peers[peer]
	f.mu.Unlock()
	if !ok && peer.Addr() == selfDeliverer {
		client, ok = netip.AddrPortFrom(selfClient, peer.Port()), true
	}
	if !ok {
		return layer.Flow{}, false
	}
	f.delivered.Add(1)
	pod := netip.MustParseAddr("10.1.0.9")
	if client.Addr().Is6() {
		pod = netip.MustParseAddr("fd00:1::9")
	}
	return layer.Flow{Remote: client, PodLocal: netip.AddrPortFrom(pod, local.Port())}, true
}

// waitListening waits for the next listener the fake is told of.
func (f *fakeIncoming) waitListening(t *testing.T) layer.Listener {
	t.Helper()
	select {
	case l := <-f.listening:
		return l
	case <-time.After(30 * time.Second):
		t.Fatal("Listening was never called")
	}
	return layer.Listener{}
}

// deliver connects to the listener at to as the core delivers a pod connection from client:
// bind a loopback address of to's family, record the mapping, then connect.
func (f *fakeIncoming) deliver(to, client netip.AddrPort) (net.Conn, error) {
	fam, from := unix.AF_INET, netip.AddrFrom4([4]byte{127, 0, 0, 1})
	if to.Addr().Is6() && !to.Addr().Is4In6() {
		fam, from = unix.AF_INET6, netip.IPv6Loopback()
	}
	fd, err := unix.Socket(fam, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	file := os.NewFile(uintptr(fd), "deliver")
	defer file.Close()
	if err := unix.Bind(fd, toSockaddr(fam, netip.AddrPortFrom(from, 0))); err != nil {
		return nil, err
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return nil, err
	}
	local := fromSockaddr(sa)
	f.mu.Lock()
	f.peers[local] = client
	f.mu.Unlock()
	if err := unix.Connect(fd, toSockaddr(fam, to)); err != nil {
		return nil, err
	}
	return net.FileConn(file)
}
