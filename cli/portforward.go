package cli

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/kwarp-dev/kwarp/core"
	"github.com/kwarp-dev/kwarp/core/portforward"
	"github.com/kwarp-dev/kwarp/kube/agentpod"
	"github.com/kwarp-dev/kwarp/kube/target"
)

type forwardFlags struct {
	target, container string
	specs             []string
	ephemeral         bool
}

func newPortForwardCmd(g *globals) *cobra.Command {
	f := &forwardFlags{}
	cmd := &cobra.Command{
		Use:   "port-forward -t TARGET -L [LOCAL:]HOST:PORT [-L ...]",
		Short: "Forward local ports to anything the pod reaches, through the agent",
		Long: `Listen on this machine and open each connection from inside the target pod to HOST:PORT:
a Service name (resolved with the pod's DNS), a pod IP, an external host — not only the pod's
own ports, which is all kubectl port-forward reaches. Without -t the connections leave from an
agent pod of kwarp's own.

  -L 8080:backend:80            127.0.0.1:8080 → backend:80 as the pod resolves it
  -L backend:80                 local port = remote port
  -L 0.0.0.0:5432:10.96.3.4:5432 bind another address
  -L 0:backend:80               a free local port (printed)
  -L 5353:kube-dns.kube-system:53/udp   UDP: each local client gets its own flow

It runs until interrupted; a lost agent ends it with exit status 3.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runPortForward(cmd, g, f) },
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.target, "target", "t", "", "KIND/NAME whose pod the connections leave from; none = an agent pod of kwarp's own")
	fl.StringVarP(&f.container, "container", "c", "", "container (default: the first that is not a mesh sidecar)")
	fl.StringArrayVarP(&f.specs, "forward", "L", nil, "[[BIND:]LOCAL:]HOST:PORT[/udp]; repeat for several")
	fl.BoolVar(&f.ephemeral, "agent-ephemeral", false, "run the agent as an ephemeral container in the target pod")
	return cmd
}

func runPortForward(cmd *cobra.Command, g *globals, f *forwardFlags) error {
	if len(f.specs) == 0 {
		return UsageError(errors.New("nothing to forward: give at least one -L [LOCAL:]HOST:PORT"))
	}
	var specs []portforward.Spec
	for _, v := range f.specs {
		s, err := portforward.ParseSpec(v)
		if err != nil {
			return UsageError(err)
		}
		specs = append(specs, s)
	}
	if f.target != "" {
		if _, _, err := target.Parse(f.target); err != nil {
			return UsageError(err)
		}
	}
	fw, err := portforward.Listen(specs, g.log)
	if err != nil {
		return UsageError(err)
	}
	defer fw.Close()
	ns, err := g.kube.ResolveNamespace()
	if err != nil {
		return clusterError(err)
	}
	opts := core.Options{Log: g.log, Kube: g.kube, Target: f.target, Container: f.container, Namespace: ns,
		Progress: cmd.ErrOrStderr(), Blocks: map[string][]byte{}, AgentMode: agentpod.ModeJob}
	if f.ephemeral {
		opts.AgentMode = agentpod.ModeEphemeral
	}
	if opts.Self, err = os.Executable(); err != nil {
		return fmt.Errorf("find kwarp's own executable: %w", err)
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	return exitFromCore(core.Forward(ctx, opts, fw))
}

// exitFromCore turns a session failure into the exit status it carries.
func exitFromCore(err error) error {
	var ce *core.Error
	if errors.As(err, &ce) {
		return &ExitError{Code: ce.Code, Err: ce.Err}
	}
	return err
}
