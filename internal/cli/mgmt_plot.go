package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"nightshift/internal/app"
	"nightshift/launchplan"
	"nightshift/mgmt"
)

// plot is `mgmt plot RUN JOB [--since 1h] -o FILE.svg`: a pool's history
// drawn into a file (mgmt.Plot). Flags may come before or after the
// arguments.
func (m *mgmtCmd) plot(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("mgmt plot", flag.ContinueOnError)
	fs.SetOutput(m.stderr)
	since := fs.Duration("since", time.Hour, "how far back the plot reaches")
	out := fs.String("o", "", "the file to write (.svg)")
	var pos []string
	for rest := args; ; {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return err
			}
			return &app.UsageError{Err: err}
		}
		if fs.NArg() == 0 {
			break
		}
		pos, rest = append(pos, fs.Arg(0)), fs.Args()[1:]
	}
	if len(pos) != 2 {
		return app.Usagef("want RUN and JOB, got %d argument(s) (see mgmt help)", len(pos))
	}
	if err := launchplan.CheckRunName(pos[0]); err != nil {
		return &app.UsageError{Err: err}
	}
	if *out == "" {
		return app.Usagef("-o FILE.svg is required")
	}
	a, err := m.open(ctx)
	if err != nil {
		return err
	}
	defer a.Close()
	m.learn(ctx, a, pos[0])
	err = mgmt.Plot(ctx, mgmt.PlotOptions{Open: app.OpenHistory, Home: m.home, Run: pos[0], Job: pos[1], Since: *since, Now: time.Now(),
		Out: *out, Redact: m.red.String})
	if err != nil {
		return err
	}
	fmt.Fprintf(m.stdout, "wrote %s\n", m.line(*out))
	return nil
}
