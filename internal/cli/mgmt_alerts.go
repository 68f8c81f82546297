package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"nightshift/alert"
	"nightshift/alert/notify"
	"nightshift/bootlevel"
	"nightshift/internal/app"
	"nightshift/internal/clikit"
	"nightshift/internal/runlayout"
	"nightshift/mgmt"
)

func init() { registerMgmt(newAlertsCmd) }

func newAlertsCmd(m *mgmtCmd) *cobra.Command {
	var recent time.Duration
	c := &cobra.Command{
		Use:   "alerts RUN",
		Short: "alerts firing now and resolved recently (docs/alerts.md)",
		Example: `  mgmt alerts hello
  mgmt alerts hello --recent 24h --json`,
		Args: clikit.Args(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			run, err := runArg(args[0])
			if err != nil {
				return err
			}
			return m.alerts(cmd.Context(), run, recent)
		},
	}
	c.Flags().DurationVar(&recent, "recent", mgmt.DefaultAlertsRecent, "list alerts resolved within this long")
	return c
}

// alerts is `mgmt alerts RUN`; the logic is mgmt.ShowAlerts.
func (m *mgmtCmd) alerts(ctx context.Context, run string, recent time.Duration) error {
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
		Journal: runlayout.Of(m.home, run).Alerts(), JSON: m.asJSON, Recent: recent, Now: time.Now(),
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
		fmt.Sprintf("teardown of run %s left %d resource(s) behind: %s", rep.Run, len(rep.Remaining), strings.Join(mgmt.ItemStrings(rep.Remaining), "; ")),
		map[string]any{"remaining": rep.Remaining}, now)
	ctx, cancel := context.WithTimeout(ctx, teardownAlertTimeout)
	defer cancel()
	d.DeliverNow(ctx, ev)
}
