package env

import (
	"context"
	"fmt"
	"sort"
	"strings"

	agentv1 "github.com/kwarp-dev/kwarp/agent/api/v1"
	"github.com/kwarp-dev/kwarp/sdk"
	"github.com/kwarp-dev/kwarp/sdk/glob"
)

// Version of the built-in env plugin; it ships with kwarp.
const Version = "1"

// LocalOnly are the variables a local program needs to run on this machine: they describe the
// machine, the user and the terminal, not the pod. They stay local unless `include` names one
// of them exactly (a glob such as "*" does not pull them in).
var LocalOnly = []string{
	"PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM", "COLORTERM", "TERM_PROGRAM", "PWD", "OLDPWD",
	"SHLVL", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "DISPLAY", "WAYLAND_DISPLAY", "XAUTHORITY",
	"SSH_AUTH_SOCK", "SSH_CONNECTION", "SSH_CLIENT", "SSH_TTY", "TMPDIR", "TMUX", "EDITOR", "VISUAL",
	"KUBECONFIG", "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_SESSION_ID",
	"DBUS_SESSION_BUS_ADDRESS", "GOPATH", "GOROOT", "GOCACHE", "GOMODCACHE", "CARGO_HOME", "RUSTUP_HOME",
	"NVM_DIR", "PYENV_ROOT", "VIRTUAL_ENV", "JAVA_HOME",
}

// Plugin is the built-in env plugin: the command starts with the local environment, overlaid
// by the target container's variables (filtered by include and exclude), then by override.
type Plugin struct {
	cfg        Config
	include    []glob.Matcher
	exclude    []glob.Matcher
	agent      agentv1.EnvClient
	targetless bool
}

// New returns the plugin, unconfigured.
func New() *Plugin { return &Plugin{} }

// Info names the plugin and its block.
func (p *Plugin) Info() sdk.Info {
	return sdk.Info{Name: "env", Version: Version, Blocks: map[string]any{"env": Schema}}
}

// Configure compiles the include and exclude globs.
func (p *Plugin) Configure(_ context.Context, c sdk.Config) (sdk.Rules, error) {
	cfg := Config{}
	if b, ok := c.Blocks["env"]; ok {
		var err error
		if cfg, err = DecodeConfig(b); err != nil {
			return sdk.Rules{}, err
		}
	}
	p.cfg = cfg
	p.include, p.exclude = nil, nil
	for _, pat := range cfg.Include {
		m, err := glob.Compile(glob.Env, pat)
		if err != nil {
			return sdk.Rules{}, fmt.Errorf("env.include %q: %w", pat, err)
		}
		p.include = append(p.include, m)
	}
	for _, pat := range cfg.Exclude {
		m, err := glob.Compile(glob.Env, pat)
		if err != nil {
			return sdk.Rules{}, fmt.Errorf("env.exclude %q: %w", pat, err)
		}
		p.exclude = append(p.exclude, m)
	}
	p.targetless = c.Session.Targetless
	if c.Agent != nil {
		p.agent = agentv1.NewEnvClient(c.Agent)
	}
	return sdk.Rules{}, nil
}

// Compute builds the command's environment.
func (p *Plugin) Compute(ctx context.Context, local []sdk.EnvVar) (sdk.EnvResult, error) {
	var remote []sdk.EnvVar
	if !p.targetless && p.agent != nil {
		resp, err := p.agent.Get(ctx, &agentv1.GetEnvRequest{})
		if err != nil {
			return sdk.EnvResult{}, fmt.Errorf("read the target's environment: %w", err)
		}
		for _, v := range resp.Vars {
			remote = append(remote, sdk.EnvVar{Name: v.Name, Value: v.Value})
		}
	}
	return Merge(local, remote, p.Selected, p.cfg.Override), nil
}

// Selected reports whether a remote variable reaches the command.
func (p *Plugin) Selected(name string) bool {
	for _, ex := range p.exclude {
		if ex.Match(name) {
			return false
		}
	}
	explicit := false
	for _, pat := range p.cfg.Include {
		if pat == name {
			explicit = true
		}
	}
	if isLocalOnly(name) && !explicit {
		return false
	}
	if len(p.include) == 0 {
		return true
	}
	for _, in := range p.include {
		if in.Match(name) {
			return true
		}
	}
	return false
}

func isLocalOnly(name string) bool {
	for _, l := range LocalOnly {
		if l == name {
			return true
		}
	}
	return false
}

// Merge overlays the selected remote variables and the overrides on the local environment,
// keeping the local order and appending new names sorted, so the result is deterministic.
func Merge(local, remote []sdk.EnvVar, selected func(string) bool, override map[string]string) sdk.EnvResult {
	vals := map[string]string{}
	var order []string
	set := func(name, value string) {
		if _, ok := vals[name]; !ok {
			order = append(order, name)
		}
		vals[name] = value
	}
	for _, v := range local {
		set(v.Name, v.Value)
	}
	var imported []string
	for _, v := range remote {
		if selected(v.Name) {
			set(v.Name, v.Value)
			imported = append(imported, v.Name)
		}
	}
	keys := make([]string, 0, len(override))
	for k := range override {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		set(k, override[k])
		imported = append(imported, k)
	}
	res := sdk.EnvResult{Imported: dedupe(imported)}
	for _, name := range order {
		res.Vars = append(res.Vars, sdk.EnvVar{Name: name, Value: vals[name]})
	}
	return res
}

func dedupe(names []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, n := range names {
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out
}

// String lists the local-only variables, for the docs and `kwarp exec --help`.
func LocalOnlyList() string { return strings.Join(LocalOnly, ", ") }
