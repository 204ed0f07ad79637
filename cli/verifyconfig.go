package cli

import (
	"fmt"

	"github.com/hashicorp/hcl/v2"
	"github.com/spf13/cobra"

	"github.com/kwarp-dev/kwarp/config"
	"github.com/kwarp-dev/kwarp/plugins/dns"
	"github.com/kwarp-dev/kwarp/plugins/env"
	"github.com/kwarp-dev/kwarp/plugins/fs"
	"github.com/kwarp-dev/kwarp/plugins/net"
	"github.com/kwarp-dev/kwarp/plugins/steal"
	"github.com/kwarp-dev/kwarp/sdk/schema"
)

// builtinSchemas maps each built-in feature block type to the schema its plugin declares.
// A policy is checked against them without starting any plugin.
func builtinSchemas() map[string]*schema.Block {
	return map[string]*schema.Block{
		"env":     env.Schema,
		"fs":      fs.Schema,
		"dns":     dns.Schema,
		"network": net.Schema,
		"steal":   steal.Schema,
	}
}

func newVerifyConfigCmd() *cobra.Command {
	var policy string
	cmd := &cobra.Command{
		Use:   "verify-config [-f FILE]",
		Short: "Check a policy file and print its diagnostics; exit 0 only when it has no errors",
		Long: `verify-config loads a policy file as kwarp exec would, without touching the cluster, and
prints every problem with its file:line:col and the source line. Warnings are printed but
do not fail the check. Without -f it checks ` + config.DefaultPath + `.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path, ok := config.Find(policy)
			if !ok {
				return UsageError(fmt.Errorf("no policy to check: pass -f FILE, or create %s", config.DefaultPath))
			}
			p, diags := config.LoadFile(path, builtinSchemas())
			stderr := cmd.ErrOrStderr()
			if err := config.Print(stderr, p.Files, diags); err != nil {
				return err
			}
			if diags.HasErrors() {
				return UsageError(fmt.Errorf("%s: %s", path, count(diags)))
			}
			if len(diags) > 0 {
				fmt.Fprintf(stderr, "%s: ok (%s)\n", path, count(diags))
			} else {
				fmt.Fprintf(stderr, "%s: ok\n", path)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&policy, "policy", "f", "", "the HCL policy file (default "+config.DefaultPath+" when it exists)")
	return cmd
}

// count says "2 errors, 1 warning".
func count(diags hcl.Diagnostics) string {
	var errs, warns int
	for _, d := range diags {
		if d.Severity == hcl.DiagError {
			errs++
		} else {
			warns++
		}
	}
	plural := func(n int, what string) string {
		if n == 1 {
			return "1 " + what
		}
		return fmt.Sprintf("%d %ss", n, what)
	}
	switch {
	case warns == 0:
		return plural(errs, "error")
	case errs == 0:
		return plural(warns, "warning")
	}
	return plural(errs, "error") + ", " + plural(warns, "warning")
}
