package config

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"sort"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"

	"github.com/kwarp-dev/kwarp/sdk/schema"
)

// DefaultPath is the policy kwarp reads when no -f is given, relative to the working
// directory.
const DefaultPath = ".kwarp/kwarp.hcl"

// Policy is a loaded policy file.
type Policy struct {
	Filename string
	// Target is nil for a targetless session (no target block).
	Target  *Target
	Agent   Agent
	Process Process
	Plugins []Plugin
	// Features holds the feature blocks by block type ("fs"), in source order. A type the
	// file does not mention has no key: the plugin's defaults apply.
	Features map[string][]Feature
	// Files holds the parsed source, for Print. Load fills it even when it returns errors;
	// the rest of a Policy that came with errors is incomplete and must not be used.
	Files map[string]*hcl.File
}

// Target is the target block: `target "deployment" "checkout" { namespace, container }`.
type Target struct {
	// Kind is canonical: pod, deployment, statefulset, job, cronjob or rollout, whichever
	// alias the file used (deploy, sts).
	Kind      string
	Name      string
	Namespace string // "" = the kubeconfig context's namespace
	Container string // "" = the first container that is not a mesh sidecar
	Range     hcl.Range
}

// String is the target as --target writes it.
func (t *Target) String() string { return t.Kind + "/" + t.Name }

// TargetKinds are the kinds a target block and --target accept, aliases included.
var TargetKinds = []string{"pod", "deploy", "deployment", "sts", "statefulset", "job", "cronjob", "rollout"}

// CanonicalKind maps a target kind or alias to its canonical name.
func CanonicalKind(kind string) (string, bool) {
	switch kind {
	case "pod", "deployment", "statefulset", "job", "cronjob", "rollout":
		return kind, true
	case "deploy":
		return "deployment", true
	case "sts":
		return "statefulset", true
	}
	return "", false
}

// Agent is the agent block. Without one, Mode is AgentJob and everything else is zero.
type Agent struct {
	Mode      string // AgentJob or AgentEphemeral
	Namespace string // "" = the target's
	Image     string // "" = the release's image
	// TTL is the agent's lease after the last session; nil = the agent's default. Zero is a
	// real value: leave as soon as the last session ends.
	TTL        *time.Duration
	Privileged bool
	Port       int // 0 = random
	Range      hcl.Range
}

// Agent modes.
const (
	AgentJob       = "job"
	AgentEphemeral = "ephemeral"
)

// Process is the process block.
type Process struct {
	// Skip names programs whose processes run without the layer (a debugger, say).
	Skip []string
}

// Plugin is a third-party plugin block: `plugin "NAME" { source, sha256, config { ... } }`.
type Plugin struct {
	Name   string
	Source string
	SHA256 string
	// Config is the config block's body, raw: it is decoded with the plugin's own schema once
	// the plugin has said what that is. It is an empty body when the block has no config.
	Config      hcl.Body
	ConfigRange hcl.Range
	Range       hcl.Range
}

// Feature is one feature block, decoded with its plugin's schema.
type Feature struct {
	Labels []string
	// Value is the decoded block (labels included as attributes); JSON is the same value as
	// the plugin receives it.
	Value cty.Value
	JSON  []byte
	Range hcl.Range
}

// Core block schemas, declared like a plugin's so that their diagnostics look the same.
var (
	targetSchema = &schema.Block{
		Labels:    []string{"kind", "name"},
		LabelEnum: map[string][]string{"kind": TargetKinds},
		Attributes: []schema.Attribute{
			{Name: "namespace", Type: schema.String, Check: schema.CheckNonEmpty},
			{Name: "container", Type: schema.String, Check: schema.CheckNonEmpty},
		},
	}
	agentSchema = &schema.Block{
		Attributes: []schema.Attribute{
			{Name: "mode", Type: schema.String, Default: AgentJob, Enum: []string{AgentJob, AgentEphemeral}},
			{Name: "namespace", Type: schema.String, Check: schema.CheckNonEmpty},
			{Name: "image", Type: schema.String, Check: schema.CheckNonEmpty},
			{Name: "ttl", Type: schema.String, Check: schema.CheckDuration},
			{Name: "privileged", Type: schema.Bool, Default: false},
			{Name: "port", Type: schema.Number, Default: 0, Check: schema.CheckPortOrZero},
		},
	}
	processSchema = &schema.Block{
		Attributes: []schema.Attribute{
			{Name: "skip", Type: schema.ListOfString, Check: schema.CheckNonEmpty},
		},
	}
	pluginSchema = &schema.Block{
		Labels:       []string{"name"},
		Repeated:     true,
		UniqueLabels: true,
		Attributes: []schema.Attribute{
			{Name: "source", Type: schema.String, Required: true, Check: schema.CheckNonEmpty},
			{Name: "sha256", Type: schema.String},
		},
		// config is taken out raw before the rest is decoded; it is declared so that the
		// "allowed here" lists mention it.
		Blocks: []schema.NestedBlock{{Name: "config", Block: &schema.Block{}}},
	}
	coreSchemas = map[string]*schema.Block{
		"target": targetSchema, "agent": agentSchema, "process": processSchema, "plugin": pluginSchema,
	}
)

// Find says which policy file to read: the flag's when given, else DefaultPath when it
// exists. false means there is none, and the session runs on defaults and flags alone.
func Find(flagPath string) (string, bool) {
	if flagPath != "" {
		return flagPath, true
	}
	if fi, err := os.Stat(DefaultPath); err == nil && !fi.IsDir() {
		return DefaultPath, true
	}
	return "", false
}

// LoadFile reads and loads the policy at path.
func LoadFile(path string, features map[string]*schema.Block) (*Policy, hcl.Diagnostics) {
	src, err := os.ReadFile(path)
	if err != nil {
		return &Policy{Filename: path, Features: map[string][]Feature{}, Files: map[string]*hcl.File{}}, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Cannot read the policy file",
			Detail:   fmt.Sprintf("Reading %s: %v.", path, err),
		}}
	}
	return Load(path, src, features)
}

// Load parses src as the policy file filename. features maps each feature block type to the
// schema of the plugin that owns it. The Policy is never nil; see Policy.Files.
func Load(filename string, src []byte, features map[string]*schema.Block) (*Policy, hcl.Diagnostics) {
	p := &Policy{Filename: filename, Agent: Agent{Mode: AgentJob}, Features: map[string][]Feature{}, Files: map[string]*hcl.File{}}
	file, diags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos)
	if file != nil {
		p.Files[filename] = file
	}
	if diags.HasErrors() || file == nil {
		return p, sortDiags(diags)
	}
	l := &loader{p: p, features: features}
	diags = append(diags, l.load(file.Body)...)
	return p, sortDiags(diags)
}

type loader struct {
	p        *Policy
	features map[string]*schema.Block
	diags    hcl.Diagnostics
}

func (l *loader) add(diags ...*hcl.Diagnostic) { l.diags = append(l.diags, diags...) }

func (l *loader) errorAt(rng hcl.Range, summary, detail string) {
	l.add(&hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary, Detail: detail, Subject: rng.Ptr()})
}

// blockTypes is every top-level block type, core first, features sorted.
func (l *loader) blockTypes() []string {
	types := []string{"target", "agent"}
	var feats []string
	for name := range l.features {
		if _, core := coreSchemas[name]; !core {
			feats = append(feats, name)
		}
	}
	sort.Strings(feats)
	return append(append(types, feats...), "process", "plugin")
}

func (l *loader) schemaOf(typ string) *schema.Block {
	if s, ok := coreSchemas[typ]; ok {
		return s
	}
	return l.features[typ]
}

func (l *loader) load(body hcl.Body) hcl.Diagnostics {
	for _, name := range slices.Sorted(maps.Keys(l.features)) {
		b := l.features[name]
		switch {
		case coreSchemas[name] != nil:
			l.add(&hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid plugin schema",
				Detail: fmt.Sprintf("A plugin registers the block type %q, which is kwarp's own; rename the plugin's block.", name)})
		case !hclsyntax.ValidIdentifier(name):
			l.add(&hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid plugin schema",
				Detail: fmt.Sprintf("A plugin registers the block type %q, which is not an HCL identifier.", name)})
		case b == nil:
			l.add(&hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid plugin schema",
				Detail: fmt.Sprintf("The plugin that owns %q registered no schema.", name)})
		}
	}
	if l.diags.HasErrors() {
		return l.diags
	}

	types := l.blockTypes()
	root := &hcl.BodySchema{}
	for _, t := range types {
		root.Blocks = append(root.Blocks, hcl.BlockHeaderSchema{Type: t, LabelNames: l.schemaOf(t).Labels})
	}
	content, diags := body.Content(root)
	schema.Explain(diags, "The top level of a policy holds only these blocks: "+quoteList(types)+".")
	l.add(diags...)

	first := map[string]*hcl.Block{}
	labelsSeen := map[string]map[string]*hcl.Block{}
	for _, blk := range content.Blocks {
		s := l.schemaOf(blk.Type)
		if prev, dup := first[blk.Type]; dup && !s.Repeated {
			l.errorAt(blk.DefRange, fmt.Sprintf("Duplicate %s block", blk.Type),
				fmt.Sprintf("A policy has at most one %q block; the first is at %s.", blk.Type, schema.At(prev.DefRange)))
			continue
		}
		if _, dup := first[blk.Type]; !dup {
			first[blk.Type] = blk
		}
		if s.UniqueLabels {
			key, _ := json.Marshal(blk.Labels)
			if labelsSeen[blk.Type] == nil {
				labelsSeen[blk.Type] = map[string]*hcl.Block{}
			}
			if prev, dup := labelsSeen[blk.Type][string(key)]; dup {
				l.errorAt(blk.DefRange, fmt.Sprintf("Duplicate %s block", blk.Type),
					fmt.Sprintf("A %q block labelled %s is already defined at %s.", blk.Type, quoteList(blk.Labels), schema.At(prev.DefRange)))
				continue
			}
			labelsSeen[blk.Type][string(key)] = blk
		}
		switch blk.Type {
		case "target":
			l.target(blk)
		case "agent":
			l.agent(blk)
		case "process":
			l.process(blk)
		case "plugin":
			l.plugin(blk)
		default:
			l.feature(blk, s)
		}
	}
	return l.diags
}

// decodeInto decodes a core block with its schema and reads the value into out.
func (l *loader) decodeInto(s *schema.Block, blk *hcl.Block, body hcl.Body, out any) bool {
	if body != nil {
		withBody := *blk
		withBody.Body = body
		blk = &withBody
	}
	v, diags := s.DecodeBlock(blk, nil)
	l.add(diags...)
	if diags.HasErrors() {
		return false
	}
	data, err := schema.ToJSON(v)
	if err == nil {
		err = schema.FromJSON(data, out)
	}
	if err != nil {
		// the schema and the struct are both this package's: a mismatch is a kwarp bug
		l.errorAt(blk.DefRange, "Internal error", fmt.Sprintf("kwarp could not read its own %q block: %v.", blk.Type, err))
		return false
	}
	return true
}

func (l *loader) target(blk *hcl.Block) {
	var v struct {
		Kind      string `json:"kind"`
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
		Container string `json:"container"`
	}
	if !l.decodeInto(targetSchema, blk, nil, &v) {
		return
	}
	kind, _ := CanonicalKind(v.Kind)
	l.p.Target = &Target{Kind: kind, Name: v.Name, Namespace: v.Namespace, Container: v.Container, Range: blk.DefRange}
}

func (l *loader) agent(blk *hcl.Block) {
	var v struct {
		Mode       string  `json:"mode"`
		Namespace  string  `json:"namespace"`
		Image      string  `json:"image"`
		TTL        *string `json:"ttl"`
		Privileged bool    `json:"privileged"`
		Port       int     `json:"port"`
	}
	if !l.decodeInto(agentSchema, blk, nil, &v) {
		return
	}
	a := Agent{Mode: v.Mode, Namespace: v.Namespace, Image: v.Image, Privileged: v.Privileged, Port: v.Port, Range: blk.DefRange}
	if v.TTL != nil {
		ttl, err := time.ParseDuration(*v.TTL)
		if err != nil { // the schema's duration check already passed
			l.errorAt(blk.DefRange, "Internal error", fmt.Sprintf("kwarp could not read the agent's ttl: %v.", err))
			return
		}
		a.TTL = &ttl
	}
	l.p.Agent = a
}

func (l *loader) process(blk *hcl.Block) {
	var v struct {
		Skip []string `json:"skip"`
	}
	if l.decodeInto(processSchema, blk, nil, &v) {
		l.p.Process = Process{Skip: v.Skip}
	}
}

func (l *loader) plugin(blk *hcl.Block) {
	content, rest, diags := blk.Body.PartialContent(&hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{{Type: "config"}}})
	l.add(diags...)
	pl := Plugin{Config: hcl.EmptyBody(), ConfigRange: blk.DefRange, Range: blk.DefRange}
	for i, c := range content.Blocks {
		if i > 0 {
			l.errorAt(c.DefRange, "Duplicate config block",
				fmt.Sprintf("A plugin block has at most one config block; the first is at %s.", schema.At(content.Blocks[0].DefRange)))
			continue
		}
		pl.Config, pl.ConfigRange = c.Body, c.DefRange
	}
	var v struct {
		Name   string          `json:"name"`
		Source string          `json:"source"`
		SHA256 *string         `json:"sha256"`
		Config json.RawMessage `json:"config"`
	}
	if !l.decodeInto(pluginSchema, blk, rest, &v) {
		return
	}
	pl.Name, pl.Source = v.Name, v.Source
	if v.SHA256 != nil {
		pl.SHA256 = *v.SHA256
		if !isSHA256(pl.SHA256) {
			// A warning, not an error: a policy is often checked on a machine where the
			// plugin is not built yet. The core refuses to start a plugin whose checksum does
			// not match, so nothing runs unverified.
			attrs, _ := rest.JustAttributes()
			rng := blk.DefRange
			if a, ok := attrs["sha256"]; ok {
				rng = a.Expr.Range()
			}
			l.add(&hcl.Diagnostic{Severity: hcl.DiagWarning, Summary: "Invalid SHA-256 checksum",
				Detail:  fmt.Sprintf("%q is not a SHA-256 checksum (64 hexadecimal digits, as sha256sum prints them), so plugin %q will not start until it is.", pl.SHA256, pl.Name),
				Subject: rng.Ptr()})
		}
	}
	l.p.Plugins = append(l.p.Plugins, pl)
}

func isSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

func (l *loader) feature(blk *hcl.Block, s *schema.Block) {
	v, diags := s.DecodeBlock(blk, nil)
	l.add(diags...)
	if diags.HasErrors() {
		return
	}
	data, err := schema.ToJSON(v)
	if err != nil {
		l.errorAt(blk.DefRange, fmt.Sprintf("Cannot encode the %s block", blk.Type), fmt.Sprintf("The decoded block has no JSON form for its plugin: %v.", err))
		return
	}
	l.p.Features[blk.Type] = append(l.p.Features[blk.Type], Feature{Labels: blk.Labels, Value: v, JSON: data, Range: blk.DefRange})
}

// sortDiags orders diagnostics as they appear in the file, those without a place first.
func sortDiags(diags hcl.Diagnostics) hcl.Diagnostics {
	sort.SliceStable(diags, func(i, j int) bool {
		a, b := diags[i].Subject, diags[j].Subject
		switch {
		case a == nil || b == nil:
			return a == nil && b != nil
		case a.Filename != b.Filename:
			return a.Filename < b.Filename
		}
		return a.Start.Byte < b.Start.Byte
	})
	return diags
}

func quoteList(names []string) string {
	out := ""
	for i, n := range names {
		if i > 0 {
			out += ", "
		}
		out += fmt.Sprintf("%q", n)
	}
	return out
}
