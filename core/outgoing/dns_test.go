package outgoing

import (
	"net/netip"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
	"golang.org/x/sys/unix"

	"github.com/kwarp-dev/kwarp/core/dnsroute"
	"github.com/kwarp-dev/kwarp/layer"
)

// dnsReply answers q with the address of its name in addrs, or NXDOMAIN.
func dnsReply(q []byte, addrs map[string]netip.Addr) ([]byte, error) {
	var p dnsmessage.Parser
	h, err := p.Start(q)
	if err != nil {
		return nil, err
	}
	qq, err := p.Question()
	if err != nil {
		return nil, err
	}
	a, ok := addrs[qq.Name.String()]
	rh := dnsmessage.Header{ID: h.ID, Response: true, RecursionDesired: h.RecursionDesired, RecursionAvailable: true}
	if !ok {
		rh.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, rh)
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(qq); err != nil {
		return nil, err
	}
	if ok {
		if err := b.StartAnswers(); err != nil {
			return nil, err
		}
		if err := b.AResource(dnsmessage.ResourceHeader{Name: qq.Name, Class: dnsmessage.ClassINET, TTL: 5}, dnsmessage.AResource{A: a.As4()}); err != nil {
			return nil, err
		}
	}
	return b.Finish()
}

func dnsQuery(t testing.TB, id uint16, name string) []byte {
	t.Helper()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, RecursionDesired: true})
	must(t, b.StartQuestions())
	must(t, b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}))
	msg, err := b.Finish()
	must(t, err)
	return msg
}

func parseAnswer(t testing.TB, msg []byte) (dnsmessage.Header, []netip.Addr) {
	t.Helper()
	var p dnsmessage.Parser
	h, err := p.Start(msg)
	must(t, err)
	must(t, p.SkipAllQuestions())
	var addrs []netip.Addr
	for {
		rh, err := p.AnswerHeader()
		if err != nil {
			break
		}
		if rh.Type != dnsmessage.TypeA {
			must(t, p.SkipAnswer())
			continue
		}
		a, err := p.AResource()
		must(t, err)
		addrs = append(addrs, netip.AddrFrom4(a.A))
	}
	return h, addrs
}

var nameserver = ap("10.96.0.10:53")

// The process resolves a name with the pod's nameserver, then connects to the address: the
// host filter matches it by that name.
func TestDNSThenHostFilter(t *testing.T) {
	remoteDNS := &fakeResolver{addrs: map[string]netip.Addr{
		"backend.shop.svc.cluster.local.": netip.MustParseAddr("10.200.3.3"),
		"other.example.":                  netip.MustParseAddr("10.200.4.4"),
	}}
	localDNS := &fakeResolver{addrs: map[string]netip.Addr{"git.corp.example.": netip.MustParseAddr("172.16.0.9")}}
	dns := newDNS(t, remoteDNS, localDNS, "*.corp.example")
	remote := newFakeRemote()
	h := newHandler(t, Options{
		Rules: Rules{TCP: true, UDP: false, Nameservers: []string{nameserver.String()},
			Filters: []Filter{{Kind: FilterRemote, Hosts: []string{"*.svc.cluster.local"}}}},
		Remote: remote, DNS: dns,
	})
	if got := h.RouteOutgoing(layer.UDP, nameserver); got != layer.Remote {
		t.Fatalf("the pod's nameserver routes %v with UDP off", got)
	}
	if got := h.RouteOutgoing(layer.TCP, ap("10.200.3.3:5432")); got != layer.Local {
		t.Fatalf("before the name was resolved: %v", got)
	}

	fd := socket(t, unix.AF_INET, unix.SOCK_DGRAM, false)
	must(t, connect(h, layer.UDP, fd, nameserver))
	local, peer := sockname(t, fd), peername(t, fd)
	c := fileConn(t, fd)
	ask := func(id uint16, name string) (dnsmessage.Header, []netip.Addr) {
		t.Helper()
		_, err := c.Write(dnsQuery(t, id, name))
		must(t, err)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b := make([]byte, 1500)
		n, err := c.Read(b)
		must(t, err)
		return parseAnswer(t, b[:n])
	}
	hd, addrs := ask(11, "backend.shop.svc.cluster.local.")
	if hd.ID != 11 || len(addrs) != 1 || addrs[0] != netip.MustParseAddr("10.200.3.3") {
		t.Fatalf("answer %+v %v", hd, addrs)
	}
	if f, ok := h.Lookup(layer.UDP, local, peer); !ok || f.Remote != nameserver {
		t.Fatalf("the answer's source is not the nameserver: %+v %v", f, ok)
	}
	hd, addrs = ask(12, "git.corp.example.")
	if hd.ID != 12 || len(addrs) != 1 || addrs[0] != netip.MustParseAddr("172.16.0.9") {
		t.Fatalf("local answer %+v %v", hd, addrs)
	}
	if remoteDNS.calls.n.Load() != 1 || localDNS.calls.n.Load() != 1 {
		t.Fatalf("remote asked %d times, local %d; want 1 and 1", remoteDNS.calls.n.Load(), localDNS.calls.n.Load())
	}
	if n := remote.dialCount(nameserver); n != 0 {
		t.Fatalf("DNS went through a generic tunnel %d times", n)
	}
	if got := h.RouteOutgoing(layer.TCP, ap("10.200.3.3:5432")); got != layer.Remote {
		t.Fatalf("after the name was resolved: %v", got)
	}
	if got := h.RouteOutgoing(layer.TCP, ap("10.200.4.4:80")); got != layer.Local {
		t.Fatalf("an address another name resolved to: %v", got)
	}
}

func TestDNSServfail(t *testing.T) {
	dns := newDNS(t, &fakeResolver{err: errResolver}, nil)
	h := newHandler(t, Options{Rules: Rules{UDP: true, Nameservers: []string{nameserver.String()}}, DNS: dns})
	fd := socket(t, unix.AF_INET, unix.SOCK_DGRAM, false)
	must(t, connect(h, layer.UDP, fd, nameserver))
	c := fileConn(t, fd)
	_, err := c.Write([]byte("garbage that is no DNS message"))
	must(t, err)
	_, err = c.Write(dnsQuery(t, 77, "x.example."))
	must(t, err)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 1500)
	n, err := c.Read(b)
	must(t, err)
	hd, _ := parseAnswer(t, b[:n])
	if hd.ID != 77 || hd.RCode != dnsmessage.RCodeServerFailure {
		t.Fatalf("answer %+v, want SERVFAIL for ID 77 (and nothing for the garbage)", hd)
	}
}

// DNS over TCP to a pod nameserver (after a truncated answer) is answered the same way.
func TestDNSOverTCP(t *testing.T) {
	remoteDNS := &fakeResolver{addrs: map[string]netip.Addr{"big.example.": netip.MustParseAddr("10.200.5.5")}}
	dns := newDNS(t, remoteDNS, nil)
	remote := newFakeRemote()
	h := newHandler(t, Options{Rules: Rules{TCP: true, Nameservers: []string{nameserver.String()}}, DNS: dns, Remote: remote})
	fd := socket(t, unix.AF_INET, unix.SOCK_STREAM, false)
	must(t, connect(h, layer.TCP, fd, nameserver))
	local, peer := sockname(t, fd), peername(t, fd)
	if f, ok := h.Lookup(layer.TCP, local, peer); !ok || f.Remote != nameserver {
		t.Fatalf("Lookup = %+v %v", f, ok)
	}
	c := fileConn(t, fd)
	// Two queries written at once, as glibc does for A and AAAA.
	q1, q2 := dnsQuery(t, 1, "big.example."), dnsQuery(t, 2, "missing.example.")
	var both []byte
	for _, q := range [][]byte{q1, q2} {
		both = append(both, byte(len(q)>>8), byte(len(q)))
		both = append(both, q...)
	}
	_, err := c.Write(both)
	must(t, err)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	a1, err := dnsroute.ReadTCPMessage(c)
	must(t, err)
	a2, err := dnsroute.ReadTCPMessage(c)
	must(t, err)
	h1, addrs := parseAnswer(t, a1)
	h2, _ := parseAnswer(t, a2)
	if h1.ID != 1 || len(addrs) != 1 || h2.ID != 2 || h2.RCode != dnsmessage.RCodeNameError {
		t.Fatalf("answers %+v %v, %+v", h1, addrs, h2)
	}
	if n := remote.dialCount(nameserver); n != 0 {
		t.Fatalf("DNS over TCP went to the pod as raw TCP %d times", n)
	}
	// A malformed query ends the connection.
	must(t, dnsroute.WriteTCPMessage(c, []byte{1, 2, 3}))
	if _, err := dnsroute.ReadTCPMessage(c); err == nil {
		t.Fatal("an answer to garbage")
	}
	eventually(t, "the DNS connection to be forgotten", func() bool { _, ok := h.Lookup(layer.TCP, local, peer); return !ok })
}

func TestNameserversNeedDNS(t *testing.T) {
	_, err := New(Options{Rules: Rules{Nameservers: []string{"10.96.0.10:53"}}, Remote: newFakeRemote(), LocalAddrs: []netip.Addr{}})
	if err == nil {
		t.Fatal("nameservers without a DNS router accepted")
	}
}
