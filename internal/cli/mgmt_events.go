package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"nightshift/alert/journal"
	"nightshift/bootlevel"
	"nightshift/controller"
	"nightshift/internal/app"
	"nightshift/internal/clikit"
	"nightshift/internal/runlayout"
	"nightshift/mgmt"
	"nightshift/mgmt/mgmtbus"
)

func init() { registerMgmt(newEventsCmd) }

type eventsOptions struct {
	follow   bool
	filter   mgmt.EventFilter
	since    time.Duration
	interval time.Duration
}

func newEventsCmd(m *mgmtCmd) *cobra.Command {
	var o eventsOptions
	c := &cobra.Command{
		Use:   "events RUN",
		Short: "the run's history, its pools' decisions and its alerts in one time-ordered stream",
		Long: `events shows the run's history (levels, services, steps, states), the
decisions of its pools' engines and its alerts (firing, resolved, and each
delivery to a sink, from the run's alert journal) in one stream, oldest
first, like kubectl get events. --json prints one JSON object per line. --follow keeps printing
new events until interrupted.`,
		Example: `  mgmt events hello
  mgmt events hello --follow --service echo
  mgmt events hello --job work --type decision --since 10m
  mgmt events hello --type alert --since 1h
  mgmt events hello --json | jq -c 'select(.type == "step.failed")'`,
		Args: clikit.Args(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			run, err := runArg(args[0])
			if err != nil {
				return err
			}
			if o.since < 0 {
				return app.Usagef("--since %s: want a positive duration", o.since)
			}
			if o.since > 0 {
				o.filter.Since = time.Now().Add(-o.since)
			}
			return m.events(cmd.Context(), run, o)
		},
	}
	f := c.Flags()
	f.BoolVarP(&o.follow, "follow", "f", false, "keep printing new events until interrupted")
	f.StringVar(&o.filter.Service, "service", "", "only events of this service")
	f.StringVar(&o.filter.Job, "job", "", "only decisions of this job's pool")
	f.StringVar(&o.filter.Type, "type", "", "only events of this type (decision, service.state, step, step.failed, alert, alert.firing, ...)")
	f.DurationVar(&o.since, "since", 0, "only events of the last D (e.g. 10m, 2h)")
	f.DurationVar(&o.interval, "interval", time.Second, "with --follow: how often to look for new events")
	return c
}

func (m *mgmtCmd) events(ctx context.Context, run string, o eventsOptions) error {
	a, err := m.open(ctx)
	if err != nil {
		return err
	}
	defer a.Close()
	r, err := a.Store.GetRun(ctx, run)
	if err != nil {
		return err
	}
	m.learn(ctx, a, run)
	var pools *mgmtbus.Conn
	if r.State != bootlevel.RunTerminated && hasPools(ctx, a, run) {
		if conn, err := mgmtbus.Dial(ctx, a.Store, m.home, run, 3*time.Second); err != nil {
			fmt.Fprintf(m.stderr, "note: no decisions: %s\n", m.line(err.Error()))
		} else {
			defer conn.Close()
			pools = conn
		}
	}
	var afterSeq int64
	lastDecision := map[string]int64{}
	journalPath := runlayout.Of(m.home, run).Alerts()
	alertsSeen := 0
	for {
		hist, err := a.Store.Events(ctx, run, afterSeq)
		if err != nil {
			return err
		}
		if len(hist) > 0 {
			afterSeq = hist[len(hist)-1].Seq
		}
		var decs []controller.Decision
		if pools != nil {
			decs = newDecisions(ctx, pools, run, o.filter.Job, lastDecision)
		}
		// The journal only grows: what is new is what lies past the
		// records already shown.
		recs, err := journal.ReadJournal(journalPath)
		if err != nil {
			fmt.Fprintf(m.stderr, "note: alerts: %s\n", m.line(err.Error()))
		}
		var newAlerts []journal.Record
		if len(recs) > alertsSeen {
			newAlerts = recs[alertsSeen:]
		}
		first := int64(alertsSeen + 1)
		alertsSeen = max(alertsSeen, len(recs))
		for _, e := range mgmt.Merge(hist, decs, newAlerts, first, o.filter) {
			e.Message = m.red.String(e.Message)
			if m.asJSON {
				if err := m.jsonLine(e); err != nil {
					return err
				}
				continue
			}
			fmt.Fprintln(m.stdout, mgmt.EventLine(e))
		}
		if !o.follow {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(o.interval):
		}
	}
}

// newDecisions fetches the pools' decisions after the last seen of each
// job (at most the newest 500 each), oldest first.
func newDecisions(ctx context.Context, pools *mgmtbus.Conn, run, onlyJob string, last map[string]int64) []controller.Decision {
	st, err := pools.Jobs(ctx, run)
	if err != nil {
		return nil
	}
	var out []controller.Decision
	for _, j := range st {
		if onlyJob != "" && j.Name != onlyJob {
			continue
		}
		ds, err := pools.Decisions(ctx, j.Name, 500)
		if err != nil {
			continue
		}
		for _, d := range ds {
			if d.Seq > last[j.Name] {
				out = append(out, d)
			}
		}
		for _, d := range ds {
			last[j.Name] = max(last[j.Name], d.Seq)
		}
	}
	return out
}

// jsonLine prints v as one line of JSON (newline-delimited JSON, for
// streams), redacted like json.
func (m *mgmtCmd) jsonLine(v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	line, err := m.red.JSON(raw)
	if err != nil {
		return err
	}
	_, err = m.stdout.Write(append(line, '\n'))
	return err
}
