package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/kwarp-dev/kwarp/kube"
	"github.com/kwarp-dev/kwarp/kube/target"
)

// Exit codes of target and cluster failures (DESIGN.md: 2 usage or policy, 3 cluster or
// agent). The rule: exit 2 when kwarp can tell without asking the cluster (a --target that
// does not parse, an unknown kind, a bad flag); exit 3 for everything the cluster answers,
// including a target, namespace or container that does not exist there: the same command
// works once the cluster's state changes, and scripts tell "fix your command line" from
// "the cluster is not as expected" by the code.
func targetError(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, target.ErrInvalid) {
		return UsageError(err)
	}
	return clusterError(err)
}

// clusterError marks err as the cluster's or the agent's (exit 3).
func clusterError(err error) error {
	if err == nil {
		return nil
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		return err
	}
	return &ExitError{Code: ExitCluster, Err: err}
}

// connect builds the API clients and checks, within seconds, that the API server answers.
func (g *globals) connect(ctx context.Context) (*kube.Clients, error) {
	c, err := g.kube.Connect(ctx, g.log)
	if err != nil {
		return nil, clusterError(err)
	}
	return c, nil
}

func newLsCmd(g *globals) *cobra.Command {
	var asJSON, all bool
	cmd := &cobra.Command{
		Use:   "ls [-n NS] [-A] [--json]",
		Short: "List the targets that exist: pods, deployments, statefulsets, jobs, cronjobs, rollouts",
		Long: `List what --target can name in the namespace (-n, else the context's namespace), with each
target's containers; mesh sidecars (istio-proxy, linkerd-proxy, …) are marked, since kwarp
targets the first other container unless -c says otherwise. READY says whether a pod of the
target runs and is Ready now. Argo Rollouts are listed when the cluster serves them.

--json prints an array of {kind, name, namespace, containers: [{name, sidecar}], ready, pods}.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ns := ""
			if !all {
				var err error
				if ns, err = g.kube.ResolveNamespace(); err != nil {
					return clusterError(err)
				}
			}
			c, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			targets, warnings, err := target.List(cmd.Context(), c, ns)
			if err != nil {
				return clusterError(err)
			}
			for _, w := range warnings {
				fmt.Fprintf(cmd.ErrOrStderr(), "kwarp: warning: %v (those targets are not listed)\n", w)
			}
			if asJSON {
				if targets == nil {
					targets = []target.Target{}
				}
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(targets)
			}
			if len(targets) == 0 {
				where := fmt.Sprintf("in namespace %q", ns)
				if all {
					where = "in any namespace"
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "kwarp: no targets %s\n", where)
				return nil
			}
			return printTargets(cmd.OutOrStdout(), targets, all)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of a table")
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "list the targets of every namespace")
	return cmd
}

// printTargets writes the table: TARGET as --target takes it, READY, PODS, CONTAINERS.
func printTargets(w interface{ Write([]byte) (int, error) }, targets []target.Target, withNamespace bool) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	header := "TARGET\tREADY\tPODS\tCONTAINERS"
	if withNamespace {
		header = "NAMESPACE\t" + header
	}
	fmt.Fprintln(tw, header)
	for _, t := range targets {
		var cs []string
		for _, c := range t.Containers {
			if c.Sidecar {
				cs = append(cs, c.Name+" (sidecar)")
			} else {
				cs = append(cs, c.Name)
			}
		}
		ready := "no"
		if t.Ready {
			ready = "yes"
		}
		row := fmt.Sprintf("%s\t%s\t%s\t%s", t.Ref(), ready, t.Pods, strings.Join(cs, ", "))
		if withNamespace {
			row = t.Namespace + "\t" + row
		}
		fmt.Fprintln(tw, row)
	}
	return tw.Flush()
}
