package core

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"

	"github.com/rs/zerolog"

	"github.com/kwarp-dev/kwarp/core/incoming"
	"github.com/kwarp-dev/kwarp/core/pluginhost"
	"github.com/kwarp-dev/kwarp/sdk"
)

// newInbound builds the session's incoming traffic from the net plugin's "incoming" table and
// the steal plugin's "steal" table, and subscribes the filtered steals: a filter another
// session holds is refused here, before the command runs. nil: the session takes no incoming
// traffic (mode off and no steal block, or a targetless session: there is no pod).
func newInbound(ctx context.Context, plugins map[string]*runningPlugin, targetless bool,
	open func(context.Context) (net.Conn, error), say func(string, ...any), log zerolog.Logger) (*incoming.Handler, error) {
	var ir sdk.IncomingRules
	if err := json.Unmarshal(plugins["net"].rules["incoming"], &ir); err != nil {
		return nil, fmt.Errorf("incoming rule table: %w", err)
	}
	var sr sdk.StealRules
	if raw := plugins["steal"].rules["steal"]; raw != nil {
		if err := json.Unmarshal(raw, &sr); err != nil {
			return nil, fmt.Errorf("steal rule table: %w", err)
		}
	}
	if targetless {
		if ir.Mode == sdk.IncomingSteal || len(sr.Filtered) > 0 {
			say("targetless session: there is no pod whose traffic to steal; --steal and steal blocks do nothing")
		}
		return nil, nil
	}
	if ir.Mode == sdk.IncomingOff && len(sr.Filtered) == 0 {
		return nil, nil
	}
	rules := incoming.Rules{Mode: ir.Mode, IgnorePorts: ir.IgnorePorts, PortMapping: ir.PortMapping}
	for _, f := range sr.Filtered {
		rules.FilteredPorts = append(rules.FilteredPorts, f.Port)
	}
	h, err := incoming.New(incoming.Options{
		Rules: rules, Subscriber: stealSubscriber{plugins["steal"].Plugin}, Open: open, Say: say,
		Log: log.With().Str("feature", "incoming").Logger(),
	})
	if err != nil {
		return nil, err
	}
	if err := h.Start(ctx); err != nil {
		return nil, &Error{Code: ExitCluster, Err: fmt.Errorf("steal refused: %w", err)}
	}
	return h, nil
}

// stealSubscriber is the steal plugin as core/incoming sees it.
type stealSubscriber struct{ p *pluginhost.Plugin }

func (s stealSubscriber) Subscribe(ctx context.Context, port int, mode string, events func(incoming.Event) error) error {
	return s.p.Stream(ctx, func(ctx context.Context, c *sdk.Client) error {
		return sdk.SubscribeIncoming(ctx, c, port, mode, func(ev sdk.IncomingEvent) error {
			switch {
			case ev.Subscribed != nil:
				return events(incoming.Event{Subscribed: true, PodPorts: ev.Subscribed.PodPorts})
			case ev.Connection != nil:
				// addresses the agent could not tell stay invalid: the layer then leaves the
				// kernel's
				client, _ := netip.ParseAddrPort(ev.Connection.Client)
				local, _ := netip.ParseAddrPort(ev.Connection.PodLocal)
				return events(incoming.Event{Conn: &incoming.Conn{Token: ev.Connection.Token, Client: client, PodLocal: local}})
			}
			return nil
		})
	})
}
