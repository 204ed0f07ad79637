package outgoing

import (
	"context"
	"io"
	"net"
	"net/netip"
	"runtime"
	"runtime/debug"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kwarp-dev/kwarp/layer"
)

// Close ends everything the Handler started, open connections and flows included, and leaves
// no goroutine and no descriptor behind.
func TestCloseLeavesNothing(t *testing.T) {
	tcpSrv := tcpServer(t, "tcp4", echo)
	udpSrv := udpServer(t, "echo:")
	remote := newFakeRemote()
	tcpDst, udpDst := ap("10.40.0.1:7"), ap("10.40.0.2:7")
	remote.route(tcpDst, tcpSrv)
	remote.route(udpDst, udpSrv)
	dnsRemote := &fakeResolver{addrs: map[string]netip.Addr{"a.example.": netip.MustParseAddr("10.40.0.3")}}
	dns := newDNS(t, dnsRemote, nil)

	// A collection would close a leaked socket through its finalizer and hide the leak.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	goroutines, fds := runtime.NumGoroutine(), openFDs(t)

	h, err := New(Options{
		Rules:  Rules{TCP: true, UDP: true, Nameservers: []string{nameserver.String()}},
		Remote: remote, DNS: dns, LocalAddrs: []netip.Addr{}, Log: logger(t), PairTimeout: time.Minute,
	})
	must(t, err)

	// Connections that are still open when the Handler closes.
	var open []net.Conn
	for i := range 10 {
		fd := socket(t, unix.AF_INET, unix.SOCK_STREAM, i%2 == 1)
		if err := connect(h, layer.TCP, fd, tcpDst); err != nil && err != unix.EINPROGRESS {
			t.Fatal(err)
		}
		c := fileConn(t, fd)
		_, err := c.Write([]byte("x"))
		must(t, err)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = io.ReadFull(c, make([]byte, 1))
		must(t, err)
		open = append(open, c)
	}
	// A UDP flow, connected, and an unconnected one.
	fd := socket(t, unix.AF_INET, unix.SOCK_DGRAM, false)
	must(t, connect(h, layer.UDP, fd, udpDst))
	u := fileConn(t, fd)
	_, err = u.Write([]byte("x"))
	must(t, err)
	_ = u.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = u.Read(make([]byte, 10))
	must(t, err)
	open = append(open, u)
	relay, err := h.Relay(context.Background(), ap("10.40.0.4:7")) // nothing routes there: a failed flow
	must(t, err)
	ufd := socket(t, unix.AF_INET, unix.SOCK_DGRAM, false)
	sa, _ := toSockaddr(relay, unix.AF_INET)
	must(t, unix.Sendto(ufd, []byte("x"), 0, sa))
	unix.Close(ufd)
	// DNS over UDP and over TCP.
	fd = socket(t, unix.AF_INET, unix.SOCK_DGRAM, false)
	must(t, connect(h, layer.UDP, fd, nameserver))
	d := fileConn(t, fd)
	_, err = d.Write(dnsQuery(t, 1, "a.example."))
	must(t, err)
	_ = d.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = d.Read(make([]byte, 1500))
	must(t, err)
	open = append(open, d)
	fd = socket(t, unix.AF_INET, unix.SOCK_STREAM, false)
	must(t, connect(h, layer.TCP, fd, nameserver))
	open = append(open, fileConn(t, fd))
	// A stranger on the listener, parked until the pair timeout.
	s, err := net.Dial("tcp", h.l4addr.String())
	must(t, err)
	open = append(open, s)
	eventually(t, "the stranger to be parked", func() bool {
		h.mu.RLock()
		defer h.mu.RUnlock()
		return len(h.parked) == 1
	})

	must(t, h.Close())
	// The process's connections saw their end.
	for _, c := range open[:10] {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatal("a connection is still open after Close")
		}
	}
	for _, c := range open {
		c.Close()
	}
	settle(t, goroutines, fds)
}
