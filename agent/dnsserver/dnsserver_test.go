package dnsserver

// Targetless tests on the loopback: the agent's own namespace, a real DNS server (dnstest) on
// real sockets. The target's namespace is tested through the whole agent in package agent.

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	agentv1 "github.com/kwarp-dev/kwarp/agent/api/v1"
	"github.com/kwarp-dev/kwarp/agent/dnsserver/dnstest"
	"github.com/kwarp-dev/kwarp/agent/netns"
	"github.com/rs/zerolog"
	"golang.org/x/net/dns/dnsmessage"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// startDNS serves srv on UDP and TCP on one loopback port.
func startDNS(t *testing.T, srv *dnstest.Server) netip.AddrPort {
	t.Helper()
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("tcp", pc.LocalAddr().String())
		if err != nil {
			pc.Close() // the port is taken for TCP: try another
			continue
		}
		t.Cleanup(func() { pc.Close(); l.Close() })
		go srv.ServeUDP(pc)
		go srv.ServeTCP(l)
		return netip.MustParseAddrPort(pc.LocalAddr().String())
	}
	t.Fatal("no loopback port free for both UDP and TCP")
	return netip.AddrPort{}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func addrs(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, a := range s {
		out = append(out, netip.MustParseAddr(a))
	}
	return out
}

func TestLookup(t *testing.T) {
	srv := &dnstest.Server{
		Records: map[string][]netip.Addr{
			"backend.shop.svc.cluster.local.": addrs("10.0.0.7", "fd00::7"),
			"api.example.org.":                addrs("192.0.2.1"),
			"real.example.org.":               addrs("192.0.2.9"),
			"big.example.org.":                addrs("192.0.2.10"),
			"backup.svc.cluster.local.":       addrs("10.0.0.8"),
		},
		CNAMEs:   map[string]string{"www.example.org.": "real.example.org."},
		Truncate: map[string]bool{"big.example.org.": true},
		ServFail: map[string]bool{"backup.shop.svc.cluster.local.": true},
	}
	server := startDNS(t, srv)
	conf := Conf{
		Nameservers: []netip.AddrPort{server},
		Search:      []string{"shop.svc.cluster.local", "svc.cluster.local"},
		Ndots:       5, Timeout: 2 * time.Second, Attempts: 1,
	}
	hosts := ParseHosts([]byte("10.9.9.9 db.pod.local\n"))
	d := netns.New(nil)

	tests := []struct {
		host  string
		want  []netip.Addr
		asked []string // the A questions, in order
	}{
		{"backend", addrs("10.0.0.7", "fd00::7"), []string{"backend.shop.svc.cluster.local."}},
		{"api.example.org", addrs("192.0.2.1"), []string{"api.example.org.shop.svc.cluster.local.", "api.example.org.svc.cluster.local.", "api.example.org."}},
		{"www.example.org.", addrs("192.0.2.9"), []string{"www.example.org."}},
		{"big.example.org.", addrs("192.0.2.10"), []string{"big.example.org."}}, // truncated over UDP: TCP
		{"backup", addrs("10.0.0.8"), []string{"backup.shop.svc.cluster.local.", "backup.svc.cluster.local."}},
		{"DB.pod.local.", addrs("10.9.9.9"), nil}, // /etc/hosts: no query at all
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			before := len(srv.Asked())
			got, err := lookup(ctxT(t), d, conf, hosts, tt.host)
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("lookup(%q) = %v, %v; want %v", tt.host, got, err, tt.want)
			}
			var asked []string
			for _, q := range srv.Asked()[before:] {
				if name, ok := strings.CutPrefix(q, "udp A "); ok {
					asked = append(asked, name)
				}
			}
			if !reflect.DeepEqual(asked, tt.asked) {
				t.Errorf("lookup(%q) asked %q, want %q", tt.host, asked, tt.asked)
			}
		})
	}
	if !strings.Contains(strings.Join(srv.Asked(), " "), "tcp A big.example.org.") {
		t.Errorf("a truncated answer was not asked again over TCP: %q", srv.Asked())
	}

	t.Run("no such name", func(t *testing.T) {
		_, err := lookup(ctxT(t), d, conf, hosts, "nope")
		if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "nope.shop.svc.cluster.local.") {
			t.Errorf("lookup(nope) = %v, want ErrNotFound naming the tried names", err)
		}
	})
	t.Run("no server answers", func(t *testing.T) {
		silent := startDNS(t, &dnstest.Server{Silent: true})
		c := conf
		c.Nameservers, c.Timeout, c.Attempts = []netip.AddrPort{silent}, 100*time.Millisecond, 2
		_, err := lookup(ctxT(t), d, c, nil, "backend")
		if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "no DNS server answered") {
			t.Errorf("lookup with a silent server = %v", err)
		}
	})
	t.Run("the next server answers", func(t *testing.T) {
		c := conf
		c.Nameservers = []netip.AddrPort{closedUDPPort(t), server}
		got, err := lookup(ctxT(t), d, c, nil, "backend")
		if err != nil || len(got) == 0 {
			t.Errorf("lookup past a refusing server = %v, %v", got, err)
		}
	})
}

// closedUDPPort is a loopback UDP port nothing listens on (ICMP port unreachable).
func closedUDPPort(t *testing.T) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ap := netip.MustParseAddrPort(pc.LocalAddr().String())
	pc.Close()
	return ap
}

func TestQuery(t *testing.T) {
	srv := &dnstest.Server{Records: map[string][]netip.Addr{"backend.shop.svc.cluster.local.": addrs("10.0.0.7")}}
	server := startDNS(t, srv)
	s := New(zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel), nil, netns.New(nil), Options{Timeout: 200 * time.Millisecond})
	ctx := ctxT(t)

	for _, tcp := range []bool{false, true} {
		q := dnstest.Query(t, 0x1234, "backend.shop.svc.cluster.local.", dnsmessage.TypeA)
		resp, err := s.Query(ctx, &agentv1.DnsQuery{Packet: q, Server: server.String(), Tcp: tcp})
		if err != nil {
			t.Fatal(err)
		}
		got, rcode, err := dnstest.Addrs(resp.Packet)
		if resp.Errno != 0 || err != nil || rcode != dnsmessage.RCodeSuccess || !reflect.DeepEqual(got, addrs("10.0.0.7")) || !bytes.Equal(resp.Packet[:2], q[:2]) {
			t.Errorf("Query tcp=%v = %+v (%v %v %v)", tcp, resp, got, rcode, err)
		}
	}

	t.Run("silent server: ETIMEDOUT after one retry", func(t *testing.T) {
		silent := &dnstest.Server{Silent: true}
		addr := startDNS(t, silent)
		resp, err := s.Query(ctx, &agentv1.DnsQuery{Packet: dnstest.Query(t, 1, "x.", dnsmessage.TypeA), Server: addr.String()})
		if err != nil || unix.Errno(resp.Errno) != unix.ETIMEDOUT || resp.Message == "" {
			t.Errorf("Query to a silent server = %+v, %v; want ETIMEDOUT", resp, err)
		}
		if n := len(silent.Asked()); n != 2 {
			t.Errorf("a silent server was asked %d times, want 2 (one retry)", n)
		}
	})
	t.Run("closed port: ECONNREFUSED", func(t *testing.T) {
		for _, tcp := range []bool{false, true} {
			resp, err := s.Query(ctx, &agentv1.DnsQuery{Packet: dnstest.Query(t, 1, "x.", dnsmessage.TypeA), Server: closedUDPPort(t).String(), Tcp: tcp})
			if err != nil || unix.Errno(resp.Errno) != unix.ECONNREFUSED {
				t.Errorf("Query tcp=%v to a closed port = %+v, %v; want ECONNREFUSED", tcp, resp, err)
			}
		}
	})
	t.Run("malformed requests", func(t *testing.T) {
		for _, req := range []*agentv1.DnsQuery{
			{Packet: []byte{1, 2, 3}, Server: server.String()},
			{Packet: dnstest.Query(t, 1, "x.", dnsmessage.TypeA), Server: "10.0.0.1"},
			{Packet: dnstest.Query(t, 1, "x.", dnsmessage.TypeA), Server: "dns.example:53"},
		} {
			if _, err := s.Query(ctx, req); status.Code(err) != codes.InvalidArgument {
				t.Errorf("Query(%q, %q) = %v, want InvalidArgument", req.Packet, req.Server, err)
			}
		}
	})
}

// Targetless: the agent's own files.
func TestConfigTargetless(t *testing.T) {
	s := New(zerolog.Nop(), nil, netns.New(nil), Options{})
	resp, err := s.Config(ctxT(t), &agentv1.DnsConfigRequest{})
	if err != nil {
		t.Fatal(err)
	}
	rc, _ := os.ReadFile("/etc/resolv.conf")
	hosts, _ := os.ReadFile("/etc/hosts")
	if !bytes.Equal(resp.ResolvConf, rc) || !bytes.Equal(resp.Hosts, hosts) {
		t.Errorf("Config = %q, %q; want the agent's own files", resp.ResolvConf, resp.Hosts)
	}
}
