package config_test

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/kwarp-dev/kwarp/config"
	"github.com/kwarp-dev/kwarp/plugins/dns"
	"github.com/kwarp-dev/kwarp/plugins/env"
	"github.com/kwarp-dev/kwarp/plugins/fs"
	"github.com/kwarp-dev/kwarp/plugins/net"
	"github.com/kwarp-dev/kwarp/plugins/steal"
	"github.com/kwarp-dev/kwarp/sdk/schema"
)

func features() map[string]*schema.Block {
	return map[string]*schema.Block{"env": env.Schema, "fs": fs.Schema, "dns": dns.Schema, "network": net.Schema, "steal": steal.Schema}
}

// TestFullExample loads DESIGN.md's policy example, copied verbatim: the contract says it is
// valid, so it must load without errors and mean what its comments say.
func TestFullExample(t *testing.T) {
	p, diags := config.LoadFile("testdata/full.hcl", features())
	if diags.HasErrors() {
		var out bytes.Buffer
		config.Print(&out, p.Files, diags)
		t.Fatalf("the DESIGN.md example does not load:\n%s", out.String())
	}
	// its only complaint: sha256 = "..." is a placeholder
	if len(diags) != 1 || diags[0].Summary != "Invalid SHA-256 checksum" || diags[0].Severity != hcl.DiagWarning {
		t.Errorf("want exactly the placeholder-checksum warning, got %v", diags)
	}

	wantTarget := config.Target{Kind: "deployment", Name: "checkout", Namespace: "staging", Container: "app"}
	if p.Target == nil {
		t.Fatal("no target")
	}
	got := *p.Target
	got.Range = hcl.Range{}
	if got != wantTarget || p.Target.String() != "deployment/checkout" {
		t.Errorf("target %+v", got)
	}
	if p.Target.Range.Start.Line != 1 {
		t.Errorf("target range %v", p.Target.Range)
	}

	ttl := 30 * time.Second
	wantAgent := config.Agent{Mode: "job", Namespace: "staging", Image: "...", TTL: &ttl, Privileged: false, Port: 0}
	gotAgent := p.Agent
	gotAgent.Range = hcl.Range{}
	if !reflect.DeepEqual(gotAgent, wantAgent) {
		t.Errorf("agent %+v, want %+v", gotAgent, wantAgent)
	}
	if !reflect.DeepEqual(p.Process.Skip, []string{"dlv"}) {
		t.Errorf("process %+v", p.Process)
	}

	if len(p.Plugins) != 1 {
		t.Fatalf("plugins %+v", p.Plugins)
	}
	pl := p.Plugins[0]
	if pl.Name != "kafka-split" || pl.Source != "./bin/kwarp-plugin-kafka" || pl.SHA256 != "..." {
		t.Errorf("plugin %+v", pl)
	}
	attrs, d := pl.Config.JustAttributes()
	if d.HasErrors() || attrs["topic"] == nil {
		t.Fatalf("plugin config body: %v %v", attrs, d)
	}
	if v, _ := attrs["topic"].Expr.Value(nil); v.AsString() != "orders" {
		t.Errorf("plugin config topic = %#v", v)
	}

	for _, typ := range []string{"env", "fs", "dns", "network", "steal"} {
		if len(p.Features[typ]) != 1 {
			t.Fatalf("feature %s: %d blocks", typ, len(p.Features[typ]))
		}
	}
	e, err := env.DecodeConfig(p.Features["env"][0].JSON)
	if err != nil || !reflect.DeepEqual(e, env.Config{Include: []string{"DATABASE_*", "REDIS_URL"}, Exclude: []string{"NODE_ENV"}, Override: map[string]string{"LOG_LEVEL": "debug"}}) {
		t.Errorf("env %+v %v", e, err)
	}
	f, err := fs.DecodeConfig(p.Features["fs"][0].JSON)
	if err != nil || f.Mode != "read" || !reflect.DeepEqual(f.NotFound, []string{"**/.aws/**"}) {
		t.Errorf("fs %+v %v", f, err)
	}
	dn, err := dns.DecodeConfig(p.Features["dns"][0].JSON)
	if err != nil || !dn.Enabled || !reflect.DeepEqual(dn.Local, []string{"*.corp.example.com"}) {
		t.Errorf("dns %+v %v", dn, err)
	}
	n, err := net.DecodeConfig(p.Features["network"][0].JSON)
	if err != nil || n.Incoming.PortMapping[8080] != 3000 || n.Outgoing.Filter[0].Kind != "remote" || n.Outgoing.Filter[0].Ports[0] != 5432 {
		t.Errorf("network %+v %v", n, err)
	}
	st := p.Features["steal"][0]
	if !reflect.DeepEqual(st.Labels, []string{"http", "mine"}) || st.Range.Start.Line != 45 {
		t.Errorf("steal labels %v range %v", st.Labels, st.Range)
	}
	s, err := steal.DecodeConfig(st.JSON)
	if err != nil || s.Name != "mine" || s.Port != 8080 || s.Match == nil || len(s.Match.AnyOf) != 1 || s.Match.AnyOf[0].Header[0].Regex != "^alice$" {
		t.Errorf("steal %+v %v", s, err)
	}
}

func TestEmptyPolicy(t *testing.T) {
	p, diags := config.Load("empty.hcl", nil, features())
	if len(diags) != 0 {
		t.Fatalf("diagnostics: %v", diags)
	}
	if p.Target != nil || p.Agent.Mode != config.AgentJob || p.Agent.TTL != nil || len(p.Features) != 0 {
		t.Errorf("empty policy: %+v", p)
	}
}

func TestTargetKinds(t *testing.T) {
	for alias, want := range map[string]string{"deploy": "deployment", "sts": "statefulset", "pod": "pod", "rollout": "rollout", "cronjob": "cronjob", "job": "job"} {
		p, diags := config.Load("k.hcl", []byte(`target "`+alias+`" "x" {}`), features())
		if diags.HasErrors() || p.Target.Kind != want {
			t.Errorf("%s: %v %+v", alias, diags, p.Target)
		}
	}
}

func TestAgentTTLZero(t *testing.T) {
	p, diags := config.Load("a.hcl", []byte("agent {\n  ttl = \"0\"\n  mode = \"ephemeral\"\n  port = 15001\n}\n"), features())
	if diags.HasErrors() || p.Agent.TTL == nil || *p.Agent.TTL != 0 || p.Agent.Mode != "ephemeral" || p.Agent.Port != 15001 {
		t.Fatalf("%v %+v", diags, p.Agent)
	}
}

// TestDiagnostics is one fixture per kind of mistake: what the user reads (summary, the words
// that help) and exactly where the caret goes.
func TestDiagnostics(t *testing.T) {
	tests := []struct {
		file    string
		summary string
		line    int
		col     int
		detail  string
	}{
		{"unknown_block", "Unsupported block type", 2, 1, `Did you mean "network"?`},
		{"unknown_attribute", "Unsupported argument", 3, 3, `Did you mean "mode"?`},
		{"unknown_nested_block", "Unsupported block type", 3, 5, `Did you mean "filter"?`},
		{"top_level_attribute", "Unsupported argument", 1, 1, `holds only these blocks: "target", "agent"`},
		{"wrong_type", "Incorrect attribute value type", 2, 16, `Inappropriate value for attribute "privileged"`},
		{"wrong_element_type", "Incorrect attribute value type", 3, 27, "a number is required"},
		{"bad_enum", `Invalid value for "mode"`, 2, 10, `must be one of "local", "localwithoverrides", "read" or "write". Did you mean "read"?`},
		{"bad_method", `Invalid value for "method"`, 3, 28, `Did you mean "POST"?`},
		{"bad_target_kind", "Invalid kind for target", 1, 8, `Did you mean "deployment"?`},
		{"missing_label", "Missing name for target", 1, 21, "must have 2 labels (kind, name)"},
		{"bad_path_glob", "Invalid path pattern", 2, 36, `"**" must be a whole path segment`},
		{"relative_path_glob", "Invalid path pattern", 2, 16, "is relative"},
		{"bad_host_glob", "Invalid host pattern", 2, 12, "DNS name only"},
		{"bad_env_glob", "Invalid environment variable pattern", 2, 14, "never closed"},
		{"bad_cidr", "Invalid subnet", 4, 18, "CIDR notation"},
		{"bad_port", "Invalid port", 2, 10, "80800 is not a port"},
		{"bad_port_mapping", "Invalid port", 3, 22, `The key "http"`},
		{"bad_regex", "Invalid regular expression", 4, 37, "missing closing )"},
		{"bad_duration", "Invalid duration", 2, 9, `such as "30s"`},
		{"duplicate_singleton", "Duplicate fs block", 5, 1, "the first is at testdata/errors/duplicate_singleton.hcl:1:1"},
		{"duplicate_target", "Duplicate target block", 2, 1, "at most one"},
		{"duplicate_steal", "Duplicate steal block", 2, 1, `labelled "http", "mine"`},
		{"duplicate_plugin", "Duplicate plugin block", 2, 1, `labelled "kafka"`},
		{"plugin_missing_source", "Missing required argument", 1, 16, `"source" is required`},
		{"plugin_two_configs", "Duplicate config block", 4, 3, "at most one config block"},
		{"steal_conflict", "Conflicting arguments", 6, 7, `"prefix" is already set on line 5`},
		{"syntax_error", "Unclosed configuration block", 1, 4, "no closing brace"},
		{"undefined_variable", "Variables not allowed", 2, 15, ""},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		seen[tt.file+".hcl"] = true
		t.Run(tt.file, func(t *testing.T) {
			path := filepath.Join("testdata", "errors", tt.file+".hcl")
			p, diags := config.LoadFile(path, features())
			if !diags.HasErrors() {
				t.Fatal("loaded without errors")
			}
			d := diags[0]
			for _, x := range diags {
				if x.Severity == hcl.DiagError {
					d = x
					break
				}
			}
			if d.Summary != tt.summary {
				t.Errorf("summary %q, want %q (all: %v)", d.Summary, tt.summary, diags)
			}
			if d.Subject == nil || d.Subject.Filename != path || d.Subject.Start.Line != tt.line || d.Subject.Start.Column != tt.col {
				t.Errorf("subject %v, want %s:%d:%d", d.Subject, path, tt.line, tt.col)
			}
			if !strings.Contains(d.Detail, tt.detail) {
				t.Errorf("detail %q lacks %q", d.Detail, tt.detail)
			}
			var out bytes.Buffer
			if err := config.Print(&out, p.Files, diags); err != nil {
				t.Fatal(err)
			}
			head := path + ":" + strconv.Itoa(tt.line) + ":" + strconv.Itoa(tt.col) + ": error: " + tt.summary + "\n"
			if !strings.HasPrefix(out.String(), head) {
				t.Errorf("printed output does not start with %q:\n%s", head, out.String())
			}
		})
	}
	fixtures, _ := filepath.Glob("testdata/errors/*.hcl")
	for _, f := range fixtures {
		if !seen[filepath.Base(f)] {
			t.Errorf("fixture %s has no case in the table", f)
		}
	}
}

func TestPrint(t *testing.T) {
	path := "testdata/errors/bad_enum.hcl"
	p, diags := config.LoadFile(path, features())
	var out bytes.Buffer
	if err := config.Print(&out, p.Files, diags); err != nil {
		t.Fatal(err)
	}
	want := `testdata/errors/bad_enum.hcl:2:10: error: Invalid value for "mode"

  on testdata/errors/bad_enum.hcl line 2, in fs:
     2:   mode = "raed"
                 ^^^^^^

"raed" is not allowed here: "mode" must be one of "local", "localwithoverrides", "read" or "write". Did you mean "read"?

`
	if out.String() != want {
		t.Errorf("got\n%s\nwant\n%s", out.String(), want)
	}
}

func TestPrintTabsAndWarnings(t *testing.T) {
	src := "network {\n\toutgoing {\n\t\tfilter \"remote\" { subnets = [\"10.96.0.1/12\"] }\n\t}\n}\n"
	p, diags := config.Load("tabs.hcl", []byte(src), features())
	if diags.HasErrors() || len(diags) != 1 {
		t.Fatalf("want one warning: %v", diags)
	}
	var out bytes.Buffer
	config.Print(&out, p.Files, diags)
	want := "tabs.hcl:3:32: warning: Subnet has host bits set\n\n  on tabs.hcl line 3, in network:\n" +
		"     3: \t\tfilter \"remote\" { subnets = [\"10.96.0.1/12\"] }\n" +
		"        \t\t" + strings.Repeat(" ", 29) + "^^^^^^^^^^^^^^\n"
	if !strings.HasPrefix(out.String(), want) {
		t.Errorf("got\n%s\nwant prefix\n%s", out.String(), want)
	}
}

func TestPrintWithoutSource(t *testing.T) {
	_, diags := config.LoadFile("testdata/does-not-exist.hcl", features())
	var out bytes.Buffer
	config.Print(&out, nil, diags)
	if !strings.HasPrefix(out.String(), "error: Cannot read the policy file\n") || !strings.Contains(out.String(), "does-not-exist.hcl") {
		t.Errorf("got %q", out.String())
	}
	d := &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "S", Subject: &hcl.Range{Filename: "gone.hcl", Start: hcl.Pos{Line: 3, Column: 2, Byte: 10}}}
	out.Reset()
	config.Print(&out, nil, hcl.Diagnostics{d})
	if !strings.Contains(out.String(), "gone.hcl:3:2: error: S") || !strings.Contains(out.String(), "source not available") {
		t.Errorf("got %q", out.String())
	}
}

func TestDiagnosticsAreInFileOrder(t *testing.T) {
	src := "fs {\n  mode = \"x\"\n}\nagent {\n  port = -1\n}\nnope {}\n"
	_, diags := config.Load("order.hcl", []byte(src), features())
	var lines []int
	for _, d := range diags {
		lines = append(lines, d.Subject.Start.Line)
	}
	if !reflect.DeepEqual(lines, []int{2, 5, 7}) {
		t.Errorf("lines %v: %v", lines, diags)
	}
}

func TestBadFeatureSchemas(t *testing.T) {
	tests := []struct {
		name     string
		features map[string]*schema.Block
		detail   string
	}{
		{"core name", map[string]*schema.Block{"agent": {}}, "kwarp's own"},
		{"not an identifier", map[string]*schema.Block{"my block": {}}, "not an HCL identifier"},
		{"nil schema", map[string]*schema.Block{"x": nil}, "no schema"},
	}
	for _, tt := range tests {
		_, diags := config.Load("x.hcl", []byte("x {}\n"), tt.features)
		if !diags.HasErrors() || !strings.Contains(diags[0].Detail, tt.detail) {
			t.Errorf("%s: %v", tt.name, diags)
		}
	}
	// a broken schema is reported where its block is used
	broken := map[string]*schema.Block{"x": {Attributes: []schema.Attribute{{Name: "a", Type: "nope"}}}}
	_, diags := config.Load("x.hcl", []byte("x {}\n"), broken)
	if !diags.HasErrors() || diags[0].Summary != "Invalid plugin schema" || diags[0].Subject == nil {
		t.Errorf("broken schema: %v", diags)
	}
}

func TestThirdPartyFeature(t *testing.T) {
	kafka := &schema.Block{Attributes: []schema.Attribute{{Name: "topic", Type: schema.String, Required: true}}}
	feats := features()
	feats["kafka"] = kafka
	p, diags := config.Load("k.hcl", []byte("kafka { topic = \"orders\" }\n"), feats)
	if diags.HasErrors() || string(p.Features["kafka"][0].JSON) != `{"topic":"orders"}` {
		t.Fatalf("%v %+v", diags, p.Features)
	}
	// and its schema plugs into the plugin block's raw config
	p, diags = config.Load("k.hcl", []byte("plugin \"k\" {\n  source = \"./k\"\n  config { topc = \"x\" }\n}\n"), features())
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	_, diags = kafka.Decode(p.Plugins[0].Config, nil)
	found := false
	for _, d := range diags {
		if d.Summary == "Unsupported argument" && strings.Contains(d.Detail, `Did you mean "topic"?`) && d.Subject.Start.Line == 3 && d.Subject.Start.Column == 12 {
			found = true
		}
	}
	if !found {
		t.Errorf("plugin config decoded with its schema: %v", diags)
	}
	// a plugin without a config block has an empty body, not nil
	p, _ = config.Load("k.hcl", []byte("plugin \"k\" { source = \"./k\" }\n"), features())
	if p.Plugins[0].Config == nil {
		t.Error("nil Config body")
	}
}

func TestFind(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if path, ok := config.Find(""); ok {
		t.Fatalf("found %q in an empty directory", path)
	}
	if path, ok := config.Find("mine.hcl"); !ok || path != "mine.hcl" {
		t.Fatalf("the flag must win: %q %v", path, ok)
	}
	if err := os.MkdirAll(".kwarp", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(config.DefaultPath, []byte("fs {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if path, ok := config.Find(""); !ok || path != config.DefaultPath {
		t.Fatalf("default not found: %q %v", path, ok)
	}
	if path, _ := config.Find("other.hcl"); path != "other.hcl" {
		t.Fatalf("the flag must win over the default: %q", path)
	}
}

// FuzzLoad feeds arbitrary bytes to the loader and the printer: neither may panic, every
// diagnostic with a subject must be printable, and a clean load must have JSON for every
// feature.
func FuzzLoad(f *testing.F) {
	full, err := os.ReadFile("testdata/full.hcl")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(full)
	fixtures, _ := filepath.Glob("testdata/errors/*.hcl")
	for _, fx := range fixtures {
		b, _ := os.ReadFile(fx)
		f.Add(b)
	}
	f.Add([]byte("steal \"http\" \"a\" {\n port = 1\n match {\n  any_of {\n   all_of {\n    method = [\"GET\"]\n   }\n  }\n }\n}\n"))
	f.Add([]byte("network {\n incoming { port_mapping = { 8080 = \"3000\" } }\n}\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		p, diags := config.Load("fuzz.hcl", src, features())
		if p == nil {
			t.Fatal("nil policy")
		}
		var out bytes.Buffer
		if err := config.Print(&out, p.Files, diags); err != nil {
			t.Fatal(err)
		}
		if diags.HasErrors() {
			return
		}
		for typ, feats := range p.Features {
			for _, ft := range feats {
				if len(ft.JSON) == 0 {
					t.Fatalf("%s block without JSON", typ)
				}
			}
		}
		// what parses clean must parse clean again: the loader has no hidden state
		if _, again := config.Load("fuzz.hcl", src, features()); again.HasErrors() {
			t.Fatalf("second load failed: %v", again)
		}
	})
}
