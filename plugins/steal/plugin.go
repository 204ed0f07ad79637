package steal

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"sync"

	agentv1 "github.com/kwarp-dev/kwarp/agent/api/v1"
	"github.com/kwarp-dev/kwarp/sdk"
)

// Version of the built-in steal plugin; it ships with kwarp.
const Version = "1"

// Plugin is the built-in incoming-traffic plugin: it publishes the steal blocks as the core's
// "steal" table and holds subscriptions with the agent's Incoming capability.
type Plugin struct {
	mu     sync.Mutex
	blocks []Config
	agent  agentv1.IncomingClient
}

// New returns the plugin, unconfigured.
func New() *Plugin { return &Plugin{} }

// Info names the plugin and its block.
func (p *Plugin) Info() sdk.Info {
	return sdk.Info{Name: "steal", Version: Version, Blocks: map[string]any{"steal": Schema}}
}

// Configure reads the steal blocks (a JSON array of them, as a host sends all blocks of a
// repeated type; a single block's object is read as one) and publishes them as the "steal"
// table, one filter per block, in order. No block: an empty table.
func (p *Plugin) Configure(_ context.Context, c sdk.Config) (sdk.Rules, error) {
	blocks, err := decodeBlocks(c.Blocks["steal"])
	if err != nil {
		return sdk.Rules{}, err
	}
	if err := Validate(blocks); err != nil {
		return sdk.Rules{}, err
	}
	p.mu.Lock()
	p.blocks = blocks
	if c.Agent != nil {
		p.agent = agentv1.NewIncomingClient(c.Agent)
	}
	p.mu.Unlock()
	return sdk.Rules{Tables: map[string]any{"steal": Table(blocks)}}, nil
}

func decodeBlocks(data []byte) ([]Config, error) {
	if t := bytes.TrimSpace(data); len(t) > 0 && t[0] == '{' {
		c, err := DecodeConfig(t)
		if err != nil {
			return nil, err
		}
		return []Config{c}, nil
	}
	return DecodeConfigs(data)
}

// Table is the core's view of the steal blocks: each one's name and port, in order.
func Table(blocks []Config) sdk.StealRules {
	t := sdk.StealRules{Filtered: []sdk.StealFilter{}}
	for _, b := range blocks {
		t.Filtered = append(t.Filtered, sdk.StealFilter{Name: b.Name, Port: b.Port})
	}
	return t
}

// Validate checks decoded blocks for what the JSON alone does not guarantee (a host that
// decoded them with Schema has already checked all of it): a known kind, a name unique across
// the blocks, a port, and matches the agent can compile — methods of HTTPMethods, at most one
// of regex, exact and prefix per string match, regexes in RE2 syntax. Several blocks may name
// one port, and their matches may overlap: the agent checks overlaps only between sessions.
func Validate(blocks []Config) error {
	names := map[string]bool{}
	for i, b := range blocks {
		where := fmt.Sprintf("steal %q %q", b.Kind, b.Name)
		switch {
		case b.Kind != "http":
			return fmt.Errorf("steal block %d: kind %q: the only kind is \"http\"", i, b.Kind)
		case b.Name == "":
			return fmt.Errorf("steal block %d: the block has no name", i)
		case names[b.Name]:
			return fmt.Errorf("%s: another steal block has the name %q", where, b.Name)
		case b.Port < 1 || b.Port > 65535:
			return fmt.Errorf("%s: port %d is not a TCP port", where, b.Port)
		}
		names[b.Name] = true
		if b.Match != nil {
			if err := validateMatch(b.Match); err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
		}
	}
	return nil
}

func validateMatch(m *Match) error {
	for _, meth := range m.Method {
		if !slices.Contains(HTTPMethods, meth) {
			return fmt.Errorf("method %q is not one of %v", meth, HTTPMethods)
		}
	}
	for _, h := range m.Header {
		if h.Name == "" {
			return errors.New("a header match has no header name")
		}
		if err := validateString(h.StringMatch); err != nil {
			return fmt.Errorf("header %q: %w", h.Name, err)
		}
	}
	for _, s := range m.Path {
		if err := validateString(s); err != nil {
			return fmt.Errorf("path: %w", err)
		}
	}
	for _, sub := range slices.Concat(m.AllOf, m.AnyOf) {
		if err := validateMatch(&sub); err != nil {
			return err
		}
	}
	return nil
}

func validateString(s StringMatch) error {
	set := 0
	for _, v := range []string{s.Regex, s.Exact, s.Prefix} {
		if v != "" {
			set++
		}
	}
	if set > 1 {
		return errors.New("set only one of regex, exact and prefix")
	}
	if _, err := regexp.Compile(s.Regex); err != nil {
		return fmt.Errorf("regex %q (Go RE2 syntax): %w", s.Regex, err)
	}
	return nil
}

// errNoAgent: Subscribe before Configure gave the plugin an agent (never in a session).
var errNoAgent = errors.New("steal plugin: no agent connection")

// Subscribe asks the agent's Incoming capability for the pod's port and relays its events, as
// sdk.StealPlugin says. In steal mode the filters are this plugin's blocks on port (each as
// the JSON of its Config); none steals the whole port. Mirror sends no filter.
func (p *Plugin) Subscribe(ctx context.Context, port int, mode string, events func(sdk.IncomingEvent) error) error {
	p.mu.Lock()
	agent, blocks := p.agent, p.blocks
	p.mu.Unlock()
	if agent == nil {
		return errNoAgent
	}
	if port < 1 || port > 65535 {
		return fmt.Errorf("steal plugin: port %d is not a TCP port", port)
	}
	req := &agentv1.SubscribeRequest{Port: uint32(port)}
	switch mode {
	case sdk.IncomingMirror:
		req.Mode = agentv1.SubscribeRequest_MIRROR
	case sdk.IncomingSteal:
		req.Mode = agentv1.SubscribeRequest_STEAL
		var err error
		if req.HttpFilters, err = Filters(blocks, port); err != nil {
			return err
		}
	default:
		return fmt.Errorf("steal plugin: cannot subscribe to port %d in mode %q: the modes are %q and %q",
			port, mode, sdk.IncomingMirror, sdk.IncomingSteal)
	}
	// the stream's own context: returning for any reason ends the agent's stream
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := agent.Subscribe(sctx, req)
	if err != nil {
		return agentErr(ctx, port, err)
	}
	for {
		msg, err := stream.Recv()
		if err == io.EOF {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("the agent ended the subscription to port %d", port)
		}
		if err != nil {
			return agentErr(ctx, port, err)
		}
		var ev sdk.IncomingEvent
		switch e := msg.Event.(type) {
		case *agentv1.IncomingEvent_Subscribed:
			s := &sdk.IncomingSubscribed{}
			for _, pp := range e.Subscribed.GetPodPorts() {
				s.PodPorts = append(s.PodPorts, int(pp))
			}
			ev.Subscribed = s
		case *agentv1.IncomingEvent_Connection:
			c := e.Connection
			ev.Connection = &sdk.IncomingConnection{Token: c.GetToken(), Client: c.GetClientAddress(), PodLocal: c.GetLocalAddress()}
		case *agentv1.IncomingEvent_Refused:
			r := e.Refused
			return &sdk.RefusedError{Message: r.GetMessage(), HolderSession: r.GetHolderSession(),
				HolderUser: r.GetHolderUser(), HolderHost: r.GetHolderHost()}
		default:
			continue // an event of a newer agent
		}
		if err := events(ev); err != nil {
			return err
		}
	}
}

// Filters are the http_filters of a steal subscription to port: the JSON of each block on it,
// in order; none means the whole port.
func Filters(blocks []Config, port int) ([][]byte, error) {
	var out [][]byte
	for _, b := range blocks {
		if b.Port != port {
			continue
		}
		data, err := json.Marshal(b)
		if err != nil {
			return nil, fmt.Errorf("steal %q %q: %w", b.Kind, b.Name, err)
		}
		out = append(out, data)
	}
	return out, nil
}

func agentErr(ctx context.Context, port int, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("agent incoming subscription to port %d: %w", port, err)
}
