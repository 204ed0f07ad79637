package portforward

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParseSpec(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	tests := []struct {
		in   string
		want Spec
	}{
		{"backend:80", Spec{Bind: lo, LocalPort: 80, Host: "backend", Port: 80}},
		{"8080:backend:80", Spec{Bind: lo, LocalPort: 8080, Host: "backend", Port: 80}},
		{"0:backend.shop.svc.cluster.local:80", Spec{Bind: lo, LocalPort: 0, Host: "backend.shop.svc.cluster.local", Port: 80}},
		{"0.0.0.0:8080:10.244.0.5:8080", Spec{Bind: netip.MustParseAddr("0.0.0.0"), LocalPort: 8080, Host: "10.244.0.5", Port: 8080}},
		{"[::1]:8080:[fd00::5]:80", Spec{Bind: netip.MustParseAddr("::1"), LocalPort: 8080, Host: "fd00::5", Port: 80}},
		{"5353:kube-dns.kube-system:53/udp", Spec{Bind: lo, LocalPort: 5353, Host: "kube-dns.kube-system", Port: 53, UDP: true}},
		{"9000:redis:6379/tcp", Spec{Bind: lo, LocalPort: 9000, Host: "redis", Port: 6379}},
	}
	for _, tt := range tests {
		got, err := ParseSpec(tt.in)
		if err != nil {
			t.Errorf("ParseSpec(%q): %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseSpec(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestParseSpecErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"backend", "1 fields"},
		{"1:2:3:4:5", "5 fields"},
		{"8080:backend:http", `port: "http" is not a port`},
		{"70000:backend:80", "local port"},
		{"backend:0", "is not a port"},
		{"nope:8080:backend:80", "bind address"},
		{":80", "no host"},
		{"backend:80/sctp", `unknown protocol "sctp"`},
		{"[::1:8080:x:80", "'[' without ']'"},
	}
	for _, tt := range tests {
		_, err := ParseSpec(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "8080:backend:80") {
			t.Errorf("ParseSpec(%q) error %v, want one containing %q and an example", tt.in, err, tt.want)
		}
	}
}
