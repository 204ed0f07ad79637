package dns

import (
	"reflect"
	"testing"

	"github.com/kwarp-dev/kwarp/sdk/plugintest"
)

func TestSchema(t *testing.T) { plugintest.CheckSchema(t, Schema) }

func TestDecodeConfig(t *testing.T) {
	tests := []struct {
		name, src string
		want      Config
	}{
		{"design example", `dns {
  enabled = true
  local   = ["*.corp.example.com"] # names resolved on this machine
}`, Config{Enabled: true, Local: []string{"*.corp.example.com"}}},
		{"empty block is enabled", `dns {}`, Config{Enabled: true}},
		{"disabled", `dns { enabled = false }`, Config{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			blocks, diags := Schema.DecodeSource("kwarp.hcl", []byte(tt.src), "dns")
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
	if got, err := DecodeConfig(nil); err != nil || !got.Enabled {
		t.Errorf("DecodeConfig(nil) = %+v, %v; want enabled", got, err)
	}
}

func TestSchemaRejects(t *testing.T) {
	tests := []struct{ src, summary string }{
		{`dns { enabled = "sure" }`, "Incorrect attribute value type"},
		{`dns { local = ["corp.example.com:53"] }`, "Invalid host pattern"},
		{`dns { local = ["db["] }`, "Invalid host pattern"},
	}
	for _, tt := range tests {
		_, diags := Schema.DecodeSource("kwarp.hcl", []byte(tt.src), "dns")
		if !diags.HasErrors() || diags[0].Summary != tt.summary {
			t.Errorf("%s: got %v, want %q", tt.src, diags, tt.summary)
		}
	}
}
