package dnsserver

// What the agent parses comes from the target, which it must not trust: the pod's resolv.conf
// and hosts, and the answers of whatever DNS server the pod names. None of it may panic the
// agent or make it loop.

import (
	"net/netip"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

func FuzzParseResolvConf(f *testing.F) {
	f.Add([]byte("search a.example b.example\nnameserver 10.96.0.10\noptions ndots:5 timeout:2 attempts:3\n"))
	f.Add([]byte("nameserver fe80::1%eth0\ndomain x\noptions ndots:-1 timeout:99999999999999999999 use-vc\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c := ParseResolvConf(b)
		if len(c.Nameservers) == 0 || len(c.Nameservers) > maxNameservers {
			t.Errorf("%d nameservers", len(c.Nameservers))
		}
		if c.Ndots < 0 || c.Ndots > 15 || c.Timeout <= 0 || c.Attempts < 1 {
			t.Errorf("out of bounds: %+v", c)
		}
		for _, name := range candidates(c, "backend") {
			if len(name) > 255 {
				t.Errorf("candidate of %d bytes", len(name))
			}
		}
	})
}

func FuzzParseHosts(f *testing.F) {
	f.Add([]byte("127.0.0.1 localhost\n::1 localhost # x\n10.1.2.3 DB. db\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for name, addrs := range ParseHosts(b) {
			if len(addrs) == 0 || name != canonical(name) {
				t.Errorf("entry %q: %v", name, addrs)
			}
		}
	})
}

func FuzzParseAnswer(f *testing.F) {
	name := dnsmessage.MustNewName("backend.shop.svc.cluster.local.")
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 7, Response: true})
	b.EnableCompression()
	b.StartQuestions()
	b.Question(dnsmessage.Question{Name: name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
	b.StartAnswers()
	b.CNAMEResource(dnsmessage.ResourceHeader{Name: name, Class: dnsmessage.ClassINET}, dnsmessage.CNAMEResource{CNAME: dnsmessage.MustNewName("x.example.")})
	b.AResource(dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName("x.example."), Class: dnsmessage.ClassINET}, dnsmessage.AResource{A: [4]byte{10, 0, 0, 1}})
	seed, err := b.Finish()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add(seed[:len(seed)-3])
	f.Fuzz(func(t *testing.T, ans []byte) {
		for _, typ := range []dnsmessage.Type{dnsmessage.TypeA, dnsmessage.TypeAAAA} {
			addrs, _, err := parseAnswer(ans, 7, name, typ)
			if err != nil && len(addrs) > 0 {
				t.Errorf("addresses with an error: %v", addrs)
			}
			for _, a := range addrs {
				if a.Is4() != (typ == dnsmessage.TypeA) || a == (netip.Addr{}) {
					t.Errorf("%v in the answer to a %v query", a, typ)
				}
			}
		}
		truncated(ans)
	})
}
