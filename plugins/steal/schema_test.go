package steal

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
		{"design example", `steal "http" "mine" {              # a filtered steal; several may share a port
  port = 8080
  match {
    any_of {
      header "x-kwarp-user" { regex = "^alice$" }
      path { prefix = "/api/v2/" }
    }
    method = ["GET", "POST"]
  }
}`, Config{Kind: "http", Name: "mine", Port: 8080, Match: &Match{
			Method: []string{"GET", "POST"},
			Header: []HeaderMatch{},
			Path:   []StringMatch{},
			AllOf:  []Match{},
			AnyOf: []Match{{
				Header: []HeaderMatch{{Name: "x-kwarp-user", StringMatch: StringMatch{Regex: "^alice$"}}},
				Path:   []StringMatch{{Prefix: "/api/v2/"}},
				AllOf:  []Match{},
				AnyOf:  []Match{},
			}},
		}}},
		{"no match steals every request", `steal "http" "all" { port = 80 }`, Config{Kind: "http", Name: "all", Port: 80}},
		{"nested trees", `steal "http" "deep" {
  port = 80
  match {
    all_of {
      any_of {
        path { exact = "/a" }
        path { regex = "^/b" }
      }
    }
  }
}`, Config{Kind: "http", Name: "deep", Port: 80, Match: &Match{
			Header: []HeaderMatch{}, Path: []StringMatch{}, AnyOf: []Match{},
			AllOf: []Match{{Header: []HeaderMatch{}, Path: []StringMatch{}, AllOf: []Match{}, AnyOf: []Match{{
				Header: []HeaderMatch{}, AllOf: []Match{}, AnyOf: []Match{},
				Path: []StringMatch{{Exact: "/a"}, {Regex: "^/b"}},
			}}}},
		}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			blocks, diags := Schema.DecodeSource("kwarp.hcl", []byte(tt.src), "steal")
			if diags.HasErrors() || len(blocks) != 1 {
				t.Fatalf("decode: %v", diags)
			}
			got, err := DecodeConfig(blocks[0])
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
			all, err := DecodeConfigs([]byte("[" + string(blocks[0]) + "]"))
			if err != nil || len(all) != 1 || !reflect.DeepEqual(all[0], tt.want) {
				t.Errorf("DecodeConfigs = %+v, %v", all, err)
			}
		})
	}
	if _, err := DecodeConfig(nil); err == nil {
		t.Error("DecodeConfig(nil) succeeded, but a steal block has no defaults (port is required)")
	}
	if got, err := DecodeConfigs(nil); err != nil || got != nil {
		t.Errorf("DecodeConfigs(nil) = %v, %v", got, err)
	}
}

func TestSchemaRejects(t *testing.T) {
	tests := []struct{ src, summary string }{
		{`steal "grpc" "x" { port = 80 }`, "Invalid kind for steal"},
		{`steal "http" "x" {}`, "Missing required argument"},
		{`steal "http" "x" { port = 0 }`, "Invalid port"},
		{`steal "http" "x" {
  port = 80
  match {}
}`, "Empty block"},
		{`steal "http" "x" {
  port = 80
  match {
    header "a" { regex = "(" }
  }
}`, "Invalid regular expression"},
		{`steal "http" "x" {
  port = 80
  match {
    header "a" {}
  }
}`, "Missing required argument"},
		{`steal "http" "x" {
  port = 80
  match {
    path {
      prefix = "/a"
      exact  = "/a"
    }
  }
}`, "Conflicting arguments"},
		{`steal "http" "x" {
  port = 80
  match { method = ["get"] }
}`, `Invalid value for "method"`},
		{`steal "http" "x" {
  port = 80
  match {
    none_of { method = ["GET"] }
  }
}`, "Unsupported block type"},
	}
	for _, tt := range tests {
		_, diags := Schema.DecodeSource("kwarp.hcl", []byte(tt.src), "steal")
		if !diags.HasErrors() || diags[0].Summary != tt.summary {
			t.Errorf("%s: got %v, want %q", tt.src, diags, tt.summary)
		}
	}
}
