// Package cli holds the commands of the weft CLI (demo, install, upgrade,
// uninstall, check, inject, uninject, version, and the viz and jaeger
// extensions' commands), wired explicitly in NewRoot.
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
	root.AddCommand(newDemoCommand(log), newInstallCommand(), newUpgradeCommand(), newUninstallCommand(), newCheckCommand(),
		newInjectCommand(), newUninjectCommand(), newVersionCommand(), newVizCommand(), newJaegerCommand())
	return root
}

func newVersionCommand() *cobra.Command {
	var k kubeFlags
	var client bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the client's version and the control plane's",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(cmd.OutOrStdout(), "Client version: %s\n", version.Version)
			if client {
				return nil
			}
			server := "unavailable"
			if c, _, err := k.clients(); err == nil {
				if v, err := serverVersion(cmd.Context(), c, k.namespace); err == nil {
					server = v
				}
			}
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "Server version: %s\n", server)
			return err
		},
	}
	k.add(cmd)
	cmd.Flags().BoolVar(&client, "client", false, "print the client's version only")
	return cmd
}
