package dnsserver

import (
	"net/netip"
	"reflect"
	"testing"
	"time"
)

func TestParseResolvConf(t *testing.T) {
	ns := func(s ...string) []netip.AddrPort {
		var out []netip.AddrPort
		for _, a := range s {
			out = append(out, netip.AddrPortFrom(netip.MustParseAddr(a), 53))
		}
		return out
	}
	tests := []struct {
		name, conf string
		want       Conf
	}{
		{"kubernetes pod", "search shop.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n",
			Conf{Nameservers: ns("10.96.0.10"), Search: []string{"shop.svc.cluster.local", "svc.cluster.local", "cluster.local"}, Ndots: 5, Timeout: 5 * time.Second, Attempts: 2}},
		{"empty: glibc's defaults", "",
			Conf{Nameservers: ns("127.0.0.1"), Ndots: 1, Timeout: 5 * time.Second, Attempts: 2}},
		{"comments, at most three servers, ipv6 with zone", "# c\n; c\nnameserver 10.0.0.1\nnameserver fe80::1%eth0\nnameserver 10.0.0.3\nnameserver 10.0.0.4\nnameserver bogus\n",
			Conf{Nameservers: ns("10.0.0.1", "fe80::1%eth0", "10.0.0.3"), Ndots: 1, Timeout: 5 * time.Second, Attempts: 2}},
		{"the last of domain and search wins", "search a.example b.example.\ndomain c.example\n",
			Conf{Nameservers: ns("127.0.0.1"), Search: []string{"c.example"}, Ndots: 1, Timeout: 5 * time.Second, Attempts: 2}},
		{"search stops at a comment", "search a.example # b.example\n",
			Conf{Nameservers: ns("127.0.0.1"), Search: []string{"a.example"}, Ndots: 1, Timeout: 5 * time.Second, Attempts: 2}},
		{"options with glibc's bounds", "options ndots:20 timeout:0 attempts:9 use-vc rotate ndots:x\n",
			Conf{Nameservers: ns("127.0.0.1"), Ndots: 15, Timeout: time.Second, Attempts: 5, UseTCP: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ParseResolvConf([]byte(tt.conf)); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseResolvConf(%q)\n got %+v\nwant %+v", tt.conf, got, tt.want)
			}
		})
	}
}

func TestParseHosts(t *testing.T) {
	h := ParseHosts([]byte("127.0.0.1 localhost\n::1 localhost ip6-localhost # comment\n10.1.2.3 DB.Pod.Local. db\n# 10.9.9.9 commented\nbogus name\n10.1.2.4\n"))
	want := Hosts{
		"localhost":     {netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")},
		"ip6-localhost": {netip.MustParseAddr("::1")},
		"db.pod.local":  {netip.MustParseAddr("10.1.2.3")},
		"db":            {netip.MustParseAddr("10.1.2.3")},
	}
	if !reflect.DeepEqual(h, want) {
		t.Errorf("ParseHosts = %v, want %v", h, want)
	}
}

func TestCandidates(t *testing.T) {
	conf := Conf{Search: []string{"shop.svc.cluster.local", "svc.cluster.local"}, Ndots: 2}
	tests := []struct {
		host string
		want []string
	}{
		{"backend", []string{"backend.shop.svc.cluster.local.", "backend.svc.cluster.local.", "backend."}},
		{"backend.other", []string{"backend.other.shop.svc.cluster.local.", "backend.other.svc.cluster.local.", "backend.other."}},
		{"api.example.org", []string{"api.example.org.", "api.example.org.shop.svc.cluster.local.", "api.example.org.svc.cluster.local."}},
		{"rooted.", []string{"rooted."}},
	}
	for _, tt := range tests {
		if got := candidates(conf, tt.host); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("candidates(%q) = %q, want %q", tt.host, got, tt.want)
		}
	}
}
