package net

import (
	"context"
	"errors"
	"fmt"

	agentv1 "github.com/kwarp-dev/kwarp/agent/api/v1"
	"github.com/kwarp-dev/kwarp/sdk"
)

// Version of the built-in net plugin; it ships with kwarp.
const Version = "1"

// Plugin is the built-in outgoing-traffic plugin: it publishes the network block's filters as
// the core's table and asks the agent's Outgoing capability to connect.
type Plugin struct {
	cfg   Config
	agent agentv1.OutgoingClient
}

// New returns the plugin, unconfigured.
func New() *Plugin { return &Plugin{} }

// Info names the plugin and its block.
func (p *Plugin) Info() sdk.Info {
	return sdk.Info{Name: "net", Version: Version, Blocks: map[string]any{"network": Schema}}
}

// Configure publishes the outgoing table ("net") and the incoming one ("incoming"). With no
// network block, TCP and UDP both go through the pod with no filter and incoming traffic is
// mirrored, as the schema's defaults say.
func (p *Plugin) Configure(_ context.Context, c sdk.Config) (sdk.Rules, error) {
	cfg := Config{Outgoing: Outgoing{TCP: true, UDP: true}, Incoming: Incoming{Mode: sdk.IncomingMirror}}
	if b, ok := c.Blocks["network"]; ok {
		var err error
		if cfg, err = DecodeConfig(b); err != nil {
			return sdk.Rules{}, err
		}
	}
	p.cfg = cfg
	if c.Agent != nil {
		p.agent = agentv1.NewOutgoingClient(c.Agent)
	}
	return sdk.Rules{Tables: map[string]any{"net": Table(cfg.Outgoing), "incoming": IncomingTable(cfg.Incoming)}}, nil
}

// IncomingTable is the core's view of the incoming block; the mode defaults to mirror.
func IncomingTable(in Incoming) sdk.IncomingRules {
	t := sdk.IncomingRules{Mode: in.Mode, IgnorePorts: in.IgnorePorts, PortMapping: in.PortMapping}
	if t.Mode == "" {
		t.Mode = sdk.IncomingMirror
	}
	return t
}

// Table is the core's view of the outgoing block.
func Table(o Outgoing) sdk.NetRules {
	t := sdk.NetRules{TCP: o.TCP, UDP: o.UDP}
	for _, f := range o.Filter {
		t.Filters = append(t.Filters, sdk.NetFilter{Kind: f.Kind, Hosts: f.Hosts, Subnets: f.Subnets, Ports: f.Ports})
	}
	return t
}

// errNoAgent: Connect before Configure gave the plugin an agent (never in a session).
var errNoAgent = errors.New("net plugin: no agent connection")

// Connect asks the agent to connect from the pod; the core's tunnel named token carries the
// bytes.
func (p *Plugin) Connect(ctx context.Context, network, address string, token []byte) (sdk.ConnectResult, error) {
	if p.agent == nil {
		return sdk.ConnectResult{}, errNoAgent
	}
	resp, err := p.agent.Connect(ctx, &agentv1.ConnectRequest{Network: network, Address: address, Token: token})
	if err != nil {
		return sdk.ConnectResult{}, fmt.Errorf("agent connect to %s %s: %w", network, address, err)
	}
	return sdk.ConnectResult{Errno: int(resp.Errno), Message: resp.Message,
		LocalAddress: resp.LocalAddress, RemoteAddress: resp.RemoteAddress}, nil
}
