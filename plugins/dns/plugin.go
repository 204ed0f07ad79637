package dns

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	agentv1 "github.com/kwarp-dev/kwarp/agent/api/v1"
	"github.com/kwarp-dev/kwarp/sdk"
)

// Version of the built-in dns plugin; it ships with kwarp.
const Version = "1"

// Plugin is the built-in DNS plugin: it fetches the pod's resolver files from the agent's Dns
// capability, publishes them with the names that stay local, and sends queries to the pod's
// nameservers through the agent.
type Plugin struct {
	cfg   Config
	agent agentv1.DnsClient
}

// New returns the plugin, unconfigured.
func New() *Plugin { return &Plugin{} }

// Info names the plugin and its block.
func (p *Plugin) Info() sdk.Info {
	return sdk.Info{Name: "dns", Version: Version, Blocks: map[string]any{"dns": Schema}}
}

// Configure publishes the table. Enabled, it needs the agent: the pod's resolv.conf decides
// the nameservers, search list and ndots the process uses.
func (p *Plugin) Configure(ctx context.Context, c sdk.Config) (sdk.Rules, error) {
	cfg := Config{Enabled: true}
	if b, ok := c.Blocks["dns"]; ok {
		var err error
		if cfg, err = DecodeConfig(b); err != nil {
			return sdk.Rules{}, err
		}
	}
	p.cfg = cfg
	table := sdk.DnsRules{Enabled: cfg.Enabled, Local: cfg.Local}
	if !cfg.Enabled || c.Agent == nil {
		return sdk.Rules{Tables: map[string]any{"dns": table}}, nil
	}
	p.agent = agentv1.NewDnsClient(c.Agent)
	resp, err := p.agent.Config(ctx, &agentv1.DnsConfigRequest{})
	if err != nil {
		return sdk.Rules{}, fmt.Errorf("read the pod's resolv.conf from the agent: %w", err)
	}
	table.ResolvConf, table.Hosts = resp.ResolvConf, resp.Hosts
	table.Nameservers = Nameservers(resp.ResolvConf)
	rules := sdk.Rules{Tables: map[string]any{"dns": table}}
	if len(table.Nameservers) == 0 {
		rules.Notes = append(rules.Notes, "the pod's /etc/resolv.conf names no nameserver: names will not resolve through the pod")
	}
	return rules, nil
}

// Nameservers lists the nameserver lines of a resolv.conf as ip:port (port 53), in order;
// lines that are not an IP address are skipped, as resolvers skip them.
func Nameservers(resolvConf []byte) []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(resolvConf))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		// a zone (fe80::1%eth0) names an interface of the pod, meaningless here
		ip, err := netip.ParseAddr(strings.SplitN(f[1], "%", 2)[0])
		if err != nil {
			continue
		}
		out = append(out, netip.AddrPortFrom(ip.Unmap(), 53).String())
	}
	return out
}

var errNoAgent = errors.New("dns plugin: no agent connection")

// Query sends one query to the pod's nameserver through the agent.
func (p *Plugin) Query(ctx context.Context, server string, packet []byte, tcp bool) (sdk.DnsAnswer, error) {
	if p.agent == nil {
		return sdk.DnsAnswer{}, errNoAgent
	}
	resp, err := p.agent.Query(ctx, &agentv1.DnsQuery{Packet: packet, Server: server, Tcp: tcp})
	if err != nil {
		return sdk.DnsAnswer{}, fmt.Errorf("agent dns query to %s: %w", server, err)
	}
	return sdk.DnsAnswer{Packet: resp.Packet, Errno: int(resp.Errno), Message: resp.Message}, nil
}
