package outgoing

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/kwarp-dev/kwarp/agent/api/tunnel"
	"github.com/kwarp-dev/kwarp/core/dnsroute"
	"github.com/kwarp-dev/kwarp/layer"
)

// fakeRemote stands for the pod: it "connects" a destination by dialling the local test
// server mapped to it, or fails with the errno the test set.
type fakeRemote struct {
	mu      sync.Mutex
	targets map[netip.AddrPort]netip.AddrPort
	errs    map[netip.AddrPort]error
	dials   map[netip.AddrPort]int
	// wrap hides the *net.TCPConn of a TCP tunnel (benchmarks of the generic copy path).
	wrap bool
	// delay holds every dial, as a cluster round trip would.
	delay time.Duration
}

func newFakeRemote() *fakeRemote {
	return &fakeRemote{targets: map[netip.AddrPort]netip.AddrPort{}, errs: map[netip.AddrPort]error{}, dials: map[netip.AddrPort]int{}}
}

func (f *fakeRemote) route(dst, to netip.AddrPort) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.targets[dst] = to
}

func (f *fakeRemote) fail(dst netip.AddrPort, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs[dst] = err
}

func (f *fakeRemote) dialCount(dst netip.AddrPort) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dials[dst]
}

var podLocal = netip.MustParseAddrPort("10.244.1.7:41000")

func (f *fakeRemote) Dial(ctx context.Context, p layer.Proto, dst netip.AddrPort) (Conn, netip.AddrPort, error) {
	f.mu.Lock()
	f.dials[dst]++
	to, ok := f.targets[dst]
	err := f.errs[dst]
	f.mu.Unlock()
	if f.delay > 0 {
		select {
		case <-ctx.Done():
			return nil, netip.AddrPort{}, ctx.Err()
		case <-time.After(f.delay):
		}
	}
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	if !ok {
		return nil, netip.AddrPort{}, unix.ENETUNREACH
	}
	switch p {
	case layer.TCP:
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", to.String())
		if err != nil {
			return nil, netip.AddrPort{}, err
		}
		if f.wrap {
			return wrapped{c.(*net.TCPConn)}, podLocal, nil
		}
		return c.(*net.TCPConn), podLocal, nil
	case layer.UDP:
		u, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(to))
		if err != nil {
			return nil, netip.AddrPort{}, err
		}
		ours, agent := net.Pipe()
		go fakeAgentUDP(agent, u)
		return pipeConn{ours}, podLocal, nil
	}
	return nil, netip.AddrPort{}, unix.EPROTONOSUPPORT
}

// wrapped is a tunnel that is not a *net.TCPConn, as the port-forward's streams are not.
type wrapped struct{ c *net.TCPConn }

func (w wrapped) Read(p []byte) (int, error)  { return w.c.Read(p) }
func (w wrapped) Write(p []byte) (int, error) { return w.c.Write(p) }
func (w wrapped) Close() error                { return w.c.Close() }
func (w wrapped) CloseWrite() error           { return w.c.CloseWrite() }

type pipeConn struct{ net.Conn }

func (pipeConn) CloseWrite() error { return nil }

// fakeAgentUDP is the agent's side of a UDP tunnel: frames to datagrams and back.
func fakeAgentUDP(tun net.Conn, u *net.UDPConn) {
	go func() {
		buf := make([]byte, tunnel.MaxDatagram)
		for {
			n, err := u.Read(buf)
			if err != nil {
				tun.Close()
				return
			}
			if tunnel.WriteDatagram(tun, buf[:n]) != nil {
				u.Close()
				return
			}
		}
	}()
	buf := make([]byte, tunnel.MaxDatagram)
	for {
		n, err := tunnel.ReadDatagram(tun, buf)
		if err != nil {
			u.Close()
			tun.Close()
			return
		}
		_, _ = u.Write(buf[:n])
	}
}

func logger(t testing.TB) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel)
}

func newHandler(t testing.TB, o Options) *Handler {
	t.Helper()
	if o.Remote == nil {
		o.Remote = newFakeRemote()
	}
	if o.LocalAddrs == nil {
		o.LocalAddrs = []netip.Addr{}
	}
	o.Log = logger(t)
	h, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Error(err)
		}
	})
	return h
}

// socket makes a socket as the process would: the test keeps it and hands Connect a
// duplicate, as the layer does.
func socket(t testing.TB, family, typ int, nonblock bool) int {
	t.Helper()
	flags := unix.SOCK_CLOEXEC
	if nonblock {
		flags |= unix.SOCK_NONBLOCK
	}
	fd, err := unix.Socket(family, typ|flags, 0)
	if err != nil {
		t.Fatal(err)
	}
	return fd
}

// connect runs Connect on a duplicate of fd, as the layer does, and closes the duplicate.
func connect(h *Handler, p layer.Proto, fd int, dst netip.AddrPort) error {
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(dup), "dup")
	defer f.Close()
	return h.Connect(context.Background(), p, f, dst)
}

// fileConn turns the process's socket into a net.Conn for the test to use.
func fileConn(t testing.TB, fd int) net.Conn {
	t.Helper()
	f := os.NewFile(uintptr(fd), "sock")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitWritable waits for a non-blocking connect and returns its outcome.
func waitWritable(t testing.TB, fd int) error {
	t.Helper()
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	if _, err := unix.Poll(pfd, 5000); err != nil {
		t.Fatal(err)
	}
	soerr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		t.Fatal(err)
	}
	if soerr != 0 {
		return unix.Errno(soerr)
	}
	return nil
}

func sockname(t testing.TB, fd int) netip.AddrPort {
	t.Helper()
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return fromSockaddr(sa)
}

func peername(t testing.TB, fd int) netip.AddrPort {
	t.Helper()
	sa, err := unix.Getpeername(fd)
	if err != nil {
		t.Fatal(err)
	}
	return fromSockaddr(sa)
}

// tcpServer serves each connection with fn on loopback.
func tcpServer(t testing.TB, network string, fn func(c *net.TCPConn)) netip.AddrPort {
	t.Helper()
	ip := net.IPv4(127, 0, 0, 1)
	if network == "tcp6" {
		ip = net.IPv6loopback
	}
	l, err := net.ListenTCP(network, &net.TCPAddr{IP: ip})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.AcceptTCP()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				fn(c)
			}()
		}
	}()
	return l.Addr().(*net.TCPAddr).AddrPort()
}

func echo(c *net.TCPConn) { _, _ = io.Copy(c, c) }

// udpServer answers each datagram with prefix+datagram, to its sender.
func udpServer(t testing.TB, prefix string) netip.AddrPort {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		c.Close()
		<-done
	})
	go func() {
		defer close(done)
		buf := make([]byte, 65535)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			_, _ = c.WriteToUDPAddrPort(append([]byte(prefix), buf[:n]...), from)
		}
	}()
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// eventually polls cond for up to 5 s.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// openFDs counts the open descriptors other than pipes: splice(2) keeps pipes in a
// sync.Pool, closed by finalizers at some collection. No collection is forced either, which
// would close a leaked socket through its finalizer and hide the leak.
func openFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if l, _ := os.Readlink("/proc/self/fd/" + e.Name()); !strings.HasPrefix(l, "pipe:") {
			n++
		}
	}
	return n
}

// settle waits for the goroutine and fd counts to fall back to a baseline.
func settle(t testing.TB, goroutines, fds int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		g, f := runtime.NumGoroutine(), openFDs(t)
		if g <= goroutines && f <= fds {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("%d goroutines (baseline %d), %d fds (baseline %d) remain:\n%s\n%s", g, goroutines, f, fds, fdList(), buf[:n])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type counter struct{ n atomic.Int64 }

func (c *counter) inc() { c.n.Add(1) }

// fakeResolver answers DNS queries with a fixed address per name, or fails.
type fakeResolver struct {
	addrs map[string]netip.Addr
	err   error
	calls counter
}

func (f *fakeResolver) Query(_ context.Context, _ netip.AddrPort, q []byte, _ bool) ([]byte, error) {
	f.calls.inc()
	if f.err != nil {
		return nil, f.err
	}
	return dnsReply(q, f.addrs)
}

func newDNS(t testing.TB, remote, local dnsroute.Resolver, localGlobs ...string) *dnsroute.Router {
	t.Helper()
	r, err := dnsroute.New(dnsroute.Config{Remote: remote, LocalResolver: local, LocalServer: netip.MustParseAddrPort("192.0.2.53:53"),
		Local: localGlobs, Log: logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

var errResolver = errors.New("the agent is gone")

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func readAll(t testing.TB, c net.Conn) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(b)
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func fdList() string {
	ents, _ := os.ReadDir("/proc/self/fd")
	var b strings.Builder
	for _, e := range ents {
		l, _ := os.Readlink("/proc/self/fd/" + e.Name())
		fmt.Fprintf(&b, "%s -> %s\n", e.Name(), l)
	}
	return b.String()
}
