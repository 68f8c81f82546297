package cli

import (
	"context"
	"flag"
	"time"

	"nightshift/alert"
	"nightshift/bootlevel"
	"nightshift/internal/app"
	"nightshift/internal/runlayout"
	"nightshift/launchplan"
	"nightshift/mgmt"
)

// alerts is `mgmt alerts [--json] [--recent D] RUN`; the logic is
// mgmt.ShowAlerts.
func (m *mgmtCmd) alerts(ctx context.Context, args []string) error {
	var asJSON *bool
	var recent *time.Duration
	fs, err := m.flags("alerts", args, 1, func(fs *flag.FlagSet) {
		asJSON = fs.Bool("json", false, "print JSON")
		recent = fs.Duration("recent", mgmt.DefaultAlertsRecent, "list alerts resolved within this long")
	})
	if err != nil {
		return err
	}
	run := fs.Arg(0)
	if err := launchplan.CheckRunName(run); err != nil {
		return &app.UsageError{Err: err}
	}
	a, err := m.open(ctx)
	if err != nil {
		return err
	}
	defer a.Close()
	if _, err := a.Store.GetRun(ctx, run); err != nil {
		return err
	}
	m.learn(ctx, a, run)
	return mgmt.ShowAlerts(ctx, mgmt.AlertsOptions{
		Journal: runlayout.Of(m.home, run).Alerts(), JSON: *asJSON, Recent: *recent, Now: time.Now(),
		Stdout: m.stdout, Line: m.line, EncodeJSON: m.red.EncodeJSON,
	})
}

// teardownAlert raises teardown_leftovers for a teardown that left
// something behind (see mgmt.RaiseTeardownLeftovers).
func (m *mgmtCmd) teardownAlert(ctx context.Context, a *app.App, run string, rep *mgmt.TeardownReport) {
	var cfg *alert.Config
	if r, err := a.Store.GetRun(ctx, run); err == nil {
		if p, err := bootlevel.LoadRunPlan(r); err == nil {
			cfg = p.Alerts
		}
	}
	mgmt.RaiseTeardownLeftovers(ctx, runlayout.Of(m.home, run).Alerts(), cfg, rep, m.red.String, time.Now())
}
