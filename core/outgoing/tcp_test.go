package outgoing

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kwarp-dev/kwarp/layer"
)

// requestReply reads the whole request (until the client's half-close), then answers and
// closes: it only works if the client's shutdown(SHUT_WR) reaches it while its answer can
// still go back.
func requestReply(c *net.TCPConn) {
	b, err := io.ReadAll(c)
	if err != nil {
		return
	}
	_, _ = c.Write([]byte("got " + string(b)))
}

func TestTCPRoundTripWithHalfClose(t *testing.T) {
	srv4 := tcpServer(t, "tcp4", requestReply)
	srv6 := tcpServer(t, "tcp6", requestReply)
	remote := newFakeRemote()
	dst4, dst6 := ap("10.20.0.1:80"), ap("[2001:db8::20]:80")
	remote.route(dst4, srv4)
	remote.route(dst6, srv6)
	h := newHandler(t, Options{Rules: Rules{TCP: true}, Remote: remote})

	tests := []struct {
		family int
		dst    netip.AddrPort
	}{
		{unix.AF_INET, dst4},
		{unix.AF_INET6, ap("[::ffff:10.20.0.1]:80")},
		{unix.AF_INET6, dst6},
	}
	for _, tt := range tests {
		for _, nonblock := range []bool{false, true} {
			t.Run(fmt.Sprintf("%v nonblock=%v", tt.dst, nonblock), func(t *testing.T) {
				fd := socket(t, tt.family, unix.SOCK_STREAM, nonblock)
				err := connect(h, layer.TCP, fd, tt.dst)
				if nonblock {
					if !errors.Is(err, unix.EINPROGRESS) {
						t.Fatalf("non-blocking connect: %v, want EINPROGRESS", err)
					}
					must(t, waitWritable(t, fd))
				} else {
					must(t, err)
				}
				// The process's own socket kept its mode: Connect must not change it.
				fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
				must(t, err)
				if got := fl&unix.O_NONBLOCK != 0; got != nonblock {
					t.Fatalf("O_NONBLOCK = %v after Connect, want %v", got, nonblock)
				}
				local, peer := sockname(t, fd), peername(t, fd)
				f, ok := h.Lookup(layer.TCP, local, peer)
				if !ok || f.Remote != tt.dst {
					t.Fatalf("Lookup(%v, %v) = %+v %v, want remote %v", local, peer, f, ok, tt.dst)
				}
				wantPod := inForm(podLocal, tt.dst.Addr().Is4In6())
				if f.PodLocal != wantPod {
					t.Fatalf("PodLocal %v, want %v", f.PodLocal, wantPod)
				}
				c := fileConn(t, fd).(*net.TCPConn)
				_, err = c.Write([]byte("hello"))
				must(t, err)
				must(t, c.CloseWrite())
				if got := readAll(t, c); got != "got hello" {
					t.Fatalf("answer %q", got)
				}
				c.Close()
				eventually(t, "the flow to end", func() bool { _, ok := h.Lookup(layer.TCP, local, peer); return !ok })
			})
		}
	}
}

// The server half-closes first (a greeting, then EOF); the client still sends and is heard.
func TestTCPServerHalfClose(t *testing.T) {
	got := make(chan string, 1)
	srv := tcpServer(t, "tcp4", func(c *net.TCPConn) {
		_, _ = c.Write([]byte("banner"))
		_ = c.CloseWrite()
		b, _ := io.ReadAll(c)
		got <- string(b)
	})
	remote := newFakeRemote()
	remote.route(ap("10.20.0.2:25"), srv)
	h := newHandler(t, Options{Rules: Rules{TCP: true}, Remote: remote})
	fd := socket(t, unix.AF_INET, unix.SOCK_STREAM, false)
	must(t, connect(h, layer.TCP, fd, ap("10.20.0.2:25")))
	c := fileConn(t, fd).(*net.TCPConn)
	buf := make([]byte, 6)
	_, err := io.ReadFull(c, buf)
	must(t, err)
	if n, err := c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("after the banner: %d, %v; want EOF", n, err)
	}
	_, err = c.Write([]byte("still talking"))
	must(t, err)
	must(t, c.CloseWrite())
	select {
	case s := <-got:
		if s != "still talking" {
			t.Fatalf("server heard %q", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the server never heard the client after its half-close")
	}
}

func TestTCPErrnoFromThePod(t *testing.T) {
	remote := newFakeRemote()
	h := newHandler(t, Options{Rules: Rules{TCP: true}, Remote: remote})
	for _, tt := range []struct {
		err  error
		want unix.Errno
	}{
		{unix.ECONNREFUSED, unix.ECONNREFUSED},
		{unix.ETIMEDOUT, unix.ETIMEDOUT},
		{fmt.Errorf("pod said: %w", unix.EHOSTUNREACH), unix.EHOSTUNREACH},
		{&os.SyscallError{Syscall: "connect", Err: unix.ENETUNREACH}, unix.ENETUNREACH},
	} {
		dst := ap("10.20.0.9:81")
		remote.fail(dst, tt.err)
		for _, nonblock := range []bool{false, true} {
			fd := socket(t, unix.AF_INET, unix.SOCK_STREAM, nonblock)
			err := connect(h, layer.TCP, fd, dst)
			var e unix.Errno
			if !errors.As(err, &e) || e != tt.want {
				t.Errorf("%v nonblock=%v: Connect = %v, want %v", tt.err, nonblock, err, tt.want)
			}
			if err, ok := err.(unix.Errno); !ok {
				t.Errorf("the errno is wrapped (%T); the layer hands it to the process as is", err)
			}
			// Nothing happened to the process's socket: it is not connected.
			if _, err := unix.Getpeername(fd); err != unix.ENOTCONN {
				t.Errorf("the socket is connected after a failed connect: %v", err)
			}
			unix.Close(fd)
		}
	}
	// Not an errno: an error with context, which the layer turns into ECONNREFUSED.
	remote.fail(ap("10.20.0.10:80"), errors.New("tunnel refused"))
	fd := socket(t, unix.AF_INET, unix.SOCK_STREAM, false)
	defer unix.Close(fd)
	err := connect(h, layer.TCP, fd, ap("10.20.0.10:80"))
	var e unix.Errno
	if err == nil || errors.As(err, &e) || !strings.Contains(err.Error(), "tunnel refused") {
		t.Fatalf("Connect = %v", err)
	}
	if h.hasFlow(normalize(sockname(t, fd))) {
		t.Fatal("a flow was registered for a failed connect")
	}
}

// A connect interrupted by a signal is trapped again on the socket this Handler connected.
func TestTCPConnectAgainIsSuccess(t *testing.T) {
	srv := tcpServer(t, "tcp4", echo)
	remote := newFakeRemote()
	remote.route(ap("10.20.0.3:7"), srv)
	other := tcpServer(t, "tcp4", echo)
	h := newHandler(t, Options{Rules: Rules{TCP: true}, Remote: remote})
	fd := socket(t, unix.AF_INET, unix.SOCK_STREAM, false)
	must(t, connect(h, layer.TCP, fd, ap("10.20.0.3:7")))
	must(t, connect(h, layer.TCP, fd, ap("10.20.0.3:7")))
	if n := remote.dialCount(ap("10.20.0.3:7")); n != 1 {
		t.Fatalf("%d pod connects, want 1", n)
	}
	c := fileConn(t, fd)
	_, err := c.Write([]byte("x"))
	must(t, err)
	b := make([]byte, 1)
	_, err = io.ReadFull(c, b)
	must(t, err)

	// A socket connected elsewhere is the kernel's EISCONN.
	fd2 := socket(t, unix.AF_INET, unix.SOCK_STREAM, false)
	defer unix.Close(fd2)
	must(t, unix.Connect(fd2, &unix.SockaddrInet4{Port: int(other.Port()), Addr: [4]byte{127, 0, 0, 1}}))
	if err := connect(h, layer.TCP, fd2, ap("10.20.0.3:7")); err != unix.EISCONN {
		t.Fatalf("connect of a connected socket: %v", err)
	}
}

// A socket the process bound itself keeps its address.
func TestTCPBoundSocket(t *testing.T) {
	srv := tcpServer(t, "tcp4", echo)
	remote := newFakeRemote()
	remote.route(ap("10.20.0.4:7"), srv)
	h := newHandler(t, Options{Rules: Rules{TCP: true}, Remote: remote})
	fd := socket(t, unix.AF_INET, unix.SOCK_STREAM, false)
	must(t, unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1))
	must(t, unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}))
	bound := sockname(t, fd)
	must(t, connect(h, layer.TCP, fd, ap("10.20.0.4:7")))
	if got := sockname(t, fd); got != bound {
		t.Fatalf("local address %v, bound %v", got, bound)
	}
	c := fileConn(t, fd)
	_, err := c.Write([]byte("ping"))
	must(t, err)
	b := make([]byte, 4)
	_, err = io.ReadFull(c, b)
	must(t, err)
}

func TestTCPPodClosesAndResets(t *testing.T) {
	srv := tcpServer(t, "tcp4", func(c *net.TCPConn) {
		_, _ = c.Write([]byte("bye"))
	})
	reset := tcpServer(t, "tcp4", func(c *net.TCPConn) {
		b := make([]byte, 1)
		_, _ = c.Read(b)
		_ = c.SetLinger(0) // closes with RST
	})
	remote := newFakeRemote()
	remote.route(ap("10.20.0.5:1"), srv)
	remote.route(ap("10.20.0.5:2"), reset)
	h := newHandler(t, Options{Rules: Rules{TCP: true}, Remote: remote})

	fd := socket(t, unix.AF_INET, unix.SOCK_STREAM, false)
	must(t, connect(h, layer.TCP, fd, ap("10.20.0.5:1")))
	c := fileConn(t, fd)
	if got := readAll(t, c); got != "bye" {
		t.Fatalf("read %q", got)
	}

	fd = socket(t, unix.AF_INET, unix.SOCK_STREAM, false)
	must(t, connect(h, layer.TCP, fd, ap("10.20.0.5:2")))
	c = fileConn(t, fd)
	_, err := c.Write([]byte("x"))
	must(t, err)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = io.ReadAll(c)
	if !errors.Is(err, unix.ECONNRESET) {
		t.Fatalf("after the pod's reset: %v, want ECONNRESET", err)
	}
}

// The process closes its socket: the pod side is closed too.
func TestTCPProcessCloses(t *testing.T) {
	closed := make(chan struct{})
	srv := tcpServer(t, "tcp4", func(c *net.TCPConn) {
		_, _ = io.Copy(io.Discard, c)
		close(closed)
	})
	remote := newFakeRemote()
	remote.route(ap("10.20.0.6:1"), srv)
	h := newHandler(t, Options{Rules: Rules{TCP: true}, Remote: remote})
	fd := socket(t, unix.AF_INET, unix.SOCK_STREAM, false)
	must(t, connect(h, layer.TCP, fd, ap("10.20.0.6:1")))
	local := sockname(t, fd)
	unix.Close(fd)
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the pod side never saw the process's close")
	}
	eventually(t, "the flow to be forgotten", func() bool { return !h.hasFlow(normalize(local)) })
}

func TestTCPConcurrent(t *testing.T) {
	srv := tcpServer(t, "tcp4", echo)
	remote := newFakeRemote()
	dst := ap("10.20.0.7:7")
	remote.route(dst, srv)
	remote.delay = 5 * time.Millisecond
	h := newHandler(t, Options{Rules: Rules{TCP: true}, Remote: remote})
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- oneEcho(h, dst, i%2 == 0, bytes.Repeat([]byte{byte(i)}, 1000+i))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if got := remote.dialCount(dst); got != n {
		t.Errorf("%d pod connects, want %d", got, n)
	}
	eventually(t, "every flow to end", func() bool {
		h.mu.RLock()
		defer h.mu.RUnlock()
		return len(h.flows) == 0 && len(h.all) == 0 && len(h.waiting) == 0 && len(h.parked) == 0
	})
}

// oneEcho connects through h and checks that msg comes back; it reports instead of failing,
// for use from many goroutines.
func oneEcho(h *Handler, dst netip.AddrPort, nonblock bool, msg []byte) error {
	flags := unix.SOCK_STREAM | unix.SOCK_CLOEXEC
	if nonblock {
		flags |= unix.SOCK_NONBLOCK
	}
	fd, err := unix.Socket(unix.AF_INET, flags, 0)
	if err != nil {
		return err
	}
	err = connect(h, layer.TCP, fd, dst)
	if nonblock && err == unix.EINPROGRESS {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		_, err = unix.Poll(pfd, 5000)
	}
	if err != nil {
		unix.Close(fd)
		return fmt.Errorf("connect: %w", err)
	}
	f := os.NewFile(uintptr(fd), "sock")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(msg); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if !bytes.Equal(got, msg) {
		return errors.New("echo differs")
	}
	return nil
}

func TestTCPStrangerOnTheListener(t *testing.T) {
	h := newHandler(t, Options{Rules: Rules{TCP: true}, PairTimeout: 50 * time.Millisecond})
	c, err := net.Dial("tcp", h.l4addr.String())
	must(t, err)
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("a connection nobody registered got data")
	}
	eventually(t, "the parked connection to go", func() bool {
		h.mu.RLock()
		defer h.mu.RUnlock()
		return len(h.parked) == 0
	})
	if _, ok := h.Lookup(layer.TCP, netip.MustParseAddrPort(c.LocalAddr().String()), h.l4addr); ok {
		t.Fatal("Lookup found a stranger")
	}
}

func TestClosedHandler(t *testing.T) {
	srv := tcpServer(t, "tcp4", echo)
	remote := newFakeRemote()
	remote.route(ap("10.20.0.8:7"), srv)
	h := newHandler(t, Options{Rules: Rules{TCP: true, UDP: true}, Remote: remote})
	must(t, h.Close())
	must(t, h.Close())
	fd := socket(t, unix.AF_INET, unix.SOCK_STREAM, false)
	defer unix.Close(fd)
	if err := connect(h, layer.TCP, fd, ap("10.20.0.8:7")); err == nil {
		t.Fatal("Connect after Close succeeded")
	}
	if _, err := h.Relay(context.Background(), ap("10.20.0.8:7")); err == nil {
		t.Fatal("Relay after Close succeeded")
	}
}
