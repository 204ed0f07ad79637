package portforward

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/kwarp-dev/kwarp/agent/api/tunnel"
	"github.com/kwarp-dev/kwarp/core/clusterdial"
	"github.com/kwarp-dev/kwarp/sdk"
)

// podDialer stands for the cluster: "backend:80" answers in upper case (TCP) or echoes
// datagrams reversed (UDP); anything else is refused.
type podDialer struct {
	mu    sync.Mutex
	dials []string
}

func (d *podDialer) Dial(_ context.Context, network, address string) (*clusterdial.Conn, error) {
	d.mu.Lock()
	d.dials = append(d.dials, network+" "+address)
	d.mu.Unlock()
	if address != "backend:80" {
		return nil, &clusterdial.ConnectError{Errno: unix.ECONNREFUSED, Address: address}
	}
	local, pod := net.Pipe()
	go func() {
		defer pod.Close()
		if network == "udp" {
			buf := make([]byte, tunnel.MaxDatagram)
			for {
				n, err := tunnel.ReadDatagram(pod, buf)
				if err != nil {
					return
				}
				r := make([]byte, n)
				for i := range r {
					r[i] = buf[n-1-i]
				}
				tunnel.WriteDatagram(pod, r)
			}
		}
		buf := make([]byte, 1024)
		for {
			n, err := pod.Read(buf)
			if err != nil {
				return
			}
			pod.Write(bytes.ToUpper(buf[:n]))
		}
	}()
	return &clusterdial.Conn{Conn: local, Result: sdk.ConnectResult{RemoteAddress: "10.96.0.20:80"}}, nil
}

func start(t *testing.T, specs ...string) (*Forwarder, *podDialer) {
	t.Helper()
	var ss []Spec
	for _, v := range specs {
		s, err := ParseSpec(v)
		if err != nil {
			t.Fatal(err)
		}
		ss = append(ss, s)
	}
	f, err := Listen(ss, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	d := &podDialer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.Serve(ctx, d); close(done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after its context ended")
		}
	})
	return f, d
}

func local(s Spec) string { return netip.AddrPortFrom(s.Bind, uint16(s.LocalPort)).String() }

func TestForwardTCP(t *testing.T) {
	f, d := start(t, "0:backend:80", "0:refused:80")
	specs := f.Specs()
	if specs[0].LocalPort == 0 {
		t.Fatal("port 0 was not replaced by the bound port")
	}
	c, err := net.Dial("tcp", local(specs[0]))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("hello"))
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "HELLO" {
		t.Fatalf("answer %q, %v", buf, err)
	}
	// a refused remote closes the local connection
	r, err := net.Dial("tcp", local(specs[1]))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	r.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := r.Read(buf); err == nil {
		t.Fatalf("read %d bytes from a refused forward", n)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if strings.Join(d.dials, ",") != "tcp backend:80,tcp refused:80" {
		t.Errorf("dials %q", d.dials)
	}
}

func TestForwardUDP(t *testing.T) {
	f, _ := start(t, "0:backend:80/udp")
	c, err := net.Dial("udp", local(f.Specs()[0]))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, msg := range []string{"abc", "hello"} {
		c.Write([]byte(msg))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 64)
		n, err := c.Read(buf)
		want := reverse(msg)
		if err != nil || string(buf[:n]) != want {
			t.Fatalf("answer to %q: %q, %v; want %q", msg, buf[:n], err, want)
		}
	}
}

func reverse(s string) string {
	b := []byte(s)
	for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
		b[i], b[j] = b[j], b[i]
	}
	return string(b)
}

func TestPortInUseNamesIt(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	port := taken.Addr().(*net.TCPAddr).Port
	s, _ := ParseSpec(strings.Replace("P:backend:80", "P", itoa(port), 1))
	free, _ := ParseSpec("0:backend:81")
	_, err = Listen([]Spec{free, s}, zerolog.Nop())
	if err == nil || !strings.Contains(err.Error(), "local port "+itoa(port)+" (tcp) is already in use") {
		t.Fatalf("err = %v, want one naming port %d", err, port)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
