package cli

import (
	"context"

	"nightshift/bootlevel"
	"nightshift/internal/app"
	"nightshift/internal/worker/localworker"
	"nightshift/keeper"
	"nightshift/mgmt"
)

// livePools reports whether run is live and has pools to ask its
// controller about.
func livePools(ctx context.Context, a *app.App, run string) bool {
	r, err := a.Store.GetRun(ctx, run)
	return err == nil && r.State != bootlevel.RunTerminated && hasPools(ctx, a, run)
}

// runStatus is what `mgmt status` (and `mgmt dashboard`) shows of run: its
// levels from the store, its pools from jobs (nil when it has none or they
// are out of reach, note saying why), and its processes on this host. When
// the pools cannot be read the levels are still shown, with a note.
func runStatus(ctx context.Context, a *app.App, home, run string, jobs mgmt.JobSource, note string) (*mgmt.RunStatus, error) {
	st, err := mgmt.Status(ctx, a.Store, run, jobs)
	if err != nil && jobs != nil {
		// The controller may be down: still show the levels.
		note = "pools unavailable: " + err.Error()
		st, err = mgmt.Status(ctx, a.Store, run, nil)
	}
	if err != nil {
		return nil, err
	}
	if note != "" {
		st.Notes = append(st.Notes, note)
	}
	if id, ok := localworker.ReadIdentity(home, run); ok && !id.Isolated {
		st.Notes = append(st.Notes, localworker.NotIsolatedNote(id.User))
	}
	if procs := processes(ctx, a, home, run); procs != nil {
		mgmt.MarkProcesses(st, procs)
		st.KeeperMetricsURL = keeper.MetricsURL(home, run)
	}
	return st, nil
}
