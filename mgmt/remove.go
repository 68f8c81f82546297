package mgmt

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"time"

	"nightshift/bootlevel"
	"nightshift/internal/runlayout"
	"nightshift/internal/worker/localworker"
)

// ErrLive refuses to remove a run that is not torn down: its services may
// still run, and its records are how teardown finds them.
var ErrLive = errors.New("the run is live: tear it down first")

// RunRemover removes runs from a home: their records in the store and
// their directory (logs, secret, keeper and daemon files).
type RunRemover struct {
	Store bootlevel.Store
	Home  string
	// Lock takes the run's lock for the removal, so that no launch,
	// repair or teardown works on it meanwhile.
	Lock func(run string) (release func(), err error)
}

// Remove removes one torn-down run; ErrLive for any other.
func (r RunRemover) Remove(ctx context.Context, run string) error {
	release, err := r.Lock(run)
	if err != nil {
		return err
	}
	defer release()
	// Read under the lock: a launch may have revived the run just before.
	rec, err := r.Store.GetRun(ctx, run)
	if err != nil {
		return err
	}
	if rec.State != bootlevel.RunTerminated {
		return fmt.Errorf("run %s is %s: %w (mgmt teardown %s)", run, rec.State, ErrLive, run)
	}
	// Files first: records without files can be removed again, files
	// without records would be found by nothing. Isolated workers' own
	// directories are found through the run's, so they go before it.
	if err := localworker.RemoveWorkerDirs(r.Home, run); err != nil {
		return fmt.Errorf("remove run %s: %w", run, err)
	}
	if err := os.RemoveAll(runlayout.Of(r.Home, run).Dir()); err != nil {
		return fmt.Errorf("remove run %s: %w", run, err)
	}
	if err := r.Store.DeleteRun(ctx, run); err != nil {
		return fmt.Errorf("remove run %s: %w", run, err)
	}
	return nil
}

// PruneResult says what Prune removed, and which old runs it left
// because they are live.
type PruneResult struct {
	Removed []string `json:"removed"`
	Live    []string `json:"live"`
}

// Prune removes every torn-down run last changed before cutoff. Live runs
// that old are left and listed; errors are joined, and the rest go on.
func (r RunRemover) Prune(ctx context.Context, cutoff time.Time) (PruneResult, error) {
	res := PruneResult{Removed: []string{}, Live: []string{}}
	runs, err := r.Store.ListRuns(ctx)
	if err != nil {
		return res, err
	}
	sort.Slice(runs, func(i, j int) bool { return runs[i].Name < runs[j].Name })
	var errs []error
	for _, run := range runs {
		if !run.Updated.Before(cutoff) {
			continue
		}
		switch err := r.Remove(ctx, run.Name); {
		case err == nil:
			res.Removed = append(res.Removed, run.Name)
		case errors.Is(err, ErrLive):
			res.Live = append(res.Live, run.Name)
		default:
			errs = append(errs, err)
		}
	}
	return res, errors.Join(errs...)
}
