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

func init() { registerMgmt(newPlotCmd) }

func newPlotCmd(m *mgmtCmd) *cobra.Command {
	var since time.Duration
	var out string
	c := &cobra.Command{
		Use:   "plot RUN JOB -o FILE.svg|FILE.png",
		Short: "draw a pool's desired size, running workers and queue depth over time, each decision marked",
		Long: `plot draws a pool's history, as the controller sampled it every second,
into a file for a report or a ticket: desired size and running workers on
the left axis, queue depth on the right, and each decision marked on the
time axis. In an SVG each marker's title is the decision's reason (shown on
hover); a PNG carries the same picture, drawn at twice the size.`,
		Example: `  mgmt plot local work -o work.svg
  mgmt plot local work --since 10m -o work.png`,
		Args:              clikit.Args(2, 2),
		Annotations:       map[string]string{noJSON: "mgmt plot writes an SVG or PNG file"},
		ValidArgsFunction: m.completeArgs(runNames, jobNames),
		RunE: func(cmd *cobra.Command, args []string) error {
			run, err := runArg(args[0])
			if err != nil {
				return err
			}
			if out == "" {
				return app.Usagef("-o FILE.svg or -o FILE.png is required")
			}
			return m.plot(cmd.Context(), run, args[1], since, out)
		},
	}
	c.Flags().DurationVar(&since, "since", time.Hour, "how far back the plot reaches")
	c.Flags().StringVarP(&out, "output", "o", "", "the file to write (.svg or .png)")
	return c
}

// plot draws a pool's history into a file (mgmt.Plot).
func (m *mgmtCmd) plot(ctx context.Context, run, job string, since time.Duration, out string) error {
	a, err := m.open(ctx)
	if err != nil {
		return err
	}
	defer a.Close()
	m.learn(ctx, a, run)
	err = mgmt.Plot(ctx, mgmt.PlotOptions{Open: app.OpenHistory, Home: m.home, Run: run, Job: job, Since: since, Now: time.Now(),
		Out: out, Redact: m.red.String})
	if err != nil {
		return err
	}
	fmt.Fprintf(m.stdout, "wrote %s\n", m.line(out))
	return nil
}
