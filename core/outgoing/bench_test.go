package outgoing

import (
	"io"
	"net"
	"net/netip"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/kwarp-dev/kwarp/layer"
)

// BenchmarkTCPThroughput compares bytes written through the Handler (process socket →
// listener → splice → pod tunnel → server) with the same bytes written straight to the
// server over loopback. "spliced" has a *net.TCPConn as the tunnel, which io.Copy moves with
// splice(2); "copied" hides it, as the port-forward's streams are not TCP connections, and
// measures the buffered copy the real tunnels get.
func BenchmarkTCPThroughput(b *testing.B) {
	chunk := make([]byte, 64<<10)
	sink := func(b *testing.B) (netip.AddrPort, chan int64) {
		got := make(chan int64, 1)
		addr := tcpServer(b, "tcp4", func(c *net.TCPConn) {
			n, _ := io.Copy(io.Discard, c)
			got <- n
		})
		return addr, got
	}
	run := func(b *testing.B, c *net.TCPConn, got chan int64) {
		b.SetBytes(int64(len(chunk)))
		b.ResetTimer()
		for range b.N {
			if _, err := c.Write(chunk); err != nil {
				b.Fatal(err)
			}
		}
		must(b, c.CloseWrite())
		if n := <-got; n != int64(b.N*len(chunk)) {
			b.Fatalf("the server got %d bytes, want %d", n, b.N*len(chunk))
		}
		b.StopTimer()
	}
	b.Run("direct", func(b *testing.B) {
		addr, got := sink(b)
		c, err := net.DialTCP("tcp", nil, net.TCPAddrFromAddrPort(addr))
		must(b, err)
		defer c.Close()
		run(b, c, got)
	})
	for _, wrap := range []bool{false, true} {
		name := "spliced"
		if wrap {
			name = "copied"
		}
		b.Run(name, func(b *testing.B) {
			addr, got := sink(b)
			remote := newFakeRemote()
			remote.wrap = wrap
			dst := ap("10.50.0.1:9")
			remote.route(dst, addr)
			h := newHandler(b, Options{Rules: Rules{TCP: true}, Remote: remote})
			fd := socket(b, unix.AF_INET, unix.SOCK_STREAM, false)
			must(b, connect(h, layer.TCP, fd, dst))
			f := os.NewFile(uintptr(fd), "sock")
			c, err := net.FileConn(f)
			f.Close()
			must(b, err)
			defer c.Close()
			run(b, c.(*net.TCPConn), got)
		})
	}
}
