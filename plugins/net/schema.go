package net

import (
	"fmt"

	"github.com/kwarp-dev/kwarp/sdk/schema"
)

// Schema is the network policy block:
//
//	network {
//	  outgoing {
//	    tcp = true
//	    udp = true
//	    filter "remote" {              # "remote": only these go via the pod; "local": these stay here
//	      hosts   = ["*.svc.cluster.local"]
//	      subnets = ["10.96.0.0/12"]
//	      ports   = [5432]
//	    }
//	  }
//	  incoming {
//	    mode         = "mirror"        # mirror | steal | off
//	    ignore_ports = [9090]
//	    port_mapping = { "8080" = 3000 }   # remote 8080 → local 3000
//	  }
//	}
var Schema = &schema.Block{
	Doc: "Which outgoing connections leave from the pod, and what happens to the pod's incoming traffic.",
	Blocks: []schema.NestedBlock{
		{Name: "outgoing", Block: outgoing, Doc: "Connections the command opens."},
		{Name: "incoming", Block: incoming, Doc: "Connections the pod receives."},
	},
}

var outgoing = &schema.Block{
	Attributes: []schema.Attribute{
		{Name: "tcp", Type: schema.Bool, Default: true, Doc: "Send TCP connections through the pod."},
		{Name: "udp", Type: schema.Bool, Default: true, Doc: "Send UDP traffic through the pod."},
	},
	Blocks: []schema.NestedBlock{{
		Name: "filter", Labels: []string{"kind"}, LabelEnum: map[string][]string{"kind": {"remote", "local"}}, Repeated: true,
		Doc: `"remote": only matching connections go through the pod; "local": matching connections stay on this machine.`,
		Block: &schema.Block{
			NotEmpty: true,
			Attributes: []schema.Attribute{
				{Name: "hosts", Type: schema.ListOfString, Check: schema.CheckHostGlob, Doc: "Host globs of the destination's name."},
				{Name: "subnets", Type: schema.ListOfString, Check: schema.CheckCIDR, Doc: "Subnets of the destination's address."},
				{Name: "ports", Type: schema.ListOfNumber, Check: schema.CheckPort, Doc: "Destination ports."},
			},
		},
	}},
}

var incoming = &schema.Block{
	Attributes: []schema.Attribute{
		{Name: "mode", Type: schema.String, Default: "mirror", Enum: []string{"mirror", "steal", "off"},
			Doc: "mirror: the command gets a copy; steal: the command gets the traffic instead of the pod; off: nothing."},
		{Name: "ignore_ports", Type: schema.ListOfNumber, Check: schema.CheckPort, Doc: "Pod ports left alone (health checks, metrics)."},
		{Name: "port_mapping", Type: schema.MapOfNumber, KeyCheck: schema.CheckPort, Check: schema.CheckPort,
			Doc: "Remote port to the local port the command listens on."},
	},
}

// Config is the decoded network block. An omitted outgoing or incoming block decodes as
// written empty, so both are always filled in.
type Config struct {
	Outgoing Outgoing `json:"outgoing"`
	Incoming Incoming `json:"incoming"`
}

// Outgoing is the network.outgoing block.
type Outgoing struct {
	TCP    bool     `json:"tcp"`
	UDP    bool     `json:"udp"`
	Filter []Filter `json:"filter"`
}

// Filter is one filter block. A connection matches it when its destination matches one of
// Hosts or Subnets (either list empty: any destination) and its port is one of Ports (empty:
// any port). Kind "remote" sends only matching connections through the pod; "local" keeps
// matching connections on this machine.
type Filter struct {
	Kind    string   `json:"kind"`
	Hosts   []string `json:"hosts"`
	Subnets []string `json:"subnets"`
	Ports   []int    `json:"ports"`
}

// Incoming is the network.incoming block.
type Incoming struct {
	Mode        string      `json:"mode"`
	IgnorePorts []int       `json:"ignore_ports"`
	PortMapping map[int]int `json:"port_mapping"`
}

// DecodeConfig reads the block's JSON as the core sends it; empty means no network block.
func DecodeConfig(data []byte) (Config, error) {
	var c Config
	if err := Schema.Unmarshal(data, &c); err != nil {
		return Config{}, fmt.Errorf("network block: %w", err)
	}
	return c, nil
}
