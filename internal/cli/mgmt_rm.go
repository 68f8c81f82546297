package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"nightshift/internal/app"
	"nightshift/internal/clikit"
	"nightshift/mgmt"
)

func init() {
	registerMgmt(newRmCmd)
	registerMgmt(newPruneCmd)
}

func (m *mgmtCmd) remover(a *app.App) mgmt.RunRemover {
	return mgmt.RunRemover{Store: a.Store, Home: m.home,
		Lock: func(run string) (func(), error) { return app.LockRun(m.home, run, "mgmt rm") }}
}

func newRmCmd(m *mgmtCmd) *cobra.Command {
	return &cobra.Command{
		Use:   "rm RUN...",
		Short: "remove torn-down runs: their records, logs and files",
		Long: `rm removes each named run's records, logs and files from the home. It
refuses a run that is not torn down (see mgmt teardown) or that another
command holds.`,
		Example: `  mgmt teardown hello && mgmt rm hello`,
		Args:    clikit.Args(1, -1),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, a := range args {
				if _, err := runArg(a); err != nil {
					return err
				}
			}
			return m.rm(cmd.Context(), args)
		},
	}
}

func (m *mgmtCmd) rm(ctx context.Context, runs []string) error {
	a, err := m.open(ctx)
	if err != nil {
		return err
	}
	defer a.Close()
	removed := []string{}
	var failed error
	for _, run := range runs {
		if err := m.remover(a).Remove(ctx, run); err != nil {
			fmt.Fprintf(m.stderr, "mgmt rm: %s\n", m.line(err.Error()))
			failed = fmt.Errorf("%d of %d runs not removed", len(runs)-len(removed), len(runs))
			continue
		}
		removed = append(removed, run)
		if !m.asJSON {
			fmt.Fprintf(m.stdout, "removed %s\n", m.line(run))
		}
	}
	if m.asJSON {
		if err := m.json(map[string][]string{"removed": removed}); err != nil {
			return err
		}
	}
	return failed
}

func newPruneCmd(m *mgmtCmd) *cobra.Command {
	var older time.Duration
	c := &cobra.Command{
		Use:   "prune --older-than D",
		Short: "remove torn-down runs last changed longer ago than D",
		Long: `prune removes every torn-down run whose last change is older than
--older-than, as rm does. Live runs that old are left alone and listed.`,
		Example: `  mgmt prune --older-than 168h
  mgmt prune --older-than 24h --json`,
		Args: clikit.Args(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if older <= 0 {
				return app.Usagef("--older-than: want a positive duration such as 24h")
			}
			return m.prune(cmd.Context(), older)
		},
	}
	c.Flags().DurationVar(&older, "older-than", 0, "remove torn-down runs last changed longer ago than this (required)")
	return c
}

func (m *mgmtCmd) prune(ctx context.Context, older time.Duration) error {
	a, err := m.open(ctx)
	if err != nil {
		return err
	}
	defer a.Close()
	res, err := m.remover(a).Prune(ctx, time.Now().Add(-older))
	if m.asJSON {
		if jerr := m.json(res); jerr != nil {
			return jerr
		}
		return err
	}
	for _, r := range res.Removed {
		fmt.Fprintf(m.stdout, "removed %s\n", m.line(r))
	}
	for _, r := range res.Live {
		fmt.Fprintf(m.stdout, "kept %s: live (tear it down first)\n", m.line(r))
	}
	return err
}
