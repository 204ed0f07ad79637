package schema

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// rule exercises every feature of the language: header labels, defaults of each type,
// checks, a labelled repeated block with an enum, an optional singleton, and a recursive tree.
func rule() *Block {
	cond := &Block{
		NotEmpty: true,
		Attributes: []Attribute{
			{Name: "method", Type: ListOfString, Enum: []string{"GET", "POST"}},
		},
		Blocks: []NestedBlock{
			{Name: "header", Labels: []string{"name"}, Repeated: true, Block: &Block{
				ExactlyOne: []string{"regex", "exact"},
				Attributes: []Attribute{
					{Name: "regex", Type: String, Check: CheckRegex},
					{Name: "exact", Type: String},
				},
			}},
			{Name: "any_of", Repeated: true, Recursive: true},
			{Name: "all_of", Repeated: true, Recursive: true},
		},
	}
	return &Block{
		Labels:       []string{"kind", "name"},
		LabelEnum:    map[string][]string{"kind": {"http", "tcp"}},
		Repeated:     true,
		UniqueLabels: true,
		Attributes: []Attribute{
			{Name: "mode", Type: String, Default: "read", Enum: []string{"read", "write"}},
			{Name: "port", Type: Number, Required: true, Check: CheckPort},
			{Name: "enabled", Type: Bool, Default: true},
			{Name: "paths", Type: ListOfString, Check: CheckPathGlob},
			{Name: "ports", Type: ListOfNumber, Check: CheckPort, Default: []int{80}},
			{Name: "env", Type: MapOfString, KeyCheck: CheckEnvName},
			{Name: "mapping", Type: MapOfNumber, KeyCheck: CheckPort, Check: CheckPort},
			{Name: "ttl", Type: String, Check: CheckDuration, Default: "30s"},
		},
		Blocks: []NestedBlock{
			{Name: "limits", Block: &Block{Attributes: []Attribute{
				{Name: "max", Type: Number, Default: 10},
				{Name: "subnets", Type: ListOfString, Check: CheckCIDR},
			}}},
			{Name: "filter", Labels: []string{"kind"}, LabelEnum: map[string][]string{"kind": {"remote", "local"}}, Repeated: true,
				Block: &Block{Attributes: []Attribute{{Name: "hosts", Type: ListOfString, Check: CheckHostGlob}}}},
			{Name: "match", Block: cond},
		},
	}
}

func decodeOne(t *testing.T, b *Block, src string) (string, hcl.Diagnostics) {
	t.Helper()
	out, diags := b.DecodeSource("test.hcl", []byte(src), "rule")
	if diags.HasErrors() || len(out) != 1 {
		return "", diags
	}
	return string(out[0]), diags
}

func TestDecodeShape(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"defaults, labels, absent singleton filled, absent repeated empty", `rule "http" "a" { port = 8080 }`,
			`{"enabled":true,"env":null,"filter":[],"kind":"http","limits":{"max":10,"subnets":null},"mapping":null,"match":null,"mode":"read","name":"a","paths":null,"port":8080,"ports":[80],"ttl":"30s"}`},
		{"everything set", `rule "tcp" "b" {
  mode = "write"
  port = "9090"
  enabled = false
  paths = ["/etc/**"]
  ports = [1, 2]
  env = { A = "1" }
  mapping = { "8080" = 3000 }
  ttl = "0"
  limits { max = 3 }
  filter "remote" { hosts = ["*.svc"] }
  filter "local" { hosts = ["db"] }
}`, `{"enabled":false,"env":{"A":"1"},"filter":[{"hosts":["*.svc"],"kind":"remote"},{"hosts":["db"],"kind":"local"}],"kind":"tcp","limits":{"max":3,"subnets":null},"mapping":{"8080":3000},"match":null,"mode":"write","name":"b","paths":["/etc/**"],"port":9090,"ports":[1,2],"ttl":"0"}`},
		{"recursive tree", `rule "http" "c" {
  port = 1
  match {
    any_of {
      header "x-user" { exact = "alice" }
      all_of {
        method = ["GET"]
        any_of {
          header "y" { regex = "^b" }
        }
      }
    }
    method = ["POST"]
  }
}`, `{"enabled":true,"env":null,"filter":[],"kind":"http","limits":{"max":10,"subnets":null},"mapping":null,"match":{"all_of":[],"any_of":[{"all_of":[{"all_of":[],"any_of":[{"all_of":[],"any_of":[],"header":[{"exact":null,"name":"y","regex":"^b"}],"method":null}],"header":[],"method":["GET"]}],"any_of":[],"header":[{"exact":"alice","name":"x-user","regex":null}],"method":null}],"header":[],"method":["POST"]},"mode":"read","name":"c","paths":null,"port":1,"ports":[80],"ttl":"30s"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, diags := decodeOne(t, rule(), tt.src)
			if diags.HasErrors() {
				t.Fatalf("diagnostics: %v", diags)
			}
			if got != tt.want {
				t.Errorf("JSON\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

// TestDecodeDiagnostics checks what the user reads: summary, the position the caret points
// at (the value, not the name), and the words that help.
func TestDecodeDiagnostics(t *testing.T) {
	tests := []struct {
		name    string
		body    string // inside `rule "http" "a" {` on line 1; the body starts on line 2
		summary string
		line    int
		col     int
		detail  string
	}{
		{"enum with suggestion", `port = 1
mode = "raed"`, `Invalid value for "mode"`, 3, 8, `must be one of "read" or "write". Did you mean "read"?`},
		{"unknown argument suggests and lists", `port = 1
prot = 2`, "Unsupported argument", 3, 1, `Allowed in the "rule" block: the arguments "mode", "port"`},
		{"unknown argument suggestion", `prot = 2`, "Unsupported argument", 2, 1, `Did you mean "port"?`},
		{"unknown nested block lists", `port = 1
limit {}`, "Unsupported block type", 3, 1, `Did you mean "limits"?`},
		{"wrong type", `port = 1
enabled = "maybe"`, "Incorrect attribute value type", 3, 11, `Inappropriate value for attribute "enabled"`},
		{"wrong element type points at the element", `port = 1
paths = ["/a", ["/b"]]`, "Incorrect attribute value type", 3, 16, "element 1"},
		{"port out of range", `port = 70000`, "Invalid port", 2, 8, "whole numbers from 1 to 65535"},
		{"bad port in list", `port = 1
ports = [80, 0]`, "Invalid port", 3, 14, "0 is not a port"},
		{"bad map key", `port = 1
mapping = { "http" = 80 }`, "Invalid port", 3, 13, `The key "http"`},
		{"bad map value", `port = 1
mapping = { "80" = 0 }`, "Invalid port", 3, 20, "0 is not a port"},
		{"bad env key", `port = 1
env = { "A=B" = "x" }`, "Invalid environment variable name", 3, 9, `cannot contain "="`},
		{"bad glob", `port = 1
paths = ["/ok", "/a**b"]`, "Invalid path pattern", 3, 17, `"**" must be a whole path segment`},
		{"relative path", `port = 1
paths = ["etc/x"]`, "Invalid path pattern", 3, 10, "is relative"},
		{"bad host", `port = 1
filter "remote" { hosts = ["db:5432"] }`, "Invalid host pattern", 3, 28, "DNS name only"},
		{"bad cidr", `port = 1
limits { subnets = ["10.0.0.0/33"] }`, "Invalid subnet", 3, 21, "CIDR notation"},
		{"bad duration", `port = 1
ttl = "30"`, "Invalid duration", 3, 7, `such as "30s"`},
		{"negative duration", `port = 1
ttl = "-1s"`, "Invalid duration", 3, 7, "negative"},
		{"bad regex", `port = 1
match {
  header "x" { regex = "a(" }
}`, "Invalid regular expression", 4, 24, "missing closing )"},
		{"label enum", `port = 1
filter "remot" { hosts = ["a"] }`, "Invalid kind for filter", 3, 8, `Did you mean "remote"?`},
		{"duplicate singleton", `port = 1
limits {}
limits {}`, "Duplicate limits block", 4, 1, "test.hcl:3:1"},
		{"missing required", ``, "Missing required argument", 1, 17, `"port" is required`},
		{"exactly one: none", `port = 1
match {
  header "x" {}
}`, "Missing required argument", 4, 3, `exactly one of "regex" or "exact"`},
		{"exactly one: two", `port = 1
match {
  header "x" {
    regex = "a"
    exact = "b"
  }
}`, "Conflicting arguments", 6, 5, `"regex" is already set on line 5`},
		{"empty recursive block", `port = 1
match {
  any_of {}
}`, "Empty block", 4, 3, `the blocks "header", "any_of" and "all_of"`},
		{"missing label", `port = 1
filter { hosts = ["a"] }`, "Missing kind for filter", 3, 8, "All filter blocks must have 1 labels"},
		{"null in list", `port = 1
paths = ["/a", null]`, `Invalid value for "paths"`, 3, 16, "null is not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := "rule \"http\" \"a\" {\n" + tt.body + "\n}\n"
			_, diags := decodeOne(t, rule(), src)
			var found *hcl.Diagnostic
			for _, d := range diags {
				if d.Summary == tt.summary {
					found = d
					break
				}
			}
			if found == nil {
				t.Fatalf("no %q diagnostic in:\n%s", tt.summary, dump(diags))
			}
			if found.Subject == nil || found.Subject.Start.Line != tt.line || found.Subject.Start.Column != tt.col {
				t.Errorf("subject %v, want line %d col %d\n%s", found.Subject, tt.line, tt.col, dump(diags))
			}
			if !strings.Contains(found.Detail, tt.detail) {
				t.Errorf("detail %q lacks %q", found.Detail, tt.detail)
			}
		})
	}
}

func TestDecodeHeaderLabels(t *testing.T) {
	tests := []struct {
		src, summary string
	}{
		{`rule "udp" "a" { port = 1 }`, "Invalid kind for rule"},
		{`rule "http" "" { port = 1 }`, "Empty name for rule"},
	}
	for _, tt := range tests {
		_, diags := decodeOne(t, rule(), tt.src)
		if !hasSummary(diags, tt.summary) {
			t.Errorf("%s: want %q in\n%s", tt.src, tt.summary, dump(diags))
		}
	}
	// DecodeBlock checks the count itself when hcl has not
	file, _ := hclsyntax.ParseConfig([]byte(`rule "http" { port = 1 }`), "x.hcl", hcl.InitialPos)
	blk := file.Body.(*hclsyntax.Body).Blocks[0].AsHCLBlock()
	if _, diags := rule().DecodeBlock(blk, nil); !hasSummary(diags, "Wrong number of labels for rule") {
		t.Errorf("want a label count error, got\n%s", dump(diags))
	}
}

func TestAbsentSingletonInsideRepeatedBlocks(t *testing.T) {
	b := &Block{Blocks: []NestedBlock{{Name: "item", Labels: []string{"id"}, Repeated: true, Block: &Block{
		Blocks: []NestedBlock{{Name: "opts", Block: &Block{Attributes: []Attribute{{Name: "n", Type: Number, Default: 1}}}}},
	}}}}
	out, diags := b.DecodeSource("t.hcl", []byte("rule {\n  item \"a\" {}\n  item \"b\" {\n    opts { n = 2 }\n  }\n}\n"), "rule")
	if diags.HasErrors() || len(out) != 1 {
		t.Fatal(diags)
	}
	if want := `{"item":[{"id":"a","opts":{"n":1}},{"id":"b","opts":{"n":2}}]}`; string(out[0]) != want {
		t.Errorf("got %s, want %s", out[0], want)
	}
}

func TestWarningsKeepTheValue(t *testing.T) {
	got, diags := decodeOne(t, rule(), `rule "http" "a" {
  port = 1
  limits { subnets = ["10.96.0.1/12"] }
}`)
	if diags.HasErrors() || len(diags) != 1 || diags[0].Severity != hcl.DiagWarning {
		t.Fatalf("want one warning, got\n%s", dump(diags))
	}
	if !strings.Contains(got, `"10.96.0.1/12"`) {
		t.Errorf("value lost: %s", got)
	}
}

func TestNestingLimit(t *testing.T) {
	src := "rule \"http\" \"a\" {\nport = 1\nmatch {\n" + strings.Repeat("any_of {\n", MaxDepth) + "method = [\"GET\"]\n" + strings.Repeat("}\n", MaxDepth) + "}\n}\n"
	_, diags := decodeOne(t, rule(), src)
	if !hasSummary(diags, "Blocks nested too deeply") {
		t.Fatalf("want a depth error, got\n%s", dump(diags))
	}
}

func TestValidate(t *testing.T) {
	ok := []*Block{rule(), {}}
	for _, b := range ok {
		if err := b.Validate(); err != nil {
			t.Errorf("valid schema rejected: %v", err)
		}
	}
	self := &Block{}
	self.Blocks = []NestedBlock{{Name: "x", Block: self}}
	tests := []struct {
		name  string
		block *Block
		want  string
	}{
		{"bad name", &Block{Attributes: []Attribute{{Name: "a-b c", Type: String}}}, "not an HCL identifier"},
		{"duplicate name", &Block{Attributes: []Attribute{{Name: "a", Type: String}}, Blocks: []NestedBlock{{Name: "a", Block: &Block{}}}}, `"a" is used twice`},
		{"unknown type", &Block{Attributes: []Attribute{{Name: "a", Type: "set(string)"}}}, "unknown type"},
		{"check on wrong type", &Block{Attributes: []Attribute{{Name: "a", Type: Number, Check: CheckCIDR}}}, `check "cidr" does not apply to number`},
		{"unknown check", &Block{Attributes: []Attribute{{Name: "a", Type: String, Check: "ipv9"}}}, "unknown check"},
		{"key check on a list", &Block{Attributes: []Attribute{{Name: "a", Type: ListOfString, KeyCheck: CheckPort}}}, "has no keys"},
		{"enum on numbers", &Block{Attributes: []Attribute{{Name: "a", Type: Number, Enum: []string{"1"}}}}, "enum needs string values"},
		{"default of wrong type", &Block{Attributes: []Attribute{{Name: "a", Type: Bool, Default: "yes please"}}}, "is not bool"},
		{"default outside enum", &Block{Attributes: []Attribute{{Name: "a", Type: String, Default: "x", Enum: []string{"y"}}}}, "fails its own checks"},
		{"default fails check", &Block{Attributes: []Attribute{{Name: "a", Type: Number, Default: 0, Check: CheckPort}}}, "fails its own checks"},
		{"required with default", &Block{Attributes: []Attribute{{Name: "a", Type: String, Required: true, Default: "x"}}}, "cannot have a default"},
		{"exactly one unknown", &Block{ExactlyOne: []string{"a", "b"}}, "not an attribute"},
		{"recursive singleton", &Block{Blocks: []NestedBlock{{Name: "r", Recursive: true}}}, "must be Repeated"},
		{"recursive with block", &Block{Blocks: []NestedBlock{{Name: "r", Recursive: true, Repeated: true, Block: &Block{}}}}, "takes no Block"},
		{"nested without block", &Block{Blocks: []NestedBlock{{Name: "n"}}}, "has no Block"},
		{"pointer cycle", self, "contains itself"},
		{"label enum for no label", &Block{Labels: []string{"kind"}, LabelEnum: map[string][]string{"knd": {"a"}}}, "not a label"},
		{"label shadows attribute", &Block{Blocks: []NestedBlock{{Name: "n", Labels: []string{"a"}, Block: &Block{Attributes: []Attribute{{Name: "a", Type: String}}}}}}, "has the name of an attribute"},
		{"header on nested block", &Block{Blocks: []NestedBlock{{Name: "n", Block: &Block{Repeated: true}}}}, "belong on its NestedBlock"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.block.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestBrokenSchemaIsADiagnostic(t *testing.T) {
	b := &Block{Attributes: []Attribute{{Name: "a", Type: "nope"}}}
	_, diags := b.Decode(hcl.EmptyBody(), nil)
	if !hasSummary(diags, "Invalid plugin schema") {
		t.Fatalf("got\n%s", dump(diags))
	}
}

// TestSchemaJSONRoundTrip is the promise plugins rely on: a schema sent over the wire as JSON
// decodes a block exactly as the original.
func TestSchemaJSONRoundTrip(t *testing.T) {
	orig := rule()
	data, err := json.Marshal(orig)
	if err != nil {
		t.Fatal(err)
	}
	var back Block
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	again, _ := json.Marshal(&back)
	if string(again) != string(data) {
		t.Errorf("JSON not stable:\n%s\n%s", data, again)
	}
	if err := back.Validate(); err != nil {
		t.Fatalf("round-tripped schema invalid: %v", err)
	}
	srcs := []string{
		`rule "http" "a" { port = 8080 }`,
		`rule "http" "a" {
  port = 8080
  ports = [1]
  match {
    any_of {
      header "h" { regex = "x" }
    }
  }
}`,
	}
	for _, src := range srcs {
		want, d1 := decodeOne(t, orig, src)
		got, d2 := decodeOne(t, &back, src)
		if d1.HasErrors() || d2.HasErrors() || got != want {
			t.Errorf("decode differs after a JSON round trip:\n got %s %v\nwant %s %v", got, d2, want, d1)
		}
	}
}

func TestFromJSON(t *testing.T) {
	var v struct {
		Port int `json:"port"`
	}
	if err := FromJSON([]byte(`{"port": 80}`), &v); err != nil || v.Port != 80 {
		t.Fatalf("FromJSON: %v %+v", err, v)
	}
	if err := FromJSON([]byte(`{"port": 80, "extra": 1}`), &v); err == nil || !strings.Contains(err.Error(), "extra") {
		t.Fatalf("unknown field accepted: %v", err)
	}
}

func TestUnmarshalDefaults(t *testing.T) {
	b := &Block{Attributes: []Attribute{{Name: "mode", Type: String, Default: "read"}, {Name: "on", Type: Bool, Default: true}}}
	var v struct {
		Mode string `json:"mode"`
		On   bool   `json:"on"`
	}
	if err := b.Unmarshal(nil, &v); err != nil || v.Mode != "read" || !v.On {
		t.Fatalf("Unmarshal(nil) = %v, %+v", err, v)
	}
	if err := rule().Unmarshal(nil, &v); err == nil {
		t.Fatal("a block with required parts has no defaults, but Unmarshal(nil) succeeded")
	}
}

func TestDidYouMean(t *testing.T) {
	opts := []string{"local", "localwithoverrides", "read", "write"}
	tests := map[string]string{
		"raed": "read", "Read": "read", "wirte": "write", "locla": "local", "lcoal": "local",
		"x": "", "delete": "", "": "",
	}
	for given, want := range tests {
		got := didYouMean(given, opts)
		if want == "" && got != "" || want != "" && got != fmt.Sprintf(" Did you mean %q?", want) {
			t.Errorf("didYouMean(%q) = %q, want %q", given, got, want)
		}
	}
}

func hasSummary(diags hcl.Diagnostics, s string) bool {
	for _, d := range diags {
		if d.Summary == s {
			return true
		}
	}
	return false
}

func dump(diags hcl.Diagnostics) string {
	var b strings.Builder
	for _, d := range diags {
		fmt.Fprintf(&b, "  %v: %s: %s\n", d.Subject, d.Summary, d.Detail)
	}
	return b.String()
}
