package fs

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
		{"design example", `fs {
  mode       = "read"              # local | localwithoverrides | read | write
  read_only  = ["/etc/checkout/**"]  # globs; ** crosses /
  read_write = ["/data/**"]
  local      = ["/srv/cache/**"]
  not_found  = ["**/.aws/**"]
}`, Config{Mode: "read", ReadOnly: []string{"/etc/checkout/**"}, ReadWrite: []string{"/data/**"}, Local: []string{"/srv/cache/**"}, NotFound: []string{"**/.aws/**"}}},
		{"empty block reads", `fs {}`, Config{Mode: "read"}},
		{"write", `fs { mode = "write" }`, Config{Mode: "write"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			blocks, diags := Schema.DecodeSource("kwarp.hcl", []byte(tt.src), "fs")
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
	if got, err := DecodeConfig(nil); err != nil || got.Mode != "read" {
		t.Errorf("DecodeConfig(nil) = %+v, %v; want mode read", got, err)
	}
}

func TestSchemaRejects(t *testing.T) {
	tests := []struct{ src, summary string }{
		{`fs { mode = "rw" }`, `Invalid value for "mode"`},
		{`fs { read_only = ["/a**"] }`, "Invalid path pattern"},
		{`fs { local = ["~/.cache/**"] }`, "Invalid path pattern"},
		{`fs { not_found = [".aws/**"] }`, "Invalid path pattern"},
		{`fs { read_write = "/data/**" }`, "Incorrect attribute value type"},
	}
	for _, tt := range tests {
		_, diags := Schema.DecodeSource("kwarp.hcl", []byte(tt.src), "fs")
		if !diags.HasErrors() || diags[0].Summary != tt.summary {
			t.Errorf("%s: got %v, want %q", tt.src, diags, tt.summary)
		}
	}
}
