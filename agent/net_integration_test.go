package agent

// Outgoing and Dns through the whole agent: the test pod has a network namespace of its own,
// and the servers the agent must reach listen on the pod's 127.0.0.1, which the test's own
// namespace cannot reach: an answer proves the agent dialled from inside the pod. Tunnels and
// gRPC share the agent's one port, as through a port-forward.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kwarp-dev/kwarp/agent/api/tunnel"
	agentv1 "github.com/kwarp-dev/kwarp/agent/api/v1"
	"github.com/kwarp-dev/kwarp/agent/dnsserver/dnstest"
	"github.com/kwarp-dev/kwarp/agent/netns/netnstest"
	"github.com/kwarp-dev/kwarp/agent/sessionserver"
	"golang.org/x/net/dns/dnsmessage"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

const (
	podResolvConf = "search shop.svc.cluster.local svc.cluster.local cluster.local\nnameserver 127.0.0.1\noptions ndots:5\n"
	podHosts      = "127.0.0.1 localhost\n127.0.0.1 db.pod.local db\n"
	pairTimeout   = 500 * time.Millisecond
)

// holdSession opens session id and holds it; the returned context names it in its metadata,
// end breaks its Hold stream as a dying CLI would.
func holdSession(t *testing.T, conn *grpc.ClientConn, id string) (ctx context.Context, end func()) {
	t.Helper()
	end = openAndHold(t, conn, &agentv1.OpenRequest{SessionId: id})
	return metadata.AppendToOutgoingContext(ctxT(t), sessionserver.SessionIDKey, id), end
}

// openAndHold opens the session req names and holds it until the returned end (or the test's
// end) breaks its Hold stream.
func openAndHold(t *testing.T, conn *grpc.ClientConn, req *agentv1.OpenRequest) (end func()) {
	t.Helper()
	sc := agentv1.NewSessionClient(conn)
	_, err := sc.Open(ctxT(t), req)
	must(t, err)
	hctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(context.Background(), sessionserver.SessionIDKey, req.SessionId))
	t.Cleanup(cancel)
	hold, err := sc.Hold(hctx)
	must(t, err)
	must(t, hold.Send(&agentv1.Ping{Seq: 1}))
	_, err = hold.Recv()
	must(t, err)
	return cancel
}

// openTunnel opens a tunnel to the agent for tok.
func openTunnel(t *testing.T, agentAddr string, tok tunnel.Token) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", agentAddr)
	must(t, err)
	t.Cleanup(func() { c.Close() })
	must(t, tunnel.WriteHeader(c, tok))
	return c.(*net.TCPConn)
}

func tunnelStatus(t *testing.T, c net.Conn) error {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	return tunnel.ReadStatus(c)
}

func connect(t *testing.T, ctx context.Context, conn *grpc.ClientConn, network, addr string, tok tunnel.Token) *agentv1.ConnectResponse {
	t.Helper()
	resp, err := agentv1.NewOutgoingClient(conn).Connect(ctx, &agentv1.ConnectRequest{Network: network, Address: addr, Token: tok[:]})
	if err != nil {
		t.Fatalf("Connect %s %s: %v", network, addr, err)
	}
	return resp
}

func echoTCP(l net.Listener) {
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

func echoRoundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	_, err := c.Write([]byte(msg))
	must(t, err)
	buf := make([]byte, len(msg))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
		t.Fatalf("echo through the tunnel: %q, %v; want %q", buf, err, msg)
	}
}

// waitEOF fails unless c ends (EOF or reset) within a few seconds.
func waitEOF(t *testing.T, c net.Conn, what string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.Copy(io.Discard, c)
	if os.IsTimeout(err) {
		t.Errorf("%s: still open", what)
	}
}

func TestOutgoingAndDNS(t *testing.T) {
	p := startPodWith(t, true, map[string]string{"etc/resolv.conf": podResolvConf, "etc/hosts": podHosts})
	dns := &dnstest.Server{Records: map[string][]netip.Addr{
		"backend.shop.svc.cluster.local.": {netip.MustParseAddr("127.0.0.1")},
	}}
	go dns.ServeUDP(netnstest.ListenPacket(t, p.pid, "udp", "127.0.0.1:53"))
	go dns.ServeTCP(netnstest.Listen(t, p.pid, "tcp", "127.0.0.1:53"))
	echo := netnstest.Listen(t, p.pid, "tcp", "127.0.0.1:0")
	echoTCP(echo)
	echoAddr := echo.Addr().String()
	echoPort := strconv.Itoa(echo.Addr().(*net.TCPAddr).Port)
	if c, err := net.DialTimeout("tcp", echoAddr, time.Second); err == nil {
		c.Close()
		t.Fatalf("the test reached the pod's %s from its own namespace: the namespaces are not apart", echoAddr)
	}

	conn, srv, _ := serve(t, Options{TargetPID: p.pid, TunnelPairTimeout: pairTimeout})
	agentAddr := conn.Target()
	ctx, _ := holdSession(t, conn, "s-net")

	// A client that connects and says nothing holds up neither gRPC nor tunnels.
	silent, err := net.Dial("tcp", agentAddr)
	must(t, err)
	defer silent.Close()

	t.Run("health through the shared port", func(t *testing.T) {
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health: %v, %v", resp, err)
		}
	})

	t.Run("tcp, Connect first", func(t *testing.T) {
		tok := tunnel.NewToken()
		resp := connect(t, ctx, conn, "tcp", echoAddr, tok)
		if resp.Errno != 0 || resp.RemoteAddress != echoAddr || !strings.HasPrefix(resp.LocalAddress, "127.0.0.1:") {
			t.Fatalf("Connect = %+v", resp)
		}
		tun := openTunnel(t, agentAddr, tok)
		if err := tunnelStatus(t, tun); err != nil {
			t.Fatal(err)
		}
		echoRoundTrip(t, tun, "hello from the laptop")
		echoRoundTrip(t, tun, strings.Repeat("x", 300<<10))
	})

	t.Run("tcp, tunnel first", func(t *testing.T) {
		tok := tunnel.NewToken()
		tun := openTunnel(t, agentAddr, tok)
		// The client may write before the status; the bytes wait for the pairing.
		_, err := tun.Write([]byte("early "))
		must(t, err)
		time.Sleep(50 * time.Millisecond)
		if resp := connect(t, ctx, conn, "tcp", echoAddr, tok); resp.Errno != 0 {
			t.Fatalf("Connect = %+v", resp)
		}
		if err := tunnelStatus(t, tun); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, len("early "))
		tun.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(tun, buf); err != nil || string(buf) != "early " {
			t.Fatalf("early bytes: %q, %v", buf, err)
		}
		echoRoundTrip(t, tun, "and later")
	})

	t.Run("half-close", func(t *testing.T) {
		// The server reads to EOF, then answers: it needs the client's half-close to arrive.
		l := netnstest.Listen(t, p.pid, "tcp", "127.0.0.1:0")
		go func() {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			n, _ := io.Copy(io.Discard, c)
			fmt.Fprintf(c, "got %d bytes", n)
		}()
		tok := tunnel.NewToken()
		if resp := connect(t, ctx, conn, "tcp", l.Addr().String(), tok); resp.Errno != 0 {
			t.Fatalf("Connect = %+v", resp)
		}
		tun := openTunnel(t, agentAddr, tok)
		must(t, tunnelStatus(t, tun))
		_, err := tun.Write(bytes.Repeat([]byte("a"), 100000))
		must(t, err)
		must(t, tun.CloseWrite())
		tun.SetReadDeadline(time.Now().Add(10 * time.Second))
		got, err := io.ReadAll(tun) // to EOF: the server's close comes back as EOF
		if err != nil || string(got) != "got 100000 bytes" {
			t.Errorf("after half-close: %q, %v", got, err)
		}
	})

	t.Run("errnos", func(t *testing.T) {
		// The test's namespace listens on this port; the pod's does not.
		host, err := net.Listen("tcp", "127.0.0.1:0")
		must(t, err)
		defer host.Close()
		tests := []struct {
			addr  string
			errno unix.Errno
			msg   string
		}{
			{host.Addr().String(), unix.ECONNREFUSED, ""},
			{"10.255.255.1:80", unix.ENETUNREACH, ""}, // the pod has only its loopback
			{"nope:80", unix.ENOENT, "nope.shop.svc.cluster.local."},
		}
		for _, tt := range tests {
			resp := connect(t, ctx, conn, "tcp", tt.addr, tunnel.NewToken())
			if unix.Errno(resp.Errno) != tt.errno || !strings.Contains(resp.Message, tt.msg) {
				t.Errorf("Connect %s = %v %q, want %v", tt.addr, unix.Errno(resp.Errno), resp.Message, tt.errno)
			}
		}
	})

	t.Run("names as the pod resolves them", func(t *testing.T) {
		before := len(dns.Asked())
		tok := tunnel.NewToken()
		resp := connect(t, ctx, conn, "tcp", "backend:"+echoPort, tok)
		if resp.Errno != 0 || resp.RemoteAddress != echoAddr {
			t.Fatalf("Connect backend = %+v", resp)
		}
		tun := openTunnel(t, agentAddr, tok)
		must(t, tunnelStatus(t, tun))
		echoRoundTrip(t, tun, "by name")
		if asked := dns.Asked()[before:]; !slices.Contains(asked, "udp A backend.shop.svc.cluster.local.") {
			t.Errorf("the pod's DNS server was asked %q", asked)
		}
		// The pod's /etc/hosts comes first: no question for db.
		before = len(dns.Asked())
		resp = connect(t, ctx, conn, "tcp", "db:"+echoPort, tunnel.NewToken())
		if resp.Errno != 0 || resp.RemoteAddress != echoAddr {
			t.Errorf("Connect db = %+v", resp)
		}
		if asked := dns.Asked()[before:]; len(asked) != 0 {
			t.Errorf("a name of the pod's /etc/hosts went to DNS: %q", asked)
		}
	})

	t.Run("udp", func(t *testing.T) {
		pc := netnstest.ListenPacket(t, p.pid, "udp", "127.0.0.1:0")
		go func() {
			buf := make([]byte, 65535)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				pc.WriteTo(append([]byte("re:"), buf[:n]...), from)
			}
		}()
		tok := tunnel.NewToken()
		resp := connect(t, ctx, conn, "udp", pc.LocalAddr().String(), tok)
		if resp.Errno != 0 || resp.RemoteAddress != pc.LocalAddr().String() {
			t.Fatalf("Connect udp = %+v", resp)
		}
		tun := openTunnel(t, agentAddr, tok)
		must(t, tunnelStatus(t, tun))
		buf := make([]byte, tunnel.MaxDatagram)
		for _, msg := range []string{"one", "two", strings.Repeat("big", 3000)} {
			must(t, tunnel.WriteDatagram(tun, []byte(msg)))
			tun.SetReadDeadline(time.Now().Add(10 * time.Second))
			n, err := tunnel.ReadDatagram(tun, buf)
			if err != nil || string(buf[:n]) != "re:"+msg {
				t.Fatalf("datagram %.10q: %.10q, %v", msg, buf[:n], err)
			}
		}
	})

	t.Run("unknown token", func(t *testing.T) {
		start := time.Now()
		tun := openTunnel(t, agentAddr, tunnel.NewToken())
		if err := tunnelStatus(t, tun); err != tunnel.StatusUnknown {
			t.Errorf("tunnel without a Connect: %v, want StatusUnknown", err)
		}
		if el := time.Since(start); el < pairTimeout {
			t.Errorf("answered after %v, before the pairing timeout", el)
		}
	})

	t.Run("Connect without a tunnel is dropped", func(t *testing.T) {
		l := netnstest.Listen(t, p.pid, "tcp", "127.0.0.1:0")
		if resp := connect(t, ctx, conn, "tcp", l.Addr().String(), tunnel.NewToken()); resp.Errno != 0 {
			t.Fatalf("Connect = %+v", resp)
		}
		c, err := l.Accept()
		must(t, err)
		defer c.Close()
		waitEOF(t, c, "the pod's end of an unpaired connection")
	})

	t.Run("the session's end closes its connections", func(t *testing.T) {
		sctx, end := holdSession(t, conn, "s-short")
		l := netnstest.Listen(t, p.pid, "tcp", "127.0.0.1:0")
		accepted := make(chan net.Conn, 1)
		go func() {
			c, err := l.Accept()
			if err == nil {
				accepted <- c
			}
		}()
		tok := tunnel.NewToken()
		if resp := connect(t, sctx, conn, "tcp", l.Addr().String(), tok); resp.Errno != 0 {
			t.Fatalf("Connect = %+v", resp)
		}
		tun := openTunnel(t, agentAddr, tok)
		must(t, tunnelStatus(t, tun))
		server := <-accepted
		defer server.Close()
		// Another session's connection stays.
		other := tunnel.NewToken()
		connect(t, ctx, conn, "tcp", echoAddr, other)
		otherTun := openTunnel(t, agentAddr, other)
		must(t, tunnelStatus(t, otherTun))

		end()
		waitEOF(t, tun, "the tunnel after its session ended")
		waitEOF(t, server, "the pod's end after the session ended")
		echoRoundTrip(t, otherTun, "still here")
		_, err := agentv1.NewOutgoingClient(conn).Connect(sctx, &agentv1.ConnectRequest{Network: "tcp", Address: echoAddr, Token: tok[:]})
		if status.Code(err) != codes.FailedPrecondition {
			t.Errorf("Connect of an ended session: %v, want FailedPrecondition", err)
		}
	})

	t.Run("dns query from the pod", func(t *testing.T) {
		d := agentv1.NewDnsClient(conn)
		for _, q := range []struct {
			server string
			tcp    bool
		}{{"", false}, {"127.0.0.1:53", false}, {"127.0.0.1:53", true}} {
			packet := dnstest.Query(t, 0x4242, "backend.shop.svc.cluster.local.", dnsmessage.TypeA)
			resp, err := d.Query(ctx, &agentv1.DnsQuery{Packet: packet, Server: q.server, Tcp: q.tcp})
			must(t, err)
			addrs, rcode, err := dnstest.Addrs(resp.Packet)
			if resp.Errno != 0 || err != nil || rcode != dnsmessage.RCodeSuccess || !reflect.DeepEqual(addrs, []netip.Addr{netip.MustParseAddr("127.0.0.1")}) {
				t.Errorf("Query %+v = errno %v, %v %v %v", q, unix.Errno(resp.Errno), addrs, rcode, err)
			}
		}
		// Nothing answers on the pod's 127.0.0.2:53.
		resp, err := d.Query(ctx, &agentv1.DnsQuery{Packet: dnstest.Query(t, 1, "x.", dnsmessage.TypeA), Server: "127.0.0.2:53"})
		must(t, err)
		if unix.Errno(resp.Errno) != unix.ECONNREFUSED {
			t.Errorf("Query to a closed port = %v, want ECONNREFUSED", unix.Errno(resp.Errno))
		}
	})

	t.Run("dns config", func(t *testing.T) {
		resp, err := agentv1.NewDnsClient(conn).Config(ctx, &agentv1.DnsConfigRequest{})
		must(t, err)
		if string(resp.ResolvConf) != podResolvConf || string(resp.Hosts) != podHosts {
			t.Errorf("Config = %q, %q", resp.ResolvConf, resp.Hosts)
		}
	})

	t.Run("Close ends every connection", func(t *testing.T) {
		tok := tunnel.NewToken()
		connect(t, ctx, conn, "tcp", echoAddr, tok)
		tun := openTunnel(t, agentAddr, tok)
		must(t, tunnelStatus(t, tun))
		if srv.outgoing.Active() == 0 {
			t.Fatal("no active connection")
		}
		srv.outgoing.Close()
		waitEOF(t, tun, "a tunnel after Close")
	})
}

// Targetless: connections and DNS files are the agent's own.
func TestOutgoingTargetless(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer l.Close()
	echoTCP(l)
	conn, _, _ := serve(t, Options{TunnelPairTimeout: pairTimeout})
	ctx, _ := holdSession(t, conn, "s-tl")
	tok := tunnel.NewToken()
	if resp := connect(t, ctx, conn, "tcp", l.Addr().String(), tok); resp.Errno != 0 {
		t.Fatalf("Connect = %+v", resp)
	}
	tun := openTunnel(t, conn.Target(), tok)
	must(t, tunnelStatus(t, tun))
	echoRoundTrip(t, tun, "targetless")

	resp, err := agentv1.NewDnsClient(conn).Config(ctx, &agentv1.DnsConfigRequest{})
	must(t, err)
	rc, _ := os.ReadFile("/etc/resolv.conf")
	if !bytes.Equal(resp.ResolvConf, rc) {
		t.Errorf("targetless Config resolv.conf = %q, want the agent's own", resp.ResolvConf)
	}
}
