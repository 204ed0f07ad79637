package netns

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kwarp-dev/kwarp/agent/netns/netnstest"
	"github.com/kwarp-dev/kwarp/agent/target"
	"golang.org/x/sys/unix"
)

// locator serves whatever process the test points it at.
type locator struct {
	mu  sync.Mutex
	pid int
	err error
}

func (l *locator) Process() (*target.Process, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return nil, l.err
	}
	return target.Open("/proc", l.pid)
}

func (l *locator) set(pid int) {
	l.mu.Lock()
	l.pid = pid
	l.mu.Unlock()
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func addrOf(t *testing.T, a net.Addr) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		t.Fatal(err)
	}
	return ap
}

// echo answers every connection of l with what it reads.
func echo(l net.Listener) {
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
}

func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(msg))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
		t.Fatalf("echo: %q, %v; want %q", buf, err, msg)
	}
}

func TestDialFromTheTargetNamespace(t *testing.T) {
	pid := netnstest.Start(t)
	d := New(&locator{pid: pid})
	t.Cleanup(d.Close)
	ctx := ctxT(t)

	podTCP := netnstest.Listen(t, pid, "tcp", "127.0.0.1:0")
	echo(podTCP)
	// The pod's listener is out of the host's reach: only a dial from the pod gets there.
	if c, err := net.DialTimeout("tcp", podTCP.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Fatalf("the host reached the pod's listener %s: the test's namespaces are not apart", podTCP.Addr())
	}

	t.Run("tcp", func(t *testing.T) {
		c, err := d.DialTCP(ctx, addrOf(t, podTCP.Addr()), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, ok := c.(*net.TCPConn); !ok {
			t.Errorf("DialTCP gave a %T", c)
		}
		if c.RemoteAddr().String() != podTCP.Addr().String() {
			t.Errorf("remote %s, want %s", c.RemoteAddr(), podTCP.Addr())
		}
		roundTrip(t, c, "hello from the host")
	})

	t.Run("refused although the host listens there", func(t *testing.T) {
		host, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer host.Close()
		_, err = d.DialTCP(ctx, addrOf(t, host.Addr()), 5*time.Second)
		if !errors.Is(err, unix.ECONNREFUSED) {
			t.Errorf("dial the host's port from the pod: %v, want ECONNREFUSED", err)
		}
		var nse *Error
		if errors.As(err, &nse) {
			t.Errorf("a refused connect is the network's answer, not a namespace error: %v", err)
		}
	})

	t.Run("unreachable", func(t *testing.T) {
		// The pod has a loopback and nothing else: no route anywhere.
		_, err := d.DialTCP(ctx, netip.MustParseAddrPort("10.255.255.1:80"), 5*time.Second)
		if !errors.Is(err, unix.ENETUNREACH) {
			t.Errorf("dial without a route: %v, want ENETUNREACH", err)
		}
	})

	t.Run("timeout and cancel", func(t *testing.T) {
		addr := blackhole(t, pid)
		start := time.Now()
		_, err := d.DialTCP(ctx, addr, 300*time.Millisecond)
		if !errors.Is(err, unix.ETIMEDOUT) {
			t.Errorf("dial a port that drops SYNs: %v, want ETIMEDOUT", err)
		}
		if el := time.Since(start); el > 5*time.Second {
			t.Errorf("a 300ms connect timeout took %v", el)
		}
		cctx, cancel := context.WithCancel(ctx)
		time.AfterFunc(100*time.Millisecond, cancel)
		_, err = d.DialTCP(cctx, addr, 0)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("dial cancelled: %v, want context.Canceled", err)
		}
	})

	t.Run("udp", func(t *testing.T) {
		pc := netnstest.ListenPacket(t, pid, "udp", "127.0.0.1:0")
		go func() {
			buf := make([]byte, 2048)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				pc.WriteTo(buf[:n], from)
			}
		}()
		c, err := d.DialUDP(ctx, addrOf(t, pc.LocalAddr()))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, ok := c.(*net.UDPConn); !ok {
			t.Errorf("DialUDP gave a %T", c)
		}
		roundTrip(t, c, "datagram")
	})
}

// blackhole returns an address in pid's namespace whose SYNs are dropped: a listener with a
// backlog of 0 that never accepts, its one queue slot already taken.
func blackhole(t *testing.T, pid int) netip.AddrPort {
	t.Helper()
	var fd int
	err := netnstest.In(pid, func() (err error) {
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			return err
		}
		return unix.Listen(fd, 0)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(sa.(*unix.SockaddrInet4).Port))
	var filler net.Conn
	err = netnstest.In(pid, func() (err error) {
		filler, err = net.DialTimeout("tcp", addr.String(), 2*time.Second)
		return err
	})
	if err != nil {
		t.Fatalf("fill the backlog: %v", err)
	}
	t.Cleanup(func() { filler.Close() })
	return addr
}

// The worker's thread is in the target's namespace while it serves, and gone afterwards; no
// other thread of the process ever leaves the agent's namespace.
func TestThreadsStayHome(t *testing.T) {
	pid := netnstest.Start(t)
	podNS, err := netnstest.Netns(pid)
	if err != nil {
		t.Fatal(err)
	}
	hostNS, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	if podNS == hostNS {
		t.Fatal("the test pod shares the test's namespace")
	}
	l := netnstest.Listen(t, pid, "tcp", "127.0.0.1:0")
	echo(l)
	d := New(&locator{pid: pid})
	ctx := ctxT(t)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := d.DialTCP(ctx, addrOf(t, l.Addr()), 5*time.Second)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			roundTrip(t, c, "n"+strconv.Itoa(i))
		}()
	}
	wg.Wait()

	d.mu.Lock()
	tid := d.w.tid
	d.mu.Unlock()
	if got, err := netnstest.ThreadNetns(tid); err != nil || got != podNS {
		t.Fatalf("worker thread %d in %q (%v), want the pod's %q", tid, got, err, podNS)
	}
	checkThreads(t, hostNS, tid)
	d.Close()
	waitThreadGone(t, tid)
	checkThreads(t, hostNS, 0)
}

// checkThreads fails unless every thread but skip is in the namespace ns.
func checkThreads(t *testing.T, ns string, skip int) {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		tid, _ := strconv.Atoi(e.Name())
		if tid == skip {
			continue
		}
		got, err := netnstest.ThreadNetns(tid)
		if err != nil {
			continue // exited meanwhile
		}
		if got != ns {
			t.Errorf("thread %d is in %s, not the agent's %s", tid, got, ns)
		}
	}
}

func waitThreadGone(t *testing.T, tid int) {
	t.Helper()
	path := "/proc/self/task/" + strconv.Itoa(tid)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return
		}
	}
	t.Fatalf("worker thread %d still exists after Close", tid)
}

// A target that restarts into another namespace gets a new worker; the old thread ends.
func TestTargetMovesToAnotherNamespace(t *testing.T) {
	first, second := netnstest.Start(t), netnstest.Start(t)
	l1 := netnstest.Listen(t, first, "tcp", "127.0.0.1:0")
	l2 := netnstest.Listen(t, second, "tcp", "127.0.0.1:0")
	echo(l1)
	echo(l2)
	loc := &locator{pid: first}
	d := New(loc)
	t.Cleanup(d.Close)
	ctx := ctxT(t)

	c, err := d.DialTCP(ctx, addrOf(t, l1.Addr()), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c, "first")
	d.mu.Lock()
	oldTid := d.w.tid
	d.mu.Unlock()

	loc.set(second)
	c2, err := d.DialTCP(ctx, addrOf(t, l2.Addr()), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c2, "second")
	c2.Close()
	waitThreadGone(t, oldTid)
	// A socket made before the move stays in the old namespace and keeps working.
	roundTrip(t, c, "still first")
	c.Close()
}

func TestTargetGone(t *testing.T) {
	d := New(&locator{err: target.ErrExited})
	_, err := d.DialTCP(ctxT(t), netip.MustParseAddrPort("127.0.0.1:1"), time.Second)
	var nse *Error
	if !errors.As(err, &nse) || !errors.Is(err, target.ErrExited) {
		t.Errorf("dial with the target gone: %v, want a namespace *Error wrapping ErrExited", err)
	}
}

// Targetless: the agent's own namespace, no setns (and so no root needed).
func TestTargetless(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	echo(l)
	d := New(nil)
	c, err := d.DialTCP(ctxT(t), addrOf(t, l.Addr()), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTrip(t, c, "targetless")
	if d.w != nil {
		t.Error("a targetless dialer started a namespace worker")
	}
	_, err = d.DialTCP(ctxT(t), netip.MustParseAddrPort("[fe80::1%eth0]:80"), time.Second)
	if !errors.Is(err, unix.EINVAL) {
		t.Errorf("dial with a named zone: %v, want EINVAL", err)
	}
}

// Run executes on the worker's thread: a program it starts lands in the target's namespace
// (the fork copies the forking thread's namespaces), while the test process stays home.
func TestRunStartsProcessesInTheTargetNamespace(t *testing.T) {
	pid := netnstest.Start(t)
	podNS, err := netnstest.Netns(pid)
	if err != nil {
		t.Fatal(err)
	}
	hostNS, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	d := New(&locator{pid: pid})
	t.Cleanup(d.Close)
	var out []byte
	var tid int
	err = d.Run(func() (err error) {
		tid = unix.Gettid()
		out, err = exec.Command("readlink", "/proc/self/ns/net").Output()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(out)); got != podNS {
		t.Errorf("a child started in Run is in %q, want the pod's %q", got, podNS)
	}
	d.mu.Lock()
	wtid := d.w.tid
	d.mu.Unlock()
	if tid != wtid {
		t.Errorf("Run ran on thread %d, the worker is %d", tid, wtid)
	}
	checkThreads(t, hostNS, wtid)

	sentinel := errors.New("from fn")
	if err := d.Run(func() error { return sentinel }); err != sentinel {
		t.Errorf("Run returned %v, want fn's error", err)
	}

	// Targetless: the agent's own namespace.
	err = New(nil).Run(func() (err error) {
		out, err = exec.Command("readlink", "/proc/self/ns/net").Output()
		return err
	})
	if err != nil || strings.TrimSpace(string(out)) != hostNS {
		t.Errorf("targetless Run: child in %q (%v), want %q", out, err, hostNS)
	}
}
