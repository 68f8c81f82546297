package cli

import (
	"context"
	"time"

	"github.com/spf13/cobra"

	"nightshift/internal/clikit"
	"nightshift/mgmt"
	"nightshift/mgmt/mgmtbus"
)

func init() { registerMgmt(newDecisionsCmd) }

func newDecisionsCmd(m *mgmtCmd) *cobra.Command {
	var limit int
	c := &cobra.Command{
		Use:   "decisions RUN JOB",
		Short: "a pool's decisions with their reasons, newest first",
		Example: `  mgmt decisions hello work
  mgmt decisions hello work --limit 100 --json`,
		Args:              clikit.Args(2, 2),
		ValidArgsFunction: m.completeArgs(runNames, jobNames),
		RunE: func(cmd *cobra.Command, args []string) error {
			run, err := runArg(args[0])
			if err != nil {
				return err
			}
			return m.decisions(cmd.Context(), run, args[1], limit)
		},
	}
	c.Flags().IntVar(&limit, "limit", 20, "how many decisions")
	return c
}

func (m *mgmtCmd) decisions(ctx context.Context, run, job string, limit int) error {
	a, err := m.open(ctx)
	if err != nil {
		return err
	}
	defer a.Close()
	m.learn(ctx, a, run)
	conn, err := mgmtbus.Dial(ctx, a.Store, m.home, run, 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	ds, err := conn.Decisions(ctx, job, limit)
	if err != nil {
		return err
	}
	if m.asJSON {
		return m.json(ds)
	}
	return mgmt.WriteDecisions(m.stdout, ds, m.line)
}
