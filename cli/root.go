// Package cli is kwarp's command line: one cobra command per verb of the user's surface in
// DESIGN.md (exec, ls, port-forward, verify-config, doctor, version). Commands parse flags and
// hand the work to the packages that own it; they hold no logic of their own beyond that.
package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/kwarp-dev/kwarp/kube"
	"github.com/kwarp-dev/kwarp/logging"
)

// Exit codes of kwarp's own failures; a user's command exits with its own status.
const (
	ExitOK      = 0
	ExitFailure = 1 // an unexpected failure of kwarp itself
	ExitUsage   = 2 // bad flags, arguments or policy
	ExitCluster = 3 // the cluster or the agent failed
)

// ExitError carries the exit code a failure should end kwarp with.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// UsageError marks err as the user's mistake in flags or arguments (exit 2).
func UsageError(err error) error { return &ExitError{Code: ExitUsage, Err: err} }

// globals are the flags every command shares.
type globals struct {
	logLevel string
	kube     kube.Flags
	log      zerolog.Logger
}

// NewRoot builds the command tree. stdout and stderr are passed in so tests can read them.
func NewRoot(stdout, stderr io.Writer) *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "kwarp",
		Short: "Run a local process in the context of a Kubernetes pod",
		Long: `kwarp runs a process on this machine as if it ran inside a Kubernetes pod: it sees the
pod's environment and files, resolves names and opens connections from inside the cluster,
and receives the pod's incoming traffic, while the deployed version keeps serving.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			level, err := logging.Resolve(g.logLevel)
			if err != nil {
				return UsageError(err)
			}
			g.log = logging.New(stderr, level, "cli")
			return nil
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return UsageError(err) })

	pf := root.PersistentFlags()
	pf.StringVar(&g.logLevel, "log-level", "", "log level: trace, debug, info, warn, error, disabled (default warn; env "+logging.LevelEnv+")")
	pf.StringVar(&g.kube.Kubeconfig, "kubeconfig", "", "path to the kubeconfig file (default $KUBECONFIG or ~/.kube/config)")
	pf.StringVar(&g.kube.Context, "context", "", "the kubeconfig context to use")
	pf.StringVarP(&g.kube.Namespace, "namespace", "n", "", "the namespace (default: the context's namespace)")

	root.AddCommand(newVersionCmd())
	root.AddCommand(newLsCmd(g))
	root.AddCommand(newDoctorCmd(g))
	root.AddCommand(newAgentPingCmd(g))
	root.AddCommand(newVerifyConfigCmd())
	root.AddCommand(newExecCmd(g))
	root.AddCommand(newPortForwardCmd(g))
	root.AddCommand(newPluginCmd())
	root.AddCommand(newLaunchCmd())
	return root
}

// Execute runs kwarp with args and returns the process exit code.
func Execute(args []string, stdout, stderr io.Writer) int {
	root := NewRoot(stdout, stderr)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return ExitOK
	}
	var ee *ExitError
	if errors.As(err, &ee) && ee.Err == errSilent {
		return ee.Code
	}
	fmt.Fprintf(stderr, "kwarp: %v\n", err)
	if errors.As(err, &ee) {
		return ee.Code
	}
	if isCobraUsageError(err) {
		fmt.Fprintln(stderr, "Run 'kwarp --help' for usage.")
		return ExitUsage
	}
	return ExitFailure
}

// isCobraUsageError recognises the errors cobra returns for an unknown command or a wrong
// number of arguments, which it does not type.
func isCobraUsageError(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "accepts ", "requires at least", "requires at most"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// Main is the entry point of cmd/kwarp.
func Main() { os.Exit(Execute(os.Args[1:], os.Stdout, os.Stderr)) }
