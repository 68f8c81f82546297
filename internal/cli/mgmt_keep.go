package cli

import (
	"context"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"nightshift/internal/app"
	"nightshift/internal/clikit"
	"nightshift/keeper"
)

func init() { registerMgmt(newKeepCmd) }

func newKeepCmd(m *mgmtCmd) *cobra.Command {
	var metricsAddr string
	c := &cobra.Command{
		Use:   "keep RUN",
		Short: "the run's keeper: restarts its broker node and daemons when they die",
		Long: `keep runs the run's keeper until teardown stops it: it restarts the run's
broker node and daemons when they die. launch starts it; there is rarely a
reason to run it by hand. The active keeper serves Prometheus metrics
(docs/metrics.md) at the URL mgmt status --json gives as keeper_metrics_url.`,
		Example:     `  mgmt keep hello`,
		Args:        clikit.Args(1, 1),
		Annotations: map[string]string{noJSON: "mgmt keep is a daemon; its output is its log"},
		RunE: func(cmd *cobra.Command, args []string) error {
			run, err := runArg(args[0])
			if err != nil {
				return err
			}
			return m.keep(cmd.Context(), run, metricsAddr)
		},
	}
	c.Flags().StringVar(&metricsAddr, "metrics-addr", "127.0.0.1:0", "serve Prometheus metrics at http://ADDR/metrics (port 0: a free one; \"off\": none)")
	return c
}

// keep runs the run's keeper until teardown stops it (see package keeper).
func (m *mgmtCmd) keep(ctx context.Context, run, metricsAddr string) error {
	home, err := app.ResolveHome(m.homeFlag)
	if err != nil {
		return err
	}
	m.home = home
	// The keeper's own output is its log (keeper.log, opened 0600 by
	// whoever started it); the engine's steps log there too.
	log := slog.New(slog.NewTextHandler(m.stderr, nil)).With("keeper", os.Getpid())
	a, err := app.Open(ctx, home, log)
	if err != nil {
		return err
	}
	defer a.Close()
	if _, err := a.Store.GetRun(ctx, run); err != nil {
		return err
	}
	os.Setenv(app.HomeEnv, home)
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	d := &keeper.Daemon{
		Home: home, Run: run, Store: a.Store, Engine: a.Engine, Log: log,
		Lock:        func() (func(), error) { return app.LockRun(home, run, "keeper") },
		Command:     []string{exe, "--home", home, "keep", "--metrics-addr", metricsAddr, run},
		MetricsAddr: metricsAddr,
	}
	return d.Serve(ctx)
}
