package dnsroute

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// serveUDP answers every query on a loopback UDP socket with reply; a stray answer with
// another ID goes first, which the client must ignore.
func serveUDP(t *testing.T, reply func(q []byte) []byte) netip.AddrPort {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	must(t, err)
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			q := append([]byte(nil), buf[:n]...)
			ans := reply(q)
			if ans == nil {
				continue
			}
			stray := append([]byte(nil), ans...)
			stray[0]++
			_, _ = c.WriteToUDPAddrPort(stray, from)
			_, _ = c.WriteToUDPAddrPort(ans, from)
		}
	}()
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

func serveTCP(t *testing.T, reply func(q []byte) []byte) netip.AddrPort {
	t.Helper()
	l, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	must(t, err)
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				for {
					q, err := ReadTCPMessage(c)
					if err != nil {
						return
					}
					if err := WriteTCPMessage(c, reply(q)); err != nil {
						return
					}
				}
			}()
		}
	}()
	return l.Addr().(*net.TCPAddr).AddrPort()
}

func TestUpstreamUDPAndTCP(t *testing.T) {
	reply := func(q []byte) []byte {
		return Reply(t, q, rr{name: "svc.example.", addr: netip.MustParseAddr("192.0.2.1")})
	}
	udp := serveUDP(t, reply)
	tcp := serveTCP(t, reply)
	u := Upstream{Timeout: 2 * time.Second}
	for _, tt := range []struct {
		server netip.AddrPort
		tcp    bool
	}{{udp, false}, {tcp, true}} {
		q := Query(t, 0x1234, "svc.example.", dnsmessage.TypeA)
		ans, err := u.Query(context.Background(), tt.server, q, tt.tcp)
		must(t, err)
		if h := header(t, ans); h.ID != 0x1234 || !h.Response {
			t.Fatalf("tcp=%v: answer header %+v", tt.tcp, h)
		}
	}
}

func TestUpstreamTimesOut(t *testing.T) {
	silent := serveUDP(t, func([]byte) []byte { return nil })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Upstream{}.Query(ctx, silent, Query(t, 1, "x.", dnsmessage.TypeA), false)
	if err == nil {
		t.Fatal("no error from a silent server")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %v", d)
	}
	// Cancelled rather than timed out ends the wait too.
	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	if _, err := (Upstream{Timeout: time.Minute}).Query(ctx, silent, Query(t, 1, "x.", dnsmessage.TypeA), false); err == nil {
		t.Fatal("no error after cancel")
	}
	if _, err := (Upstream{}).Query(context.Background(), silent, []byte{1}, false); err == nil {
		t.Fatal("a query shorter than a header was sent")
	}
}

func TestReadTCPMessageCutShort(t *testing.T) {
	a, b := net.Pipe()
	go func() {
		_, _ = b.Write([]byte{0, 10, 1, 2})
		b.Close()
	}()
	if _, err := ReadTCPMessage(a); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err %v, want unexpected EOF", err)
	}
}
