package dns

import (
	"context"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"

	agentv1 "github.com/kwarp-dev/kwarp/agent/api/v1"
	"github.com/kwarp-dev/kwarp/sdk"
	"github.com/kwarp-dev/kwarp/sdk/plugintest"
)

func TestConformance(t *testing.T) {
	plugintest.Run(t, func() sdk.Plugin { return New() })
}

func TestNameservers(t *testing.T) {
	conf := []byte("# kubelet\nsearch ns.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\nnameserver fd00::a\n" +
		"nameserver fe80::1%eth0\nnameserver not-an-ip\nnameserver\noptions ndots:5\n")
	got := Nameservers(conf)
	want := []string{"10.96.0.10:53", "[fd00::a]:53", "[fe80::1]:53"}
	if !slices.Equal(got, want) {
		t.Fatalf("Nameservers = %q, want %q", got, want)
	}
}

type dnsAgent struct {
	agentv1.UnimplementedDnsServer
	conf []byte
}

func (a *dnsAgent) Config(context.Context, *agentv1.DnsConfigRequest) (*agentv1.DnsConfigResponse, error) {
	return &agentv1.DnsConfigResponse{ResolvConf: a.conf, Hosts: []byte("10.244.0.7 sample-1\n")}, nil
}

func (a *dnsAgent) Query(_ context.Context, q *agentv1.DnsQuery) (*agentv1.DnsAnswer, error) {
	if q.Server != "10.96.0.10:53" {
		return &agentv1.DnsAnswer{Errno: int32(unix.ETIMEDOUT), Message: "no answer"}, nil
	}
	return &agentv1.DnsAnswer{Packet: append([]byte("answer:"), q.Packet...)}, nil
}

func TestConfigureReadsThePodsFiles(t *testing.T) {
	conn := plugintest.ServeAgent(t, func(s *grpc.Server) {
		agentv1.RegisterDnsServer(s, &dnsAgent{conf: []byte("search a.svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n")})
	})
	p := New()
	rules, err := p.Configure(context.Background(), sdk.Config{Agent: conn,
		Blocks: map[string][]byte{"dns": []byte(`{"enabled":true,"local":["*.corp.example"]}`)}})
	if err != nil {
		t.Fatal(err)
	}
	table := rules.Tables["dns"].(sdk.DnsRules)
	if !table.Enabled || !slices.Equal(table.Nameservers, []string{"10.96.0.10:53"}) || string(table.Hosts) != "10.244.0.7 sample-1\n" ||
		!slices.Equal(table.Local, []string{"*.corp.example"}) {
		t.Fatalf("table %+v", table)
	}
	a, err := p.Query(context.Background(), "10.96.0.10:53", []byte("q"), false)
	if err != nil || string(a.Packet) != "answer:q" {
		t.Fatalf("Query = %+v, %v", a, err)
	}
	a, err = p.Query(context.Background(), "10.96.0.99:53", []byte("q"), false)
	if err != nil || a.Errno != int(unix.ETIMEDOUT) {
		t.Fatalf("Query to a silent server = %+v, %v; want ETIMEDOUT", a, err)
	}
}

func TestDisabledAsksNothing(t *testing.T) {
	// no agent at all: a disabled block must not need one
	rules, err := New().Configure(context.Background(), sdk.Config{Blocks: map[string][]byte{"dns": []byte(`{"enabled":false}`)}})
	if err != nil {
		t.Fatal(err)
	}
	if table := rules.Tables["dns"].(sdk.DnsRules); table.Enabled || table.ResolvConf != nil {
		t.Fatalf("disabled table %+v", table)
	}
}

func TestNoNameserverNote(t *testing.T) {
	conn := plugintest.ServeAgent(t, func(s *grpc.Server) { agentv1.RegisterDnsServer(s, &dnsAgent{conf: []byte("search x\n")}) })
	rules, err := New().Configure(context.Background(), sdk.Config{Agent: conn})
	if err != nil {
		t.Fatal(err)
	}
	if len(rules.Notes) != 1 {
		t.Fatalf("notes %q, want one about the missing nameserver", rules.Notes)
	}
}
