// Command netprobe is a static Go test program for the supervisor's socket calls: each
// argument "op:addr" makes one exchange through the Go standard library (raw syscalls, no
// libc: non-blocking sockets and epoll) and prints one line "op:addr result".
package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	for _, arg := range os.Args[1:] {
		op, addr, _ := strings.Cut(arg, ":")
		fmt.Printf("%s %s\n", arg, do(op, addr))
	}
}

func do(op, addr string) string {
	switch op {
	case "dial":
		// net.Dial: a non-blocking connect (EINPROGRESS), epoll for writability, SO_ERROR,
		// then getpeername and getsockname for the addresses.
		c, err := net.DialTimeout("tcp", addr, 20*time.Second)
		if err != nil {
			return errText(err)
		}
		defer c.Close()
		return greet(c)
	case "dialmptcp":
		// an MPTCP socket (as Go's listeners are by default): TCP to a peer without MPTCP
		d := net.Dialer{Timeout: 20 * time.Second}
		d.SetMultipathTCP(true)
		c, err := d.Dial("tcp", addr)
		if err != nil {
			return errText(err)
		}
		defer c.Close()
		return greet(c)
	case "dialsig":
		// the same under a storm of signals: SIGURG (Go's own preemption signal) and a
		// handled SIGALRM, every 500 µs, while the remote side takes its time
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGALRM)
		var sent atomic.Int64
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				select {
				case <-stop:
					return
				case <-time.After(500 * time.Microsecond):
				}
				syscall.Kill(os.Getpid(), syscall.SIGURG)
				syscall.Kill(os.Getpid(), syscall.SIGALRM)
				sent.Add(2)
			}
		}()
		go func() {
			for range ch {
			}
		}()
		c, err := net.DialTimeout("tcp", addr, 20*time.Second)
		close(stop)
		<-done
		signal.Stop(ch)
		if err != nil {
			return errText(err)
		}
		defer c.Close()
		return fmt.Sprintf("signals>100=%v %s", sent.Load() > 100, greet(c))
	case "dialblock":
		// a blocking socket, raw syscalls: connect waits for the remote outcome
		ap := netip.MustParseAddrPort(addr)
		fam, sa := sockaddr(ap)
		fd, err := syscall.Socket(fam, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			return errText(err)
		}
		defer syscall.Close(fd)
		if err := syscall.Connect(fd, sa); err != nil {
			return errText(err)
		}
		peer, err := syscall.Getpeername(fd)
		if err != nil {
			return errText(err)
		}
		buf := make([]byte, 128)
		n, err := syscall.Read(fd, buf)
		if err != nil {
			return errText(err)
		}
		return fmt.Sprintf("peer=%s got=%q", fmtSockaddr(peer), strings.TrimSpace(string(buf[:n])))
	case "udp":
		// a connected UDP socket: connect, write, read, RemoteAddr from getpeername
		c, err := net.Dial("udp", addr)
		if err != nil {
			return errText(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte("ping")); err != nil {
			return errText(err)
		}
		buf := make([]byte, 512)
		n, err := c.Read(buf)
		if err != nil {
			return errText(err)
		}
		// and recvfrom on the connected socket: the source is rewritten too
		if _, err := c.Write([]byte("again")); err != nil {
			return errText(err)
		}
		n2, from, err := c.(*net.UDPConn).ReadFromUDPAddrPort(buf[n:])
		if err != nil {
			return errText(err)
		}
		return fmt.Sprintf("remote=%s got=%q from=%s got=%q", c.RemoteAddr(), buf[:n], from, buf[n:n+n2])
	case "udpfrom", "udpfrom4":
		// an unconnected socket: sendto and recvfrom; "udp" listens on [::] (dual stack:
		// IPv4 destinations are IPv4-mapped), "udp4" on 0.0.0.0
		network := "udp"
		if op == "udpfrom4" {
			network = "udp4"
		}
		c, err := net.ListenUDP(network, nil)
		if err != nil {
			return errText(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		dst := netip.MustParseAddrPort(addr)
		if _, err := c.WriteToUDPAddrPort([]byte("hi"), dst); err != nil {
			return errText(err)
		}
		buf := make([]byte, 512)
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return errText(err)
		}
		return fmt.Sprintf("from=%s got=%q", from, buf[:n])
	case "sendmsg":
		// WriteMsgUDP and ReadMsgUDP: sendmsg and recvmsg with a name
		c, err := net.ListenUDP("udp", nil)
		if err != nil {
			return errText(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		dst := netip.MustParseAddrPort(addr)
		if _, _, err := c.WriteMsgUDPAddrPort([]byte("msg"), nil, dst); err != nil {
			return errText(err)
		}
		buf := make([]byte, 512)
		oob := make([]byte, 128)
		n, oobn, flags, from, err := c.ReadMsgUDPAddrPort(buf, oob)
		if err != nil {
			return errText(err)
		}
		return fmt.Sprintf("from=%s got=%q oobn=%d flags=%d", from, buf[:n], oobn, flags)
	case "serve":
		// "serve:ADDR:N": net.Listen (listen, then accept4 non-blocking with epoll), N
		// connections accepted; each client sends its name and gets back what the server
		// sees: "NAME peer=<accept's address> getpeername=<…> local=<getsockname>". Then the
		// listener is closed ("closed" on stderr) and the probe waits for stdin's end.
		i := strings.LastIndexByte(addr, ':')
		n, _ := strconv.Atoi(addr[i+1:])
		l, err := net.Listen("tcp", addr[:i])
		if err != nil {
			return errText(err)
		}
		fmt.Fprintf(os.Stderr, "listening %s\n", l.Addr())
		var wg sync.WaitGroup
		for range n {
			c, err := l.Accept()
			if err != nil {
				return errText(err)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				serveConn(c)
			}()
		}
		wg.Wait()
		l.Close()
		fmt.Fprintln(os.Stderr, "closed")
		io.Copy(io.Discard, os.Stdin)
		return fmt.Sprintf("accepted=%d", n)
	}
	return "unknown op"
}

// serveConn answers a client of serve.
func serveConn(c net.Conn) {
	c.SetDeadline(time.Now().Add(20 * time.Second))
	name, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return
	}
	gp := "?"
	if raw, err := c.(*net.TCPConn).SyscallConn(); err == nil {
		raw.Control(func(fd uintptr) {
			if sa, err := syscall.Getpeername(int(fd)); err == nil {
				gp = fmtSockaddr(sa)
			} else {
				gp = errText(err)
			}
		})
	}
	fmt.Fprintf(c, "%s peer=%s getpeername=%s local=%s\n", strings.TrimSpace(name), c.RemoteAddr(), gp, c.LocalAddr())
}

// greet reads the server's first line and reports the connection's addresses as Go sees
// them (the local address's IP only: the port is the kernel's choice).
func greet(c net.Conn) string {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return errText(err)
	}
	local := c.LocalAddr().(*net.TCPAddr)
	return fmt.Sprintf("remote=%s localip=%s got=%q", c.RemoteAddr(), local.IP, strings.TrimSpace(line))
}

func sockaddr(ap netip.AddrPort) (int, syscall.Sockaddr) {
	if ap.Addr().Is4() {
		return syscall.AF_INET, &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	}
	return syscall.AF_INET6, &syscall.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}

func fmtSockaddr(sa syscall.Sockaddr) string {
	switch sa := sa.(type) {
	case *syscall.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port)).String()
	case *syscall.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(sa.Port)).String()
	}
	return fmt.Sprintf("%T", sa)
}

func errText(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return "error: " + errno.Error()
	}
	return "error: " + err.Error()
}
