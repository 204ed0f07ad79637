package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kwarp-dev/kwarp/config"
	"github.com/kwarp-dev/kwarp/core"
	"github.com/kwarp-dev/kwarp/kube/agentpod"
	"github.com/kwarp-dev/kwarp/kube/target"
	"github.com/kwarp-dev/kwarp/plugins/env"
	"github.com/kwarp-dev/kwarp/plugins/fs"
	netplugin "github.com/kwarp-dev/kwarp/plugins/net"
	"github.com/kwarp-dev/kwarp/sdk/schema"
)

// fsModes are the values of --fs-mode and fs.mode.
var fsModes = []string{fs.ModeLocal, fs.ModeLocalWithOverrides, fs.ModeRead, fs.ModeWrite}

type execFlags struct {
	target, container, policy, fsMode string
	steal, ephemeral                  bool
}

func newExecCmd(g *globals) *cobra.Command {
	f := &execFlags{}
	cmd := &cobra.Command{
		Use:   "exec [flags] -- CMD [ARGS...]",
		Short: "Run a local command in the context of a pod: its environment, files, network",
		Long: `Run CMD on this machine with the target container's environment variables and files, its
DNS, and its outgoing connections (they leave from the pod's network). Without -t an agent pod
of kwarp's own serves DNS and outgoing traffic. The exit status is CMD's; kwarp's own failures
exit 2 (usage or policy) or 3 (cluster or agent).

Variables that describe this machine stay local unless env.include names them: ` + env.LocalOnlyList(),
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runExec(cmd, g, f, args)
		},
	}
	fl := cmd.Flags()
	fl.SetInterspersed(false)
	fl.StringVarP(&f.target, "target", "t", "", "KIND/NAME: pod/, deploy/ (deployment/), sts/ (statefulset/), job/, cronjob/, rollout/; none = targetless")
	fl.StringVarP(&f.container, "container", "c", "", "container (default: the first that is not a mesh sidecar)")
	fl.StringVarP(&f.policy, "policy", "f", "", "HCL policy file (default "+config.DefaultPath+" when it exists)")
	fl.StringVar(&f.fsMode, "fs-mode", "", "files: local | localwithoverrides | read | write (default read)")
	fl.BoolVar(&f.steal, "steal", false, "incoming traffic: steal instead of mirror")
	fl.BoolVar(&f.ephemeral, "agent-ephemeral", false, "run the agent as an ephemeral container in the target pod")
	return cmd
}

func runExec(cmd *cobra.Command, g *globals, f *execFlags, argv []string) error {
	if f.fsMode != "" && !slices.Contains(fsModes, f.fsMode) {
		return UsageError(fmt.Errorf("--fs-mode %q: use one of %s", f.fsMode, strings.Join(fsModes, ", ")))
	}
	if f.target != "" {
		if _, _, err := target.Parse(f.target); err != nil {
			return UsageError(err)
		}
	}
	opts := core.Options{
		Log: g.log, Kube: g.kube, Target: f.target, Container: f.container, Argv: argv,
		Progress: cmd.ErrOrStderr(), Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
		Blocks: map[string][]byte{}, AgentMode: agentpod.ModeJob,
	}
	// the policy is read with the built-in plugins' schemas, then the flags win over it
	opts.Configure = func(schemas map[string]*schema.Block, o *core.Options) error {
		policy, err := loadPolicy(cmd, f.policy, schemas)
		if err != nil {
			return err
		}
		if policy != nil {
			applyPolicy(o, policy, g)
		}
		if f.ephemeral {
			o.AgentMode = agentpod.ModeEphemeral
		}
		if f.fsMode != "" {
			o.Blocks["fs"] = withMode(o.Blocks["fs"], f.fsMode)
		}
		if f.steal {
			if o.Blocks["network"], err = withIncomingMode(o.Blocks["network"], "steal"); err != nil {
				return fmt.Errorf("--steal: %w", err)
			}
		}
		if o.Target != "" {
			if _, _, err := target.Parse(o.Target); err != nil {
				return UsageError(err)
			}
		}
		if o.Namespace == "" {
			if o.Namespace, err = g.kube.ResolveNamespace(); err != nil {
				return clusterError(err)
			}
		}
		return nil
	}
	// the built-in plugins are this binary: the policy is read with its schemas before they are up
	opts.Schemas = builtinSchemas()
	var err error
	if opts.Self, err = os.Executable(); err != nil {
		return fmt.Errorf("find kwarp's own executable: %w", err)
	}
	code, err := core.Run(cmd.Context(), opts)
	if err != nil {
		return exitFromCore(err)
	}
	if code != 0 {
		return &ExitError{Code: code, Err: errSilent}
	}
	return nil
}

// errSilent carries the command's own exit status: kwarp adds no message of its own.
var errSilent = errors.New("")

// loadPolicy reads -f, else .kwarp/kwarp.hcl when it exists, decoding feature blocks with the
// given schemas; a bad policy is exit 2 with its diagnostics printed.
func loadPolicy(cmd *cobra.Command, flagPath string, schemas map[string]*schema.Block) (*config.Policy, error) {
	path, ok := config.Find(flagPath)
	if !ok {
		if flagPath != "" {
			return nil, UsageError(fmt.Errorf("policy file %s: not found", flagPath))
		}
		return nil, nil
	}
	policy, diags := config.LoadFile(path, schemas)
	if diags.HasErrors() {
		_ = config.Print(cmd.ErrOrStderr(), policy.Files, diags)
		return nil, UsageError(fmt.Errorf("policy %s has errors; nothing was run", path))
	}
	return policy, nil
}

// applyPolicy copies the policy into the options; flags already set win.
func applyPolicy(o *core.Options, p *config.Policy, g *globals) {
	if p.Target != nil && o.Target == "" {
		o.Target = p.Target.Kind + "/" + p.Target.Name
		if o.Container == "" {
			o.Container = p.Target.Container
		}
		if g.kube.Namespace == "" {
			o.Namespace = p.Target.Namespace
		}
	}
	if p.Agent.Mode == config.AgentEphemeral {
		o.AgentMode = agentpod.ModeEphemeral
	}
	o.AgentNamespace, o.AgentImage, o.AgentPort, o.Privileged = p.Agent.Namespace, p.Agent.Image, p.Agent.Port, p.Agent.Privileged
	if p.Agent.TTL != nil {
		o.AgentTTL = *p.Agent.TTL
		if o.AgentTTL == 0 {
			o.AgentTTL = time.Nanosecond // "exit with the last session": the smallest lease there is
		}
	}
	for name, feats := range p.Features {
		if len(feats) == 1 && len(feats[0].Labels) == 0 {
			o.Blocks[name] = feats[0].JSON
			continue
		}
		// a labelled or repeated block type (steal "http" NAME) goes to its plugin as a JSON
		// array of the blocks, in source order
		all := make([]json.RawMessage, len(feats))
		for i, f := range feats {
			all[i] = f.JSON
		}
		o.Blocks[name], _ = json.Marshal(all)
	}
}

// withIncomingMode sets network.incoming.mode in the network block's JSON (--steal wins over
// the file).
func withIncomingMode(block []byte, mode string) ([]byte, error) {
	cfg, err := netplugin.DecodeConfig(block)
	if err != nil {
		return nil, err
	}
	cfg.Incoming.Mode = mode
	return json.Marshal(cfg)
}

// withMode sets "mode" in the fs block's JSON (the flag wins over the file).
func withMode(block []byte, mode string) []byte {
	cfg, err := fs.DecodeConfig(block)
	if err != nil {
		cfg = fs.Config{}
	}
	cfg.Mode = mode
	out, _ := json.Marshal(cfg)
	return out
}
