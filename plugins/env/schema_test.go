package env

import (
	"reflect"
	"strings"
	"testing"

	"github.com/kwarp-dev/kwarp/sdk/plugintest"
)

func TestSchema(t *testing.T) { plugintest.CheckSchema(t, Schema) }

func TestDecodeConfig(t *testing.T) {
	tests := []struct {
		name, src string
		want      Config
	}{
		{"design example", `env {
  include  = ["DATABASE_*", "REDIS_URL"]   # globs on names; default all
  exclude  = ["NODE_ENV"]
  override = { LOG_LEVEL = "debug" }
}`, Config{Include: []string{"DATABASE_*", "REDIS_URL"}, Exclude: []string{"NODE_ENV"}, Override: map[string]string{"LOG_LEVEL": "debug"}}},
		{"empty block", `env {}`, Config{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			blocks, diags := Schema.DecodeSource("kwarp.hcl", []byte(tt.src), "env")
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
	if got, err := DecodeConfig(nil); err != nil || !reflect.DeepEqual(got, Config{}) {
		t.Errorf("DecodeConfig(nil) = %+v, %v; want the zero Config (all variables)", got, err)
	}
	if _, err := DecodeConfig([]byte(`{"include": 3}`)); err == nil || !strings.Contains(err.Error(), "env block") {
		t.Errorf("bad JSON: %v", err)
	}
}

func TestSchemaRejects(t *testing.T) {
	tests := []struct{ src, summary string }{
		{`env { include = ["A["] }`, "Invalid environment variable pattern"},
		{`env { exclude = ["A=1"] }`, "Invalid environment variable pattern"},
		{`env { override = { "" = "x" } }`, "Invalid environment variable name"},
		{`env { overide = {} }`, "Unsupported argument"},
	}
	for _, tt := range tests {
		_, diags := Schema.DecodeSource("kwarp.hcl", []byte(tt.src), "env")
		if !diags.HasErrors() || diags[0].Summary != tt.summary {
			t.Errorf("%s: got %v, want %q", tt.src, diags, tt.summary)
		}
	}
}
