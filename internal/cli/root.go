// Package cli holds the commands of the weft CLI (demo, version, and the
// install and inject commands as they land), wired explicitly in NewRoot.
package cli

import (
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/weftmesh/weft/internal/version"
)

// NewRoot returns the weft command with every subcommand.
func NewRoot(log *slog.Logger) *cobra.Command {
	root := &cobra.Command{
		Use:           "weft",
		Short:         "Weft, a service mesh for Kubernetes: the command line",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newDemoCommand(log), newInjectCommand(), newUninjectCommand(), newVersionCommand())
	return root
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the client's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "Client version: %s\n", version.Version)
			return err
		},
	}
}
