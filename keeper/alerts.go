package keeper

import (
	"context"
	"log/slog"
	"time"

	"nightshift/alert"
	"nightshift/alert/journal"
	"nightshift/alert/notify"
	"nightshift/internal/redact"
	"nightshift/internal/runlayout"
)

// alerts raises daemon_restart_loop from the keeper's own account of its
// services (Core.Views), with the run's [alerts] table.
type alerts struct {
	eval     *alert.Evaluator
	dispatch *notify.Dispatcher
	last     time.Time
	cfg      *alert.Config
}

func newAlerts(ctx context.Context, home, run string, log *slog.Logger) *alerts {
	path := runlayout.Of(home, run).Alerts()
	recs, err := journal.ReadJournal(path)
	if err != nil {
		log.Warn("alert journal unreadable", "err", err)
	}
	a := &alerts{
		eval:     alert.NewEvaluator(run, alert.Config{}),
		dispatch: notify.New(notify.Options{Journal: notify.NewJournal(path), Log: log.With("part", "alerts"), Redact: redact.String}),
	}
	a.eval.Restore(alert.OfKinds(journal.Firing(recs), alert.KeeperKinds))
	go a.dispatch.Run(ctx)
	return a
}

// configure takes the run's [alerts] table when it changed.
func (a *alerts) configure(cfg *alert.Config) {
	if cfg == a.cfg {
		return
	}
	a.cfg = cfg
	var c alert.Config
	if cfg != nil {
		c = *cfg
	}
	a.eval.SetConfig(c)
	a.dispatch.Configure(c)
}

// observe evaluates the keeper's views at most once a second.
func (a *alerts) observe(now time.Time, views []View) {
	if now.Sub(a.last) < time.Second {
		return
	}
	a.last = now
	in := alert.Input{Daemons: make([]alert.Daemon, 0, len(views))}
	for _, v := range views {
		in.Daemons = append(in.Daemons, alert.Daemon{Service: v.Service, Up: v.Up, Restarts: v.Restarts, GaveUp: v.GaveUp, LastExit: v.LastExit})
	}
	a.dispatch.Publish(a.eval.Evaluate(now, in)...)
}
