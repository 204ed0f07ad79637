package core

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/kwarp-dev/kwarp/core/clusterdial"
	"github.com/kwarp-dev/kwarp/core/dnsroute"
	"github.com/kwarp-dev/kwarp/core/outgoing"
	"github.com/kwarp-dev/kwarp/core/pluginhost"
	"github.com/kwarp-dev/kwarp/layer"
	"github.com/kwarp-dev/kwarp/sdk"
	"github.com/kwarp-dev/kwarp/sdk/pluginv1"
)

// network is a session's outgoing traffic and DNS, built from the net and dns plugins'
// tables: the NetHandler the layer asks, and the resolver files the process reads.
type network struct {
	handler *outgoing.Handler // nil: nothing is carried
	// files are served in front of the fs rules: the pod's resolv.conf and hosts (dns on), or
	// this machine's (dns off: mapped to nil).
	files map[string][]byte
}

func (n *network) close() {
	if n.handler != nil {
		n.handler.Close()
	}
}

// localResolvConf is this machine's resolver configuration, read by kwarp itself (never
// through the layer).
const localResolvConf = "/etc/resolv.conf"

// newNetwork reads the net and dns tables and builds what they ask for.
func newNetwork(plugins map[string]*runningPlugin, dialer *clusterdial.Dialer, log zerolog.Logger) (*network, error) {
	var nr sdk.NetRules
	if err := json.Unmarshal(plugins["net"].rules["net"], &nr); err != nil {
		return nil, fmt.Errorf("net rule table: %w", err)
	}
	var dr sdk.DnsRules
	if err := json.Unmarshal(plugins["dns"].rules["dns"], &dr); err != nil {
		return nil, fmt.Errorf("dns rule table: %w", err)
	}
	n := &network{files: map[string][]byte{"/etc/resolv.conf": nil, "/etc/hosts": nil}}
	rules := outgoing.Rules{TCP: nr.TCP, UDP: nr.UDP}
	for _, f := range nr.Filters {
		rules.Filters = append(rules.Filters, outgoing.Filter(f))
	}
	var router *dnsroute.Router
	if dr.Enabled && dr.ResolvConf != nil {
		n.files["/etc/resolv.conf"] = dr.ResolvConf
		if dr.Hosts != nil {
			n.files["/etc/hosts"] = dr.Hosts
		}
		rules.Nameservers = dr.Nameservers
		var err error
		router, err = dnsroute.New(dnsroute.Config{Remote: dnsResolver{plugins["dns"].Plugin}, Local: dr.Local,
			Log: log.With().Str("feature", "dns").Logger()})
		if err != nil {
			return nil, err
		}
	}
	if router == nil {
		// names resolve here: this machine's resolver is asked from this machine, not
		// through the pod, whatever the filters send through it
		if ns, err := dnsroute.ReadResolvConf(localResolvConf); err == nil {
			rules.Filters = append([]outgoing.Filter{{Kind: outgoing.FilterLocal,
				Subnets: []string{netip.PrefixFrom(ns.Addr(), ns.Addr().BitLen()).String()}, Ports: []int{int(ns.Port())}}}, rules.Filters...)
		}
	}
	if !rules.TCP && !rules.UDP && router == nil {
		return n, nil
	}
	h, err := outgoing.New(outgoing.Options{Rules: rules, Remote: remote{dialer}, DNS: router,
		Log: log.With().Str("feature", "outgoing").Logger()})
	if err != nil {
		return nil, err
	}
	n.handler = h
	return n, nil
}

// remote opens the pod's side of a connection through clusterdial.
type remote struct{ d *clusterdial.Dialer }

func (r remote) Dial(ctx context.Context, p layer.Proto, dst netip.AddrPort) (outgoing.Conn, netip.AddrPort, error) {
	c, err := r.d.Dial(ctx, p.String(), dst.String())
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	local, _ := netip.ParseAddrPort(c.Result.LocalAddress)
	return c, local, nil
}

// dnsResolver is the dns plugin as dnsroute sees it.
type dnsResolver struct{ p *pluginhost.Plugin }

func (d dnsResolver) Query(ctx context.Context, server netip.AddrPort, packet []byte, tcp bool) ([]byte, error) {
	var out []byte
	err := d.p.Call(ctx, func(ctx context.Context, c *sdk.Client) error {
		r, err := c.Dns().Query(ctx, &pluginv1.DnsQueryRequest{Packet: packet, Server: server.String(), Tcp: tcp})
		if err != nil {
			return err
		}
		if r.Errno != 0 {
			return fmt.Errorf("dns query to %s in the pod: %s: %w", server, r.Message, unix.Errno(r.Errno))
		}
		out = r.Packet
		return nil
	})
	return out, err
}
