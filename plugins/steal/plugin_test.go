package steal

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	agentv1 "github.com/kwarp-dev/kwarp/agent/api/v1"
	"github.com/kwarp-dev/kwarp/sdk"
	"github.com/kwarp-dev/kwarp/sdk/plugintest"
)

func TestConformance(t *testing.T) {
	plugintest.Run(t, func() sdk.Plugin { return New() })
}

// policy has three blocks, two of them on one port (they may overlap: one user's own).
const policy = `
steal "http" "alice" {
  port = 8080
  match {
    header "x-kwarp-user" { regex = "^alice$" }
  }
}
steal "http" "all-admin" { port = 9090 }
steal "http" "v2" {
  port = 8080
  match {
    path { prefix = "/" }
  }
}`

// blocksJSON decodes src with the schema and joins its blocks as the core sends them.
func blocksJSON(t *testing.T, src string) []byte {
	t.Helper()
	blocks, diags := Schema.DecodeSource("kwarp.hcl", []byte(src), "steal")
	if diags.HasErrors() {
		t.Fatalf("decode: %v", diags)
	}
	parts := make([]string, len(blocks))
	for i, b := range blocks {
		parts[i] = string(b)
	}
	return []byte("[" + strings.Join(parts, ",") + "]")
}

func TestTable(t *testing.T) {
	rules, err := New().Configure(context.Background(), sdk.Config{Blocks: map[string][]byte{"steal": blocksJSON(t, policy)}})
	if err != nil {
		t.Fatal(err)
	}
	want := sdk.StealRules{Filtered: []sdk.StealFilter{{Name: "alice", Port: 8080}, {Name: "all-admin", Port: 9090}, {Name: "v2", Port: 8080}}}
	if got := rules.Tables["steal"]; !reflect.DeepEqual(got, want) {
		t.Errorf("table %+v, want %+v", got, want)
	}

	rules, err = New().Configure(context.Background(), sdk.Config{})
	if err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(rules.Tables["steal"])
	if string(data) != `{"filtered":[]}` {
		t.Errorf("no block: table %s, want an empty list", data)
	}

	// one block sent alone, as an object, is read as one
	one, diags := Schema.DecodeSource("kwarp.hcl", []byte(`steal "http" "x" { port = 81 }`), "steal")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	rules, err = New().Configure(context.Background(), sdk.Config{Blocks: map[string][]byte{"steal": one[0]}})
	if err != nil {
		t.Fatal(err)
	}
	if got := rules.Tables["steal"].(sdk.StealRules); !reflect.DeepEqual(got.Filtered, []sdk.StealFilter{{Name: "x", Port: 81}}) {
		t.Errorf("single block: table %+v", got)
	}
}

func TestConfigureRejects(t *testing.T) {
	tests := []struct{ name, blocks, want string }{
		{"not JSON", `[{`, "steal blocks"},
		{"unknown field", `[{"kind":"http","name":"a","port":80,"match":null,"extra":1}]`, "unknown field"},
		{"kind", `[{"kind":"grpc","name":"a","port":80,"match":null}]`, `kind "grpc"`},
		{"no name", `[{"kind":"http","name":"","port":80,"match":null}]`, "no name"},
		{"duplicate name", `[{"kind":"http","name":"a","port":80,"match":null},{"kind":"http","name":"a","port":81,"match":null}]`, "another steal block"},
		{"port", `[{"kind":"http","name":"a","port":0,"match":null}]`, "port 0"},
		{"method", `[{"kind":"http","name":"a","port":80,"match":{"method":["get"]}}]`, `method "get"`},
		{"regex", `[{"kind":"http","name":"a","port":80,"match":{"any_of":[{"path":[{"regex":"(","exact":"","prefix":""}]}]}}]`, "regex"},
		{"two ways", `[{"kind":"http","name":"a","port":80,"match":{"header":[{"name":"h","regex":"","exact":"x","prefix":"y"}]}}]`, "only one"},
		{"header name", `[{"kind":"http","name":"a","port":80,"match":{"header":[{"name":"","regex":"","exact":"x","prefix":""}]}}]`, "no header name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New().Configure(context.Background(), sdk.Config{Blocks: map[string][]byte{"steal": []byte(tt.blocks)}})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Configure = %v, want an error about %q", err, tt.want)
			}
		})
	}
}

// The policy loader rejects a regex RE2 does not take, in a header or a path, at any depth,
// before a plugin sees it.
func TestSchemaRejectsBadRegex(t *testing.T) {
	for _, src := range []string{
		`steal "http" "x" {
  port = 80
  match {
    path { regex = "a(b" }
  }
}`,
		`steal "http" "x" {
  port = 80
  match {
    all_of {
      any_of {
        header "h" { regex = "(?<name" }
      }
    }
  }
}`,
		`steal "http" "x" {
  port = 80
  match {
    path { regex = "(?=lookahead)" }
  }
}`,
	} {
		_, diags := Schema.DecodeSource("kwarp.hcl", []byte(src), "steal")
		if !diags.HasErrors() || diags[0].Summary != "Invalid regular expression" {
			t.Errorf("%s: got %v, want Invalid regular expression", src, diags)
		}
	}
}

// incomingAgent is the agent's Incoming capability: it records each request, sends events,
// and then holds the stream until the client ends it (ended receives then), unless the
// last event is a refusal.
type incomingAgent struct {
	agentv1.UnimplementedIncomingServer
	events []*agentv1.IncomingEvent
	mu     sync.Mutex
	got    []*agentv1.SubscribeRequest
	ended  chan struct{}
}

func newIncomingAgent(events ...*agentv1.IncomingEvent) *incomingAgent {
	return &incomingAgent{events: events, ended: make(chan struct{}, 16)}
}

func (a *incomingAgent) Subscribe(req *agentv1.SubscribeRequest, stream grpc.ServerStreamingServer[agentv1.IncomingEvent]) error {
	a.mu.Lock()
	a.got = append(a.got, req)
	a.mu.Unlock()
	for _, ev := range a.events {
		if err := stream.Send(ev); err != nil {
			return err
		}
		if ev.GetRefused() != nil {
			return nil
		}
	}
	<-stream.Context().Done()
	a.ended <- struct{}{}
	return stream.Context().Err()
}

func (a *incomingAgent) requests() []*agentv1.SubscribeRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.got)
}

// waitEnded fails the test unless the agent saw its stream end.
func (a *incomingAgent) waitEnded(t *testing.T) {
	t.Helper()
	select {
	case <-a.ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the agent's stream did not end")
	}
}

var (
	subscribed = &agentv1.IncomingEvent{Event: &agentv1.IncomingEvent_Subscribed{Subscribed: &agentv1.Subscribed{PodPorts: []uint32{8080, 9090}}}}
	conn1      = &agentv1.IncomingEvent{Event: &agentv1.IncomingEvent_Connection{Connection: &agentv1.IncomingConnection{
		Token: []byte("token-1"), ClientAddress: "10.244.0.9:51000", LocalAddress: "10.244.0.7:8080"}}}
	conn2 = &agentv1.IncomingEvent{Event: &agentv1.IncomingEvent_Connection{Connection: &agentv1.IncomingConnection{
		Token: []byte("token-2"), ClientAddress: "10.244.0.10:51001", LocalAddress: "10.244.0.7:8080"}}}
	refused = &agentv1.IncomingEvent{Event: &agentv1.IncomingEvent_Refused{Refused: &agentv1.Refused{
		Message: "port 8080: bob@laptop (session s-2) holds an overlapping filter", HolderSession: "s-2", HolderUser: "bob", HolderHost: "laptop"}}}
)

var wantEvents = []sdk.IncomingEvent{
	{Subscribed: &sdk.IncomingSubscribed{PodPorts: []int{8080, 9090}}},
	{Connection: &sdk.IncomingConnection{Token: []byte("token-1"), Client: "10.244.0.9:51000", PodLocal: "10.244.0.7:8080"}},
	{Connection: &sdk.IncomingConnection{Token: []byte("token-2"), Client: "10.244.0.10:51001", PodLocal: "10.244.0.7:8080"}},
}

// configured is the plugin configured with policy and the agent.
func configured(t *testing.T, agent *incomingAgent) *Plugin {
	t.Helper()
	conn := plugintest.ServeAgent(t, func(s *grpc.Server) { agentv1.RegisterIncomingServer(s, agent) })
	p := New()
	if _, err := p.Configure(context.Background(), sdk.Config{Agent: conn, Blocks: map[string][]byte{"steal": blocksJSON(t, policy)}}); err != nil {
		t.Fatal(err)
	}
	return p
}

// collect runs subscribe until it has seen n events, then cancels it, and returns the
// events and subscribe's error.
func collect(t *testing.T, n int, subscribe func(context.Context, func(sdk.IncomingEvent) error) error) ([]sdk.IncomingEvent, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got []sdk.IncomingEvent
	err := subscribe(ctx, func(ev sdk.IncomingEvent) error {
		got = append(got, ev)
		if len(got) == n {
			cancel()
		}
		return nil
	})
	return got, err
}

func TestSubscribeRelaysEventsInOrder(t *testing.T) {
	agent := newIncomingAgent(subscribed, conn1, conn2)
	p := configured(t, agent)
	got, err := collect(t, 3, func(ctx context.Context, ev func(sdk.IncomingEvent) error) error {
		return p.Subscribe(ctx, 8080, sdk.IncomingMirror, ev)
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Subscribe after cancel = %v, want context.Canceled", err)
	}
	if !reflect.DeepEqual(got, wantEvents) {
		t.Errorf("events %+v, want %+v", got, wantEvents)
	}
	agent.waitEnded(t)
}

func TestSubscribeMirrorSendsNoFilter(t *testing.T) {
	agent := newIncomingAgent(subscribed)
	p := configured(t, agent)
	if _, err := collect(t, 1, func(ctx context.Context, ev func(sdk.IncomingEvent) error) error {
		return p.Subscribe(ctx, 8080, sdk.IncomingMirror, ev)
	}); !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	req := agent.requests()[0]
	if req.Port != 8080 || req.Mode != agentv1.SubscribeRequest_MIRROR || len(req.HttpFilters) != 0 {
		t.Errorf("the agent got %+v, want mirror of 8080 with no filter", req)
	}
}

func TestSubscribeStealSendsThePortsBlocks(t *testing.T) {
	agent := newIncomingAgent(subscribed)
	p := configured(t, agent)
	for _, port := range []int{8080, 9090, 7000} {
		if _, err := collect(t, 1, func(ctx context.Context, ev func(sdk.IncomingEvent) error) error {
			return p.Subscribe(ctx, port, sdk.IncomingSteal, ev)
		}); !errors.Is(err, context.Canceled) {
			t.Fatal(err)
		}
	}
	want := map[uint32][]string{8080: {"alice", "v2"}, 9090: {"all-admin"}, 7000: nil}
	reqs := agent.requests()
	if len(reqs) != 3 {
		t.Fatalf("%d subscriptions, want 3", len(reqs))
	}
	for _, req := range reqs {
		if req.Mode != agentv1.SubscribeRequest_STEAL {
			t.Errorf("port %d: mode %v, want STEAL", req.Port, req.Mode)
		}
		var names []string
		for _, f := range req.HttpFilters {
			c, err := DecodeConfig(f) // as strictly as the agent reads it
			if err != nil {
				t.Fatalf("port %d: filter %s: %v", req.Port, f, err)
			}
			if c.Port != int(req.Port) {
				t.Errorf("port %d: got the filter of port %d", req.Port, c.Port)
			}
			names = append(names, c.Name)
		}
		if !slices.Equal(names, want[req.Port]) {
			t.Errorf("port %d: filters %v, want %v", req.Port, names, want[req.Port])
		}
	}
	// the filter is the block itself, match tree included
	var c Config
	if err := json.Unmarshal(reqs[0].HttpFilters[0], &c); err != nil || c.Match == nil || c.Match.Header[0].Regex != "^alice$" {
		t.Errorf("filter %s: %+v, %v", reqs[0].HttpFilters[0], c, err)
	}
}

func TestSubscribeRefused(t *testing.T) {
	agent := newIncomingAgent(refused)
	p := configured(t, agent)
	var n int
	err := p.Subscribe(context.Background(), 8080, sdk.IncomingSteal, func(sdk.IncomingEvent) error { n++; return nil })
	var r *sdk.RefusedError
	if !errors.As(err, &r) {
		t.Fatalf("Subscribe = %v (%T), want *sdk.RefusedError", err, err)
	}
	if r.HolderSession != "s-2" || r.HolderUser != "bob" || r.HolderHost != "laptop" || r.Error() != refused.GetRefused().Message {
		t.Errorf("refusal %+v", r)
	}
	if n != 0 {
		t.Errorf("%d events before the refusal, want none", n)
	}
}

func TestSubscribeEventsErrorEndsIt(t *testing.T) {
	agent := newIncomingAgent(subscribed, conn1)
	p := configured(t, agent)
	stop := errors.New("the core gave up")
	err := p.Subscribe(context.Background(), 8080, sdk.IncomingMirror, func(ev sdk.IncomingEvent) error {
		if ev.Connection != nil {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Errorf("Subscribe = %v, want the events error", err)
	}
	agent.waitEnded(t)
}

func TestSubscribeWithoutAgentOrMode(t *testing.T) {
	nop := func(sdk.IncomingEvent) error { return nil }
	if err := New().Subscribe(context.Background(), 80, sdk.IncomingMirror, nop); !errors.Is(err, errNoAgent) {
		t.Errorf("Subscribe without an agent = %v", err)
	}
	p := configured(t, newIncomingAgent())
	for _, mode := range []string{sdk.IncomingOff, "", "copy"} {
		if err := p.Subscribe(context.Background(), 80, mode, nop); err == nil {
			t.Errorf("Subscribe in mode %q succeeded", mode)
		}
	}
	if err := p.Subscribe(context.Background(), 0, sdk.IncomingMirror, nop); err == nil {
		t.Error("Subscribe to port 0 succeeded")
	}
}

// Through the plugin boundary, as the core subscribes: core → go-plugin gRPC → plugin → agent.
func TestSubscribeIncomingThroughThePlugin(t *testing.T) {
	t.Run("events then cancel", func(t *testing.T) {
		agent := newIncomingAgent(subscribed, conn1, conn2)
		c := plugintest.Connect(t, configured(t, agent))
		got, err := collect(t, 3, func(ctx context.Context, ev func(sdk.IncomingEvent) error) error {
			return sdk.SubscribeIncoming(ctx, c, 8080, sdk.IncomingSteal, ev)
		})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("SubscribeIncoming after cancel = %v, want context.Canceled", err)
		}
		if !reflect.DeepEqual(got, wantEvents) {
			t.Errorf("events %+v, want %+v", got, wantEvents)
		}
		agent.waitEnded(t)
		if req := agent.requests()[0]; req.Mode != agentv1.SubscribeRequest_STEAL || len(req.HttpFilters) != 2 {
			t.Errorf("the agent got %+v", req)
		}
	})
	t.Run("refused", func(t *testing.T) {
		c := plugintest.Connect(t, configured(t, newIncomingAgent(subscribed, refused)))
		var n int
		err := sdk.SubscribeIncoming(context.Background(), c, 8080, sdk.IncomingSteal, func(sdk.IncomingEvent) error { n++; return nil })
		var r *sdk.RefusedError
		if !errors.As(err, &r) || r.HolderUser != "bob" || r.HolderHost != "laptop" || r.HolderSession != "s-2" || r.Message != refused.GetRefused().Message {
			t.Fatalf("SubscribeIncoming = %#v, want the refusal with its holder", err)
		}
		if n != 1 {
			t.Errorf("%d events before the refusal, want 1 (subscribed)", n)
		}
	})
}
