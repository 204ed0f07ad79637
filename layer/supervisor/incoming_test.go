package supervisor_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kwarp-dev/kwarp/layer"
	"golang.org/x/sys/unix"
)

// The layer's side of incoming traffic: listeners reported, delivered connections accepted
// with the pod client's address (incoming.go).

// waitStderr waits until the command's stderr has a line starting with prefix and returns
// the rest of it.
func waitStderr(t *testing.T, cmd *exec.Cmd, prefix string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, l := range strings.Split(cmd.Stderr.(interface{ String() string }).String(), "\n") {
			if rest, ok := strings.CutPrefix(l, prefix); ok {
				return rest
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the probe never said %q; stderr: %s", prefix, cmd.Stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// exchange sends name on c and returns the server's answer.
func exchange(c net.Conn, name string) (string, error) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := fmt.Fprintf(c, "%s\n", name); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

// assertClosed checks that nothing listens any more where l listened: a connect is refused
// and sock_diag no longer lists the socket.
func assertClosed(t *testing.T, l layer.Listener) {
	t.Helper()
	socks, err := layer.ListeningSockets()
	if err != nil {
		t.Errorf("ListeningSockets: %v", err)
	} else if ap, ok := socks[l.Inode]; ok {
		t.Errorf("the closed listener %d is still listening on %s", l.Inode, ap)
	}
	c, err := net.DialTimeout("tcp", l.Dial().String(), 5*time.Second)
	if err == nil {
		c.Close()
		t.Errorf("connect to %s after the process closed its listener: accepted", l.Dial())
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("connect to %s after the process closed its listener: %v, want ECONNREFUSED", l.Dial(), err)
	}
}

// TestIncomingGoProgram: a static Go program listens (net.Listen: accept4 non-blocking and
// epoll) and accepts connections the test delivers as the core would, from a known address
// mapped to a pod client, and plain local ones. Accept, getpeername and getsockname see the
// pod's addresses for the delivered ones and the kernel's for the others; port 0 is reported
// as the port the kernel chose; once the program closes its listener the port is closed.
func TestIncomingGoProgram(t *testing.T) {
	requireLayer(t)
	prog := netProbe(t)
	tests := []struct {
		listen string
		many   int  // further delivered connections, made 50 at a time
		v4, v6 bool // clients of each family
	}{
		{listen: "127.0.0.1:0", many: 500, v4: true},
		{listen: ":0", v4: true, v6: true},
		{listen: "[::1]:0", v6: true},
	}
	for _, tt := range tests {
		t.Run(tt.listen, func(t *testing.T) {
			fi := newFakeIncoming(t)
			type client struct {
				name   string
				via    string         // "deliver4", "deliver6", "local4", "local6"
				client netip.AddrPort // the mapped client
			}
			var clients []client
			k := 0
			add := func(via string) {
				k++
				c := client{name: fmt.Sprintf("c%d", k), via: via}
				if strings.HasPrefix(via, "deliver") {
					c.client = netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(k%250 + 1)}), uint16(10000+k))
					if via == "deliver6" {
						c.client = netip.MustParseAddrPort(fmt.Sprintf("[2001:db8::%x]:%d", k, 20000+k))
					}
				}
				clients = append(clients, c)
			}
			if tt.v4 {
				add("deliver4")
				add("local4")
			}
			if tt.v6 {
				add("deliver6")
				add("local6")
			}
			first := len(clients)
			for range tt.many {
				add("deliver4")
			}
			stdinR, stdinW := io.Pipe()
			defer stdinW.Close()
			arg := "serve:" + tt.listen + ":" + strconv.Itoa(len(clients))
			var listener layer.Listener
			r := runUnder(t, newFakeFS(t.TempDir()), []string{prog, arg}, runOpts{
				incoming: fi,
				stdin:    stdinR,
				quiet:    tt.many > 0,
				during: func(cmd *exec.Cmd, stop func() error) {
					defer stdinW.Close()
					listener = fi.waitListening(t)
					said := waitStderr(t, cmd, "listening ")
					if ap, err := netip.ParseAddrPort(said); err != nil || ap.Port() != listener.Local.Port() || listener.Local.Port() == 0 {
						t.Errorf("Listening said %+v, the program listens on %s", listener, said)
					}
					port := listener.Local.Port()
					v4 := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
					v6 := netip.AddrPortFrom(netip.IPv6Loopback(), port)
					do := func(c client) {
						var conn net.Conn
						var err error
						switch c.via {
						case "deliver4":
							conn, err = fi.deliver(v4, c.client)
						case "deliver6":
							conn, err = fi.deliver(v6, c.client)
						case "local4":
							conn, err = net.Dial("tcp", v4.String())
						case "local6":
							conn, err = net.Dial("tcp", v6.String())
						}
						if err != nil {
							t.Errorf("%s: connect: %v", c.name, err)
							return
						}
						from := conn.LocalAddr().String()
						got, err := exchange(conn, c.name)
						if err != nil {
							t.Errorf("%s: %v", c.name, err)
							return
						}
						var want string
						switch c.via {
						case "deliver4", "deliver6":
							pod := "10.1.0.9"
							if c.via == "deliver6" {
								pod = "fd00:1::9"
							}
							gp := c.client.String()
							if listener.Local.Addr().Is6() && c.client.Addr().Is4() {
								// getpeername's AF_INET6 address, IPv4-mapped
								gp = netip.AddrPortFrom(netip.AddrFrom16(c.client.Addr().As16()), c.client.Port()).String()
							}
							want = fmt.Sprintf("%s peer=%s getpeername=%s local=%s", c.name, c.client, gp,
								net.JoinHostPort(pod, strconv.Itoa(int(port))))
						case "local4", "local6":
							to := v4
							if c.via == "local6" {
								to = v6
							}
							gp := from
							if ap := netip.MustParseAddrPort(from); listener.Local.Addr().Is6() && ap.Addr().Is4() {
								gp = netip.AddrPortFrom(netip.AddrFrom16(ap.Addr().As16()), ap.Port()).String()
							}
							want = fmt.Sprintf("%s peer=%s getpeername=%s local=%s", c.name, from, gp, to)
						}
						if got != want {
							t.Errorf("%s answered %q, want %q", c.name, got, want)
						}
					}
					for _, c := range clients[:first] {
						do(c)
					}
					// many at once
					sem := make(chan struct{}, 50)
					var wg sync.WaitGroup
					for _, c := range clients[first:] {
						wg.Add(1)
						sem <- struct{}{}
						go func() {
							defer wg.Done()
							defer func() { <-sem }()
							do(c)
						}()
					}
					wg.Wait()
					waitStderr(t, cmd, "closed")
					assertClosed(t, listener)
				},
			})
			if r.code() != 0 {
				t.Fatalf("exit %v; stdout: %s stderr: %s", r.state, r.stdout, r.stderr)
			}
			expect(t, lines(r.stdout), map[string]string{arg: fmt.Sprintf("accepted=%d", len(clients))}, r.stdout)
			if ls := fi.listeners(); len(ls) != 1 {
				t.Errorf("Listening called %d times (%+v), want once", len(ls), ls)
			}
			st := r.stats
			delivered := 0
			for _, c := range clients {
				if strings.HasPrefix(c.via, "deliver") {
					delivered++
				}
			}
			if st.NetListen != 1 || st.NetAccepted != uint64(len(clients)) || st.NetDelivered != uint64(delivered) || st.NetReset != 0 {
				t.Errorf("stats: %+v, want 1 listen, %d accepted, %d delivered, none reset", st, len(clients), delivered)
			}
			t.Logf("stats: %+v", st)
		})
	}
}

// cAcceptProbe is a C program (glibc) for what Go does not do: blocking accept, accept4's
// flags, short address buffers, bad ones, a full fd table, SO_RCVTIMEO, signals.
func cAcceptProbe(tb testing.TB) string {
	if _, err := exec.LookPath("gcc"); err != nil {
		tb.Skip("gcc not found: the glibc test program cannot be built")
	}
	return build(tb, "cacceptprobe", func(out string) *exec.Cmd {
		return exec.Command("gcc", "-O2", "-Wall", "-o", out, "testdata/cacceptprobe.c")
	})
}

// TestIncomingGlibcProgram runs the C probe's steps in order on one listener; the program
// makes its "delivered" connections itself from 127.0.0.2, which the fake maps to
// 203.0.113.7 with the same port.
func TestIncomingGlibcProgram(t *testing.T) {
	feat := requireLayer(t)
	prog := cAcceptProbe(t)
	fi := newFakeIncoming(t)
	steps := []string{"listen", "relisten", "flags", "flags0", "accept", "short", "null", "local",
		"nonblock", "rcvtimeo", "efault", "emfile", "threads"}
	want := map[string]string{
		"relisten": "ok",
		"flags":    "peer=203.0.113.7 client_port=1 len=16 cloexec=1 nonblock=1 getpeername=203.0.113.7 sockname=10.1.0.9",
		"flags0":   "peer=203.0.113.7 client_port=1 len=16 cloexec=0 nonblock=0 getpeername=203.0.113.7 sockname=10.1.0.9",
		"accept":   "peer=203.0.113.7 client_port=1 len=16",
		"short":    "len=16 family=2 port_ok=1 untouched=1",
		"null":     "getpeername=203.0.113.7 client_port=1 sockname=10.1.0.9",
		"local":    "peer=127.0.0.1 client_port=1 sockname=127.0.0.1",
		"nonblock": "empty=EAGAIN then=203.0.113.7",
		"rcvtimeo": "error: " + unix.EAGAIN.Error() + " waited>=150ms=1",
		"efault":   "error: " + unix.EFAULT.Error() + " client=reset next=203.0.113.7",
		"emfile":   "error: " + unix.EMFILE.Error() + " client=reset next=203.0.113.7",
		"threads":  "answered=200 served=200",
	}
	signals := feat.WaitKillableRecv // without it, signals interrupt the wait by themselves
	if signals {
		steps = append(steps, "sigaccept", "sigacceptrestart")
		want["sigaccept"] = "error: " + unix.EINTR.Error() + " handled=1"
		want["sigacceptrestart"] = "peer=203.0.113.7 handled=1"
	}
	steps = append(steps, "blockaccept", "close")
	want["blockaccept"] = "peer=192.0.2.44:4444"
	want["close"] = "ok"
	var listener layer.Listener
	r := runUnder(t, newFakeFS(t.TempDir()), append([]string{prog}, steps...), runOpts{
		incoming: fi,
		during: func(cmd *exec.Cmd, stop func() error) {
			listener = fi.waitListening(t)
			n := 0
			if signals {
				n++
				waitReady(t, cmd, n) // sigaccept
				cmd.Process.Signal(syscall.SIGUSR1)
				n++
				waitReady(t, cmd, n) // sigacceptrestart: the handler connects
				cmd.Process.Signal(syscall.SIGUSR1)
			}
			n++
			waitReady(t, cmd, n) // blockaccept: a delivery while accept waits
			c, err := fi.deliver(listener.Dial(), netip.MustParseAddrPort("192.0.2.44:4444"))
			if err != nil {
				t.Errorf("deliver: %v", err)
			} else {
				defer c.Close()
			}
			n++
			waitReady(t, cmd, n) // closed
			assertClosed(t, listener)
			cmd.Process.Signal(syscall.SIGUSR2) // done
		},
	})
	if r.code() != 0 {
		t.Fatalf("exit %v; stdout: %s stderr: %s", r.state, r.stdout, r.stderr)
	}
	got := lines(r.stdout)
	if want["listen"] = "port=" + strconv.Itoa(int(listener.Local.Port())); listener.Local.Port() == 0 {
		t.Errorf("Listening said port 0")
	}
	expect(t, got, want, r.stdout)
	if ls := fi.listeners(); len(ls) != 1 || ls[0].Local.Addr() != netip.MustParseAddr("127.0.0.1") || ls[0].V6Only {
		t.Errorf("Listening: %+v, want one call for 127.0.0.1", ls)
	}
	if r.stats.NetReset != 2 { // efault, emfile
		t.Errorf("stats %+v: %d connections reset, want 2", r.stats, r.stats.NetReset)
	}
	t.Logf("stats: %+v", r.stats)
}

// TestIncomingPython: Python's accept (accept4 with SOCK_CLOEXEC; with a timeout, on a
// non-blocking socket after poll), with the outgoing NetHandler on as well: getpeername and
// getsockname of an accepted socket fall through Lookup to Delivered.
func TestIncomingPython(t *testing.T) {
	requireLayer(t)
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not found")
	}
	out, err := exec.Command(py, "-c", "import sys; print(sys.executable)").Output()
	if err != nil {
		t.Skipf("python3 does not run: %v", err)
	}
	py = strings.TrimSpace(string(out))
	script := `import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
port = s.getsockname()[1]
c = socket.socket()
c.bind(("127.0.0.2", 0))
c.connect(("127.0.0.1", port))
a, addr = s.accept()
print("accept", addr[0], addr[1] == c.getsockname()[1], a.getpeername()[0], a.getsockname(), a.get_inheritable())
s.settimeout(5)
c2 = socket.create_connection(("127.0.0.1", port))
a2, addr2 = s.accept()
print("local", addr2[0], addr2[1] == c2.getsockname()[1], a2.getsockname()[0])
s.settimeout(0.2)
try:
    s.accept()
except TimeoutError:
    print("timeout")
print("port", port)
`
	fi := newFakeIncoming(t)
	r := runUnder(t, newFakeFS(t.TempDir()), []string{py, "-S", "-c", script}, runOpts{net: newFakeNet(t), incoming: fi})
	if r.code() != 0 {
		t.Fatalf("exit %v; stderr: %s", r.state, r.stderr)
	}
	ls := fi.listeners()
	if len(ls) != 1 {
		t.Fatalf("Listening: %+v, want one call", ls)
	}
	port := ls[0].Local.Port()
	want := fmt.Sprintf("accept 203.0.113.7 True 203.0.113.7 ('10.1.0.9', %d) False\n", port) +
		"local 127.0.0.1 True 127.0.0.1\n" +
		"timeout\n" +
		fmt.Sprintf("port %d\n", port)
	if r.stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s\nstderr: %s", r.stdout, want, r.stderr)
	}
	t.Logf("stats: %+v", r.stats)
}

// TestIncomingNotTrappedWithoutHandler: without an IncomingHandler no listen or accept is
// trapped.
func TestIncomingNotTrappedWithoutHandler(t *testing.T) {
	requireLayer(t)
	prog := netProbe(t)
	stdinR, stdinW := io.Pipe()
	r := runUnder(t, newFakeFS(t.TempDir()), []string{prog, "serve:127.0.0.1:0:1"}, runOpts{
		net:   newFakeNet(t),
		stdin: stdinR,
		during: func(cmd *exec.Cmd, stop func() error) {
			defer stdinW.Close()
			said := waitStderr(t, cmd, "listening ")
			c, err := net.Dial("tcp", said)
			if err != nil {
				t.Errorf("dial: %v", err)
				return
			}
			from := c.LocalAddr().String()
			got, err := exchange(c, "plain")
			if want := fmt.Sprintf("plain peer=%s getpeername=%s local=%s", from, from, said); err != nil || got != want {
				t.Errorf("answer %q (%v), want %q", got, err, want)
			}
			waitStderr(t, cmd, "closed")
		},
	})
	if r.code() != 0 {
		t.Fatalf("exit %v; stderr: %s", r.state, r.stderr)
	}
	if st := r.stats; st.NetListen+st.NetAccepted != 0 {
		t.Errorf("listen or accept served without an IncomingHandler: %+v", st)
	}
}

// TestIncomingAcceptLoop: thousands of accepts in a row, each checked by the program to be a
// new socket. It once caught the kernel completing an accept with 0 when the supervisor's
// ADDFD_FLAG_SEND was interrupted by a signal (see addFD).
func TestIncomingAcceptLoop(t *testing.T) {
	requireLayer(t)
	const n = 10000
	fi := newFakeIncoming(t)
	r := runUnder(t, newFakeFS(t.TempDir()), []string{os.Args[0], strconv.Itoa(n)}, runOpts{
		env:      []string{roleHelper + "=acceptloop"},
		trap:     []string{},
		incoming: fi,
		quiet:    true,
	})
	if r.code() != 0 {
		t.Fatalf("exit %v; stderr: %s", r.state, r.stderr)
	}
	if st := r.stats; st.NetDelivered != n || st.NetReset != 0 || st.Gone != 0 {
		t.Errorf("stats %+v: want %d delivered, none reset or gone", st, n)
	}
}
