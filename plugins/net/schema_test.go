package net

import (
	"reflect"
	"testing"

	"github.com/kwarp-dev/kwarp/sdk/plugintest"
)

func TestSchema(t *testing.T) { plugintest.CheckSchema(t, Schema) }

func TestDecodeConfig(t *testing.T) {
	defaults := Config{Outgoing: Outgoing{TCP: true, UDP: true, Filter: []Filter{}}, Incoming: Incoming{Mode: "mirror"}}
	tests := []struct {
		name, src string
		want      Config
	}{
		{"design example", `network {
  outgoing {
    tcp = true
    udp = true
    filter "remote" {              # "remote": only these go via the pod; "local": these stay here
      hosts   = ["*.svc.cluster.local"]
      subnets = ["10.96.0.0/12"]
      ports   = [5432]
    }
  }
  incoming {
    mode         = "mirror"        # mirror | steal | off
    ignore_ports = [9090]
    port_mapping = { "8080" = 3000 }   # remote 8080 → local 3000
  }
}`, Config{
			Outgoing: Outgoing{TCP: true, UDP: true, Filter: []Filter{{Kind: "remote", Hosts: []string{"*.svc.cluster.local"}, Subnets: []string{"10.96.0.0/12"}, Ports: []int{5432}}}},
			Incoming: Incoming{Mode: "mirror", IgnorePorts: []int{9090}, PortMapping: map[int]int{8080: 3000}},
		}},
		{"empty block has the defaults", `network {}`, defaults},
		{"two filters, steal", `network {
  outgoing {
    udp = false
    filter "local" { ports = [22] }
    filter "remote" { hosts = ["*.internal"] }
  }
  incoming { mode = "steal" }
}`, Config{
			Outgoing: Outgoing{TCP: true, Filter: []Filter{{Kind: "local", Ports: []int{22}}, {Kind: "remote", Hosts: []string{"*.internal"}}}},
			Incoming: Incoming{Mode: "steal"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			blocks, diags := Schema.DecodeSource("kwarp.hcl", []byte(tt.src), "network")
			if diags.HasErrors() || len(blocks) != 1 {
				t.Fatalf("decode: %v", diags)
			}
			got, err := DecodeConfig(blocks[0])
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
	if got, err := DecodeConfig(nil); err != nil || !reflect.DeepEqual(got, defaults) {
		t.Errorf("DecodeConfig(nil) = %+v, %v; want %+v", got, err, defaults)
	}
}

func TestSchemaRejects(t *testing.T) {
	tests := []struct{ src, summary string }{
		{`network {
  outgoing {
    filter "remotely" { ports = [1] }
  }
}`, "Invalid kind for filter"},
		{`network {
  outgoing {
    filter "remote" {}
  }
}`, "Empty block"},
		{`network {
  outgoing {
    filter "remote" { subnets = ["10.96.0.0"] }
  }
}`, "Invalid subnet"},
		{`network {
  incoming { mode = "copy" }
}`, `Invalid value for "mode"`},
		{`network {
  incoming { port_mapping = { "8080" = 70000 } }
}`, "Invalid port"},
		{`network {
  incoming {}
  incoming {}
}`, "Duplicate incoming block"},
		{`network {
  outgoing { tcp = true }
  ingoing {}
}`, "Unsupported block type"},
	}
	for _, tt := range tests {
		_, diags := Schema.DecodeSource("kwarp.hcl", []byte(tt.src), "network")
		if !diags.HasErrors() || diags[0].Summary != tt.summary {
			t.Errorf("%s: got %v, want %q", tt.src, diags, tt.summary)
		}
	}
}
