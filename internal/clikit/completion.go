package clikit

import (
	"fmt"

	"github.com/spf13/cobra"
)

// AddCompletion gives root a `completion bash|zsh|fish` command that
// prints the shell's completion script. Cobra's own is only added to roots
// with subcommands, and launch has none; this one is the same for all
// three binaries. The scripts call the binary back (its hidden __complete
// command), so run, service, job, worker and task names come from the
// home or the sitter at the time of completion.
func AddCompletion(root *cobra.Command) {
	root.CompletionOptions.DisableDefaultCmd = true
	name := root.Name()
	root.AddCommand(&cobra.Command{
		Use:   "completion bash|zsh|fish",
		Short: "print the shell completion script",
		Long: fmt.Sprintf(`completion prints a script that makes the shell complete %s's commands,
flags and names (runs, services, jobs, workers, tasks) as they are now.`, name),
		Example: fmt.Sprintf(`  source <(%[1]s completion bash)
  %[1]s completion zsh > "${fpath[1]}/_%[1]s"
  %[1]s completion fish > ~/.config/fish/completions/%[1]s.fish`, name),
		ValidArgs: []string{"bash", "zsh", "fish"},
		Args:      cobra.MatchAll(cobra.ExactArgs(1), cobra.OnlyValidArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(out, true)
			case "zsh":
				return root.GenZshCompletion(out)
			default:
				return root.GenFishCompletion(out, true)
			}
		},
	})
}
