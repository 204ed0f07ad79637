package dnsroute

import (
	"context"
	"errors"
	"net/netip"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

// FuzzAnswer feeds arbitrary queries and arbitrary answers through the router: nothing the
// process or a nameserver sends may panic the core.
func FuzzAnswer(f *testing.F) {
	q := Query(f, 1, "www.example.com.", dnsmessage.TypeA)
	f.Add(q, Reply(f, q,
		rr{name: "www.example.com.", cname: "e.cdn.net."},
		rr{name: "e.cdn.net.", addr: netip.MustParseAddr("203.0.113.1")},
		rr{name: "e.cdn.net.", addr: netip.MustParseAddr("2001:db8::1")}))
	f.Add(q, []byte{})
	f.Add([]byte{0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, []byte{0, 1, 0x80, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0xc0, 12})
	f.Fuzz(func(t *testing.T, query, answer []byte) {
		res := &fakeResolver{fn: func(_ netip.AddrPort, _ []byte, tcp bool) ([]byte, error) {
			if tcp {
				return nil, errors.New("fail")
			}
			return answer, nil
		}}
		r, err := New(Config{Remote: res, LocalResolver: res, LocalServer: localNS, Local: []string{"*.example.com"}, Names: NewNames(64)})
		if err != nil {
			t.Fatal(err)
		}
		for _, tcp := range []bool{false, true} {
			ans, err := r.Answer(context.Background(), podNS, query, tcp)
			if err == nil && tcp {
				// A SERVFAIL must itself be a well-formed answer.
				var p dnsmessage.Parser
				if _, err := p.Start(ans); err != nil {
					t.Fatalf("SERVFAIL does not parse: %v", err)
				}
			}
		}
		_ = r.record(answer)
	})
}
