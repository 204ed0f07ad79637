package cli

import (
	"github.com/spf13/cobra"

	"github.com/kwarp-dev/kwarp/version"
)

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print kwarp's version, commit, default agent image and Go version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := cmd.OutOrStdout().Write([]byte(version.String("kwarp")))
			return err
		},
	}
}
