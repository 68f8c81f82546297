package cli

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"nightshift/internal/app"
	"nightshift/internal/clikit"
	"nightshift/internal/termtext"
)

func init() { registerMgmt(newRepairCmd) }

func newRepairCmd(m *mgmtCmd) *cobra.Command {
	var max int
	c := &cobra.Command{
		Use:   "repair RUN",
		Short: "re-verify every service and restart failed ones",
		Example: `  mgmt repair hello
  mgmt repair hello --max-restarts 5`,
		Args:        clikit.Args(1, 1),
		Annotations: map[string]string{noJSON: "mgmt repair prints text only"},
		RunE: func(cmd *cobra.Command, args []string) error {
			run, err := runArg(args[0])
			if err != nil {
				return err
			}
			return m.repair(cmd.Context(), run, max)
		},
	}
	c.Flags().IntVar(&max, "max-restarts", 2, "restart a failed service at most this many times")
	return c
}

func (m *mgmtCmd) repair(ctx context.Context, run string, max int) error {
	a, err := m.open(ctx)
	if err != nil {
		return err
	}
	defer a.Close()
	if _, err := a.Store.GetRun(ctx, run); err != nil {
		return err
	}
	m.learn(ctx, a, run)
	release, err := app.LockRun(m.home, run, "mgmt repair")
	if err != nil {
		return err
	}
	defer release()
	os.Setenv(app.HomeEnv, m.home)
	rep, err := a.Engine.Repair(ctx, run, max)
	if rep != nil {
		for _, f := range rep.Failures {
			fmt.Fprintln(m.stderr, "  "+indent(termtext.Text(m.red.String(f.Error()))))
		}
		fmt.Fprintf(m.stdout, "run %s is %s\n", m.line(rep.Run), rep.State)
	}
	return err
}
