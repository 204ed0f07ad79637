package net

import (
	"context"
	"encoding/json"
	"reflect"
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

func TestTableFromBlock(t *testing.T) {
	tests := []struct {
		name  string
		block string
		want  sdk.NetRules
	}{
		{"no block: everything through the pod", "", sdk.NetRules{TCP: true, UDP: true}},
		{"filters in order", `{"outgoing":{"tcp":true,"udp":false,"filter":[{"kind":"remote","hosts":["*.svc.cluster.local"],"ports":[5432]},{"kind":"local","subnets":["10.0.0.0/8"]}]}}`,
			sdk.NetRules{TCP: true, UDP: false, Filters: []sdk.NetFilter{
				{Kind: "remote", Hosts: []string{"*.svc.cluster.local"}, Ports: []int{5432}},
				{Kind: "local", Subnets: []string{"10.0.0.0/8"}}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rules := configure(t, tt.block)
			got := rules.Tables["net"].(sdk.NetRules)
			if got.TCP != tt.want.TCP || got.UDP != tt.want.UDP || len(got.Filters) != len(tt.want.Filters) {
				t.Fatalf("table %+v, want %+v", got, tt.want)
			}
			for i := range got.Filters {
				g, w := got.Filters[i], tt.want.Filters[i]
				if g.Kind != w.Kind || len(g.Hosts) != len(w.Hosts) || len(g.Subnets) != len(w.Subnets) || len(g.Ports) != len(w.Ports) {
					t.Errorf("filter %d: %+v, want %+v", i, g, w)
				}
			}
		})
	}
}

func TestBadBlock(t *testing.T) {
	_, err := New().Configure(context.Background(), sdk.Config{Blocks: map[string][]byte{"network": []byte(`{"outgoing":{"tcp":"yes"}}`)}})
	if err == nil {
		t.Fatal("a block of the wrong shape was accepted")
	}
}

// outgoingAgent answers Connect as the agent would for one reachable address.
type outgoingAgent struct {
	agentv1.UnimplementedOutgoingServer
	got *agentv1.ConnectRequest
}

func (a *outgoingAgent) Connect(_ context.Context, req *agentv1.ConnectRequest) (*agentv1.ConnectResponse, error) {
	a.got = req
	if req.Address != "10.96.0.20:80" {
		return &agentv1.ConnectResponse{Errno: int32(unix.ECONNREFUSED), Message: "connection refused"}, nil
	}
	return &agentv1.ConnectResponse{LocalAddress: "10.244.0.7:40000", RemoteAddress: req.Address}, nil
}

func TestConnectAsksTheAgent(t *testing.T) {
	agent := &outgoingAgent{}
	conn := plugintest.ServeAgent(t, func(s *grpc.Server) { agentv1.RegisterOutgoingServer(s, agent) })
	p := New()
	if _, err := p.Configure(context.Background(), sdk.Config{Agent: conn}); err != nil {
		t.Fatal(err)
	}
	tok := []byte("0123456789abcdef")
	r, err := p.Connect(context.Background(), "tcp", "10.96.0.20:80", tok)
	if err != nil || r.Errno != 0 || r.LocalAddress != "10.244.0.7:40000" {
		t.Fatalf("Connect = %+v, %v", r, err)
	}
	if string(agent.got.Token) != string(tok) || agent.got.Network != "tcp" {
		t.Errorf("the agent got %+v", agent.got)
	}
	r, err = p.Connect(context.Background(), "tcp", "10.96.0.21:80", tok)
	if err != nil || r.Errno != int(unix.ECONNREFUSED) {
		t.Fatalf("refused Connect = %+v, %v; want errno ECONNREFUSED", r, err)
	}
}

func TestConnectWithoutAgent(t *testing.T) {
	if _, err := New().Connect(context.Background(), "tcp", "10.0.0.1:80", nil); err == nil {
		t.Fatal("Connect without an agent succeeded")
	}
}

func TestIncomingTable(t *testing.T) {
	tests := []struct {
		name  string
		block string
		want  sdk.IncomingRules
	}{
		{"no block: mirror", "", sdk.IncomingRules{Mode: sdk.IncomingMirror}},
		{"block without incoming: mirror", `{"outgoing":{"tcp":true,"udp":true,"filter":[]},"incoming":{"mode":"mirror","ignore_ports":null,"port_mapping":null}}`,
			sdk.IncomingRules{Mode: sdk.IncomingMirror}},
		{"steal with ports", `{"outgoing":{"tcp":true,"udp":true,"filter":[]},"incoming":{"mode":"steal","ignore_ports":[9090,9091],"port_mapping":{"8080":3000}}}`,
			sdk.IncomingRules{Mode: sdk.IncomingSteal, IgnorePorts: []int{9090, 9091}, PortMapping: map[int]int{8080: 3000}}},
		{"off", `{"outgoing":{"tcp":true,"udp":true,"filter":[]},"incoming":{"mode":"off","ignore_ports":null,"port_mapping":null}}`,
			sdk.IncomingRules{Mode: sdk.IncomingOff}},
		{"mode left empty by a host: mirror", `{"outgoing":{"tcp":true,"udp":true,"filter":[]},"incoming":{"mode":"","ignore_ports":null,"port_mapping":null}}`,
			sdk.IncomingRules{Mode: sdk.IncomingMirror}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rules := configure(t, tt.block)
			if got := rules.Tables["incoming"]; !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("incoming table %+v, want %+v", got, tt.want)
			}
		})
	}
}

// The table as the core reads it: JSON, port mapping keyed by the pod port.
func TestIncomingTableJSON(t *testing.T) {
	blocks, diags := Schema.DecodeSource("kwarp.hcl", []byte(`network {
  incoming {
    mode         = "steal"
    ignore_ports = [9090]
    port_mapping = { "8080" = 3000 }
  }
}`), "network")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	rules := configure(t, string(blocks[0]))
	data, err := json.Marshal(rules.Tables["incoming"])
	if err != nil {
		t.Fatal(err)
	}
	var back sdk.IncomingRules
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	want := sdk.IncomingRules{Mode: sdk.IncomingSteal, IgnorePorts: []int{9090}, PortMapping: map[int]int{8080: 3000}}
	if !reflect.DeepEqual(back, want) {
		t.Errorf("%s read back as %+v, want %+v", data, back, want)
	}
}

// configure gives a new plugin the network block (JSON; "" for none) and returns its rules.
func configure(t *testing.T, block string) sdk.Rules {
	t.Helper()
	blocks := map[string][]byte{}
	if block != "" {
		blocks["network"] = []byte(block)
	}
	rules, err := New().Configure(context.Background(), sdk.Config{Blocks: blocks})
	if err != nil {
		t.Fatal(err)
	}
	return rules
}
