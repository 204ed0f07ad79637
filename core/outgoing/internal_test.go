package outgoing

import (
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Relayed must say yes for a datagram still waiting on a relay socket, before the relay's
// reader took it: the process's recvfrom can come that early.
func TestRelayedSeesWaitingDatagram(t *testing.T) {
	h := newHandler(t, Options{Rules: Rules{UDP: true}})
	// A relay without a reader, so the datagram stays queued.
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	must(t, err)
	raw, err := conn.SyscallConn()
	must(t, err)
	r := &relay{h: h, dst: ap("10.60.0.1:1"), addr: normalize(conn.LocalAddr().(*net.UDPAddr).AddrPort()), conn: conn, raw: raw, flows: map[netip.AddrPort]*udpFlow{}}
	h.mu.Lock()
	h.relays[r.dst], h.relayByAddr[r.addr] = r, r
	h.mu.Unlock()

	fd := socket(t, unix.AF_INET, unix.SOCK_DGRAM, false)
	defer unix.Close(fd)
	must(t, unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}))
	local := sockname(t, fd)
	other := socket(t, unix.AF_INET, unix.SOCK_DGRAM, false)
	defer unix.Close(other)
	must(t, unix.Bind(other, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}))
	if h.Relayed(local) {
		t.Fatal("Relayed before any datagram")
	}
	sa, _ := toSockaddr(r.addr, unix.AF_INET)
	must(t, unix.Sendto(fd, []byte("q"), 0, sa))
	if !h.Relayed(local) {
		t.Fatal("Relayed = false with the socket's datagram waiting on the relay")
	}
	if h.Relayed(sockname(t, other)) {
		t.Fatal("Relayed = true for another port")
	}
}

// The accepted connection and the registered flow pair whichever comes first.
func TestPairingEitherOrder(t *testing.T) {
	srv := tcpServer(t, "tcp4", echo)
	h := newHandler(t, Options{Rules: Rules{TCP: true}})
	for _, acceptFirst := range []bool{true, false} {
		remote, err := net.DialTCP("tcp", nil, net.TCPAddrFromAddrPort(srv))
		must(t, err)
		fd := socket(t, unix.AF_INET, unix.SOCK_STREAM, false)
		must(t, unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}))
		f := &tcpFlow{dst: ap("10.60.0.2:7"), remote: remote, key: normalize(sockname(t, fd))}
		if !acceptFirst {
			must(t, h.register(f))
		}
		sa, _ := toSockaddr(h.l4addr, unix.AF_INET)
		must(t, unix.Connect(fd, sa))
		if acceptFirst {
			eventually(t, "the connection to be parked", func() bool {
				h.mu.RLock()
				defer h.mu.RUnlock()
				return h.parked[f.key] != nil
			})
			must(t, h.register(f))
		}
		c := fileConn(t, fd)
		_, err = c.Write([]byte("ping"))
		must(t, err)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b := make([]byte, 4)
		_, err = io.ReadFull(c, b)
		must(t, err)
		if string(b) != "ping" {
			t.Fatalf("acceptFirst=%v: got %q", acceptFirst, b)
		}
	}
}

// A flow whose process socket never reaches the listener is dropped after the pair timeout.
func TestUnpairedFlowExpires(t *testing.T) {
	srv := tcpServer(t, "tcp4", echo)
	h := newHandler(t, Options{Rules: Rules{TCP: true}, PairTimeout: 20 * time.Millisecond})
	remote, err := net.DialTCP("tcp", nil, net.TCPAddrFromAddrPort(srv))
	must(t, err)
	f := &tcpFlow{dst: ap("10.60.0.3:7"), remote: remote, key: ap("127.0.0.1:1")}
	must(t, h.register(f))
	eventually(t, "the flow to expire", func() bool { return !h.hasFlow(f.key) })
	if _, err := remote.Read(make([]byte, 1)); err == nil {
		t.Fatal("the pod side of an expired flow is still open")
	}
}
