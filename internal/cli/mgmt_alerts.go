package cli

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"time"

	"nightshift/alert"
	"nightshift/alert/notify"
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
// something behind (see raiseTeardownLeftovers).
func (m *mgmtCmd) teardownAlert(ctx context.Context, a *app.App, run string, rep *mgmt.TeardownReport) {
	var cfg *alert.Config
	if r, err := a.Store.GetRun(ctx, run); err == nil {
		if p, err := bootlevel.LoadRunPlan(r); err == nil {
			cfg = p.Alerts
		}
	}
	raiseTeardownLeftovers(ctx, runlayout.Of(m.home, run).Alerts(), cfg, rep, m.red.String, time.Now())
}

// teardownAlertTimeout bounds how long teardown waits for its sinks.
const teardownAlertTimeout = 30 * time.Second

// raiseTeardownLeftovers raises teardown_leftovers when rep, a finished
// teardown (not a dry run), left something behind: journaled, and
// delivered to the sinks of cfg (the run's [alerts]; nil: none) before it
// returns, within a bound, since the process is about to exit.
func raiseTeardownLeftovers(ctx context.Context, journal string, cfg *alert.Config, rep *mgmt.TeardownReport, redact func(string) string, now time.Time) {
	if rep == nil || rep.DryRun || len(rep.Remaining) == 0 {
		return
	}
	d := notify.New(notify.Options{Journal: notify.NewJournal(journal), Redact: redact})
	if cfg != nil {
		d.Configure(*cfg)
	}
	ev := alert.Once(rep.Run, alert.TeardownLeftovers, "", alert.Critical,
		fmt.Sprintf("teardown of run %s left %d resource(s) behind: %s", rep.Run, len(rep.Remaining), strings.Join(rep.Remaining, "; ")),
		map[string]any{"remaining": rep.Remaining}, now)
	ctx, cancel := context.WithTimeout(ctx, teardownAlertTimeout)
	defer cancel()
	d.DeliverNow(ctx, ev)
}
