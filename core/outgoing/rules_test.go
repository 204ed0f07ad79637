package outgoing

import (
	"net/netip"
	"testing"

	"github.com/kwarp-dev/kwarp/core/dnsroute"
	"github.com/kwarp-dev/kwarp/layer"
)

func TestRoute(t *testing.T) {
	names := dnsroute.NewNames(64)
	names.Record("backend.shop.svc.cluster.local", netip.MustParseAddr("10.200.1.1"))
	names.Record("db.corp.example.com", netip.MustParseAddr("172.16.5.5"))
	names.Record("api.example.org", netip.MustParseAddr("2001:db8::80"))
	own := []netip.Addr{netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("fd00::2")}
	ns := []string{"10.96.0.10:53"}

	const R, L = layer.Remote, layer.Local
	type check struct {
		p    layer.Proto
		dst  string
		want layer.Route
	}
	tests := []struct {
		name   string
		rules  Rules
		checks []check
	}{
		{"no filters", Rules{TCP: true, UDP: true, Nameservers: ns}, []check{
			{layer.TCP, "10.200.1.1:80", R},
			{layer.UDP, "10.200.1.1:53", R},
			{layer.TCP, "[2001:db8::80]:443", R},
			{layer.TCP, "[::ffff:10.200.1.1]:80", R},
			// always here
			{layer.TCP, "127.0.0.1:80", L},
			{layer.TCP, "127.8.9.10:80", L},
			{layer.TCP, "[::1]:80", L},
			{layer.TCP, "[::ffff:127.0.0.1]:80", L},
			{layer.TCP, "0.0.0.0:80", L},
			{layer.TCP, "[::]:80", L},
			{layer.TCP, "192.0.2.2:22", L},
			{layer.TCP, "[::ffff:192.0.2.2]:22", L},
			{layer.TCP, "[fd00::2]:22", L},
			{layer.UDP, "224.0.0.251:5353", L},
			{layer.UDP, "[ff02::fb]:5353", L},
			{layer.UDP, "255.255.255.255:67", L},
			{layer.UDP, "10.96.0.10:53", R},
			{layer.TCP, "10.96.0.10:53", R},
		}},
		{"tcp off", Rules{TCP: false, UDP: true, Nameservers: ns}, []check{
			{layer.TCP, "10.200.1.1:80", L},
			{layer.UDP, "10.200.1.1:80", R},
			{layer.TCP, "10.96.0.10:53", R}, // DNS is carried whatever the switches say
		}},
		{"udp off", Rules{TCP: true, UDP: false, Nameservers: ns}, []check{
			{layer.TCP, "10.200.1.1:80", R},
			{layer.UDP, "10.200.1.1:80", L},
			{layer.UDP, "10.96.0.10:53", R},
			{layer.UDP, "[::ffff:10.96.0.10]:53", R},
			{layer.UDP, "10.96.0.10:54", L},
		}},
		{"remote subnet", Rules{TCP: true, UDP: true, Filters: []Filter{{Kind: FilterRemote, Subnets: []string{"10.96.0.0/12", "fd10::/16"}}}}, []check{
			{layer.TCP, "10.96.0.1:443", R},
			{layer.TCP, "10.111.255.255:443", R},
			{layer.TCP, "[::ffff:10.100.0.1]:443", R},
			{layer.UDP, "10.100.0.1:9000", R},
			{layer.TCP, "[fd10::5]:80", R},
			{layer.TCP, "10.200.1.1:443", L},
			{layer.TCP, "8.8.8.8:443", L},
			{layer.TCP, "[2001:db8::80]:443", L},
		}},
		{"local subnet", Rules{TCP: true, UDP: true, Filters: []Filter{{Kind: FilterLocal, Subnets: []string{"10.96.0.0/12", "::ffff:172.16.0.0/108"}}}}, []check{
			{layer.TCP, "10.96.0.1:443", L},
			{layer.UDP, "10.96.0.1:443", L},
			{layer.TCP, "172.16.5.5:443", L}, // the mapped prefix applies to plain IPv4
			{layer.TCP, "10.200.1.1:443", R},
			{layer.TCP, "[2001:db8::80]:443", R},
		}},
		{"remote port", Rules{TCP: true, UDP: true, Filters: []Filter{{Kind: FilterRemote, Ports: []int{5432, 6379}}}}, []check{
			{layer.TCP, "10.200.1.1:5432", R},
			{layer.TCP, "8.8.8.8:6379", R},
			{layer.UDP, "10.200.1.1:5432", R},
			{layer.TCP, "10.200.1.1:80", L},
			{layer.TCP, "127.0.0.1:5432", L},
		}},
		{"local port", Rules{TCP: true, UDP: true, Filters: []Filter{{Kind: FilterLocal, Ports: []int{443}}}}, []check{
			{layer.TCP, "10.200.1.1:443", L},
			{layer.TCP, "10.200.1.1:80", R},
		}},
		{"remote host", Rules{TCP: true, UDP: true, Filters: []Filter{{Kind: FilterRemote, Hosts: []string{"*.svc.cluster.local", "API.example.org."}}}}, []check{
			{layer.TCP, "10.200.1.1:80", R},
			{layer.TCP, "[::ffff:10.200.1.1]:80", R},
			{layer.TCP, "[2001:db8::80]:443", R},
			{layer.TCP, "172.16.5.5:5432", L},
			{layer.TCP, "10.200.1.2:80", L}, // never resolved
		}},
		{"local host", Rules{TCP: true, UDP: true, Filters: []Filter{{Kind: FilterLocal, Hosts: []string{"*.corp.example.com"}}}}, []check{
			{layer.TCP, "172.16.5.5:5432", L},
			{layer.TCP, "10.200.1.1:80", R},
			{layer.TCP, "10.200.1.2:80", R},
		}},
		{"host written as an address", Rules{TCP: true, UDP: true, Filters: []Filter{{Kind: FilterRemote, Hosts: []string{"10.200.1.2"}}}}, []check{
			{layer.TCP, "10.200.1.2:80", R},
			{layer.TCP, "10.200.1.1:80", L},
		}},
		{"host and port together", Rules{TCP: true, UDP: true, Filters: []Filter{{Kind: FilterRemote, Hosts: []string{"*.svc.cluster.local"}, Subnets: []string{"10.96.0.0/12"}, Ports: []int{80}}}}, []check{
			{layer.TCP, "10.200.1.1:80", R}, // by name
			{layer.TCP, "10.96.0.1:80", R},  // by subnet
			{layer.TCP, "10.200.1.1:81", L},
			{layer.TCP, "10.96.0.1:81", L},
			{layer.TCP, "8.8.8.8:80", L},
		}},
		{"local beats remote", Rules{TCP: true, UDP: true, Filters: []Filter{
			{Kind: FilterRemote, Subnets: []string{"10.0.0.0/8"}},
			{Kind: FilterLocal, Ports: []int{5432}},
		}}, []check{
			{layer.TCP, "10.200.1.1:80", R},
			{layer.TCP, "10.200.1.1:5432", L},
			{layer.TCP, "8.8.8.8:80", L},
		}},
		{"remote filters add up", Rules{TCP: true, UDP: true, Filters: []Filter{
			{Kind: FilterRemote, Subnets: []string{"10.96.0.0/12"}},
			{Kind: FilterRemote, Hosts: []string{"*.corp.example.com"}},
		}}, []check{
			{layer.TCP, "10.96.0.1:80", R},
			{layer.TCP, "172.16.5.5:80", R},
			{layer.TCP, "10.200.1.1:80", L},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab, err := Compile(tt.rules, names, own)
			must(t, err)
			for _, c := range tt.checks {
				if got := tab.Route(c.p, netip.MustParseAddrPort(c.dst)); got != c.want {
					t.Errorf("Route(%v, %s) = %v, want %v", c.p, c.dst, got, c.want)
				}
			}
		})
	}
}

func TestRouteWithoutNames(t *testing.T) {
	tab, err := Compile(Rules{TCP: true, Filters: []Filter{{Kind: FilterRemote, Hosts: []string{"*"}}}}, nil, nil)
	must(t, err)
	if got := tab.Route(layer.TCP, ap("10.0.0.1:80")); got != layer.Local {
		t.Fatalf("a host filter without names matched: %v", got)
	}
}

func TestCompileErrors(t *testing.T) {
	for name, r := range map[string]Rules{
		"kind":       {Filters: []Filter{{Kind: "both", Ports: []int{1}}}},
		"glob":       {Filters: []Filter{{Kind: FilterRemote, Hosts: []string{"a/b"}}}},
		"subnet":     {Filters: []Filter{{Kind: FilterLocal, Subnets: []string{"10.0.0.300/8"}}}},
		"port":       {Filters: []Filter{{Kind: FilterLocal, Ports: []int{70000}}}},
		"zero port":  {Filters: []Filter{{Kind: FilterLocal, Ports: []int{0}}}},
		"nameserver": {Nameservers: []string{"10.96.0.10"}},
	} {
		if _, err := Compile(r, nil, nil); err == nil {
			t.Errorf("%s: compiled", name)
		}
	}
}

func TestRouteAllocatesNothing(t *testing.T) {
	names := dnsroute.NewNames(64)
	names.Record("backend.shop.svc.cluster.local", netip.MustParseAddr("10.200.1.1"))
	tab, err := Compile(Rules{TCP: true, UDP: true, Nameservers: []string{"10.96.0.10:53"}, Filters: []Filter{
		{Kind: FilterLocal, Hosts: []string{"*.corp.example.com"}, Ports: []int{5432}},
		{Kind: FilterRemote, Hosts: []string{"*.svc.cluster.local"}, Subnets: []string{"10.96.0.0/12"}},
	}}, names, []netip.Addr{netip.MustParseAddr("192.0.2.2")})
	must(t, err)
	dsts := []netip.AddrPort{ap("10.200.1.1:80"), ap("[::ffff:10.200.1.1]:5432"), ap("8.8.8.8:443"), ap("10.96.0.10:53"), ap("127.0.0.1:80")}
	allocs := testing.AllocsPerRun(200, func() {
		for _, d := range dsts {
			tab.Route(layer.TCP, d)
		}
	})
	if allocs != 0 {
		t.Fatalf("Route allocates %v times per run", allocs)
	}
}

func BenchmarkRoute(b *testing.B) {
	names := dnsroute.NewNames(64)
	names.Record("backend.shop.svc.cluster.local", netip.MustParseAddr("10.200.1.1"))
	tab, err := Compile(Rules{TCP: true, UDP: true, Filters: []Filter{
		{Kind: FilterLocal, Ports: []int{5432}},
		{Kind: FilterRemote, Hosts: []string{"*.svc.cluster.local"}, Subnets: []string{"10.96.0.0/12"}},
	}}, names, nil)
	must(b, err)
	dst := ap("10.200.1.1:80")
	b.ReportAllocs()
	for b.Loop() {
		tab.Route(layer.TCP, dst)
	}
}
