package sdk_test

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/kwarp-dev/kwarp/sdk"
	"github.com/kwarp-dev/kwarp/sdk/plugintest"
)

// stealPlugin answers Subscribe with a script: it sends events, then ends with end (nil
// waits for ctx to end, and returns ctx.Err()). ended receives when its ctx ended.
type stealPlugin struct {
	events []sdk.IncomingEvent
	end    error
	got    chan [2]any // port, mode
	ended  chan error  // what Subscribe returned, once ctx ended
}

func newStealPlugin(end error, events ...sdk.IncomingEvent) *stealPlugin {
	return &stealPlugin{events: events, end: end, got: make(chan [2]any, 1), ended: make(chan error, 1)}
}

func (p *stealPlugin) Info() sdk.Info { return sdk.Info{Name: "fakesteal"} }
func (p *stealPlugin) Configure(context.Context, sdk.Config) (sdk.Rules, error) {
	return sdk.Rules{}, nil
}

func (p *stealPlugin) Subscribe(ctx context.Context, port int, mode string, events func(sdk.IncomingEvent) error) error {
	p.got <- [2]any{port, mode}
	for _, ev := range p.events {
		if err := events(ev); err != nil {
			<-ctx.Done() // the host went away: ctx ends too
			p.ended <- err
			return err
		}
	}
	switch {
	case p.end == errNil:
		return nil
	case p.end != nil:
		return p.end
	}
	<-ctx.Done()
	p.ended <- ctx.Err()
	return ctx.Err()
}

// errNil makes the fake return nil, which the contract does not allow.
var errNil = errors.New("return nil")

func (p *stealPlugin) waitEnded(t *testing.T) error {
	t.Helper()
	select {
	case err := <-p.ended:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("the plugin's Subscribe did not see its ctx end")
		return nil
	}
}

var events = []sdk.IncomingEvent{
	{Subscribed: &sdk.IncomingSubscribed{PodPorts: []int{80, 8080}}},
	{Connection: &sdk.IncomingConnection{Token: []byte{1, 2, 3}, Client: "10.0.0.9:4000", PodLocal: "10.0.0.7:80"}},
	{Connection: &sdk.IncomingConnection{Token: []byte{4, 5, 6}, Client: "[fd00::9]:4001", PodLocal: "[fd00::7]:80"}},
}

func TestSubscribeIncomingFeature(t *testing.T) {
	c := plugintest.Connect(t, newStealPlugin(nil))
	info, err := c.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(info.Features, sdk.FeatureIncoming) {
		t.Errorf("features %v lack %q", info.Features, sdk.FeatureIncoming)
	}
}

func TestSubscribeIncomingEventsUntilCancel(t *testing.T) {
	p := newStealPlugin(nil, events...)
	c := plugintest.Connect(t, p)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got []sdk.IncomingEvent
	err := sdk.SubscribeIncoming(ctx, c, 8080, sdk.IncomingSteal, func(ev sdk.IncomingEvent) error {
		got = append(got, ev)
		if len(got) == len(events) {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("SubscribeIncoming = %v, want context.Canceled", err)
	}
	if !reflect.DeepEqual(got, events) {
		t.Errorf("events %+v, want %+v", got, events)
	}
	if args := <-p.got; args != [2]any{8080, sdk.IncomingSteal} {
		t.Errorf("the plugin got %v", args)
	}
	if err := p.waitEnded(t); !errors.Is(err, context.Canceled) {
		t.Errorf("the plugin's ctx ended with %v", err)
	}
}

func TestSubscribeIncomingRefused(t *testing.T) {
	refusal := &sdk.RefusedError{Message: "port 80 is stolen whole by bob@laptop", HolderSession: "s-9", HolderUser: "bob", HolderHost: "laptop"}
	c := plugintest.Connect(t, newStealPlugin(refusal, events[0]))
	var n int
	err := sdk.SubscribeIncoming(context.Background(), c, 80, sdk.IncomingMirror, func(sdk.IncomingEvent) error { n++; return nil })
	var r *sdk.RefusedError
	if !errors.As(err, &r) || !reflect.DeepEqual(r, refusal) {
		t.Fatalf("SubscribeIncoming = %#v, want %#v", err, refusal)
	}
	if err.Error() != refusal.Message || n != 1 {
		t.Errorf("error %q after %d events", err, n)
	}
}

func TestSubscribeIncomingPluginFails(t *testing.T) {
	c := plugintest.Connect(t, newStealPlugin(errors.New("agent incoming subscription to port 80: unavailable"), events[0]))
	err := sdk.SubscribeIncoming(context.Background(), c, 80, sdk.IncomingMirror, func(sdk.IncomingEvent) error { return nil })
	var r *sdk.RefusedError
	if err == nil || errors.As(err, &r) || err.Error() != "agent incoming subscription to port 80: unavailable" {
		t.Errorf("SubscribeIncoming = %v, want the plugin's error as it said it", err)
	}

	c = plugintest.Connect(t, newStealPlugin(errNil))
	if err := sdk.SubscribeIncoming(context.Background(), c, 80, sdk.IncomingMirror, func(sdk.IncomingEvent) error { return nil }); err == nil {
		t.Error("a subscription the plugin ended for no reason returned nil")
	}
}

func TestSubscribeIncomingEventsError(t *testing.T) {
	p := newStealPlugin(nil, events...)
	c := plugintest.Connect(t, p)
	stop := errors.New("no listener")
	err := sdk.SubscribeIncoming(context.Background(), c, 80, sdk.IncomingMirror, func(ev sdk.IncomingEvent) error {
		if ev.Connection != nil {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Errorf("SubscribeIncoming = %v, want the events error", err)
	}
	if err := p.waitEnded(t); err == nil {
		t.Error("the plugin's subscription went on")
	}
}

func TestSubscribeIncomingBadPort(t *testing.T) {
	c := plugintest.Connect(t, newStealPlugin(nil))
	for _, port := range []int{0, -1, 65536} {
		if err := sdk.SubscribeIncoming(context.Background(), c, port, sdk.IncomingMirror, func(sdk.IncomingEvent) error { return nil }); err == nil {
			t.Errorf("port %d: accepted", port)
		}
	}
}
