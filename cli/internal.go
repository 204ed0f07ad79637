package cli

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/kwarp-dev/kwarp/core"
	"github.com/kwarp-dev/kwarp/layer/launcher"
	"github.com/kwarp-dev/kwarp/plugins/dns"
	"github.com/kwarp-dev/kwarp/plugins/env"
	"github.com/kwarp-dev/kwarp/plugins/fs"
	"github.com/kwarp-dev/kwarp/plugins/net"
	"github.com/kwarp-dev/kwarp/plugins/steal"
	"github.com/kwarp-dev/kwarp/sdk"
)

// builtinPlugins are served by `kwarp plugin NAME...`, so kwarp ships as one file.
var builtinPlugins = map[string]func() sdk.Plugin{
	"env":   func() sdk.Plugin { return env.New() },
	"fs":    func() sdk.Plugin { return fs.New() },
	"dns":   func() sdk.Plugin { return dns.New() },
	"net":   func() sdk.Plugin { return net.New() },
	"steal": func() sdk.Plugin { return steal.New() },
}

// newPluginCmd serves built-in plugins over go-plugin; the core starts it, never a user. With
// several names one process serves them all (sdk.ServeAll), as a session runs its built-ins.
func newPluginCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "plugin NAME...",
		Short:  "Serve built-in feature plugins (started by kwarp itself)",
		Hidden: true,
		Args:   cobra.MinimumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			var impls []sdk.Plugin
			for _, name := range args {
				mk, ok := builtinPlugins[name]
				if !ok {
					return UsageError(fmt.Errorf("no built-in plugin %q", name))
				}
				impls = append(impls, mk())
			}
			if len(impls) == 1 {
				sdk.Serve(impls[0])
			} else {
				sdk.ServeAll(impls...)
			}
			return nil
		},
	}
}

// newLaunchCmd is the layer's launcher: kwarp re-executes itself with it to install the
// seccomp filter and exec the user's command. It never returns.
func newLaunchCmd() *cobra.Command {
	return &cobra.Command{
		Use:                core.LaunchCommand + " -- CMD [ARGS...]",
		Hidden:             true,
		DisableFlagParsing: true,
		RunE: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 && args[0] == "--" {
				args = args[1:]
			}
			sock, err := launcher.FromEnv()
			if err != nil {
				return err
			}
			launcher.Run(sock, args, launcher.WithoutLauncherEnv(os.Environ()))
			return nil
		},
	}
}
