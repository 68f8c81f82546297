package bootlevel

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"nightshift/launchplan"
)

// CheckResult is one service's answer to a read-only ready check.
type CheckResult struct {
	Service string       `json:"service"`
	Level   int          `json:"level"`
	State   ServiceState `json:"state"`
	// Checked is false when the service has nothing to check (pending,
	// terminated, or no ready program); Skipped then says why.
	Checked bool   `json:"checked"`
	Skipped string `json:"skipped,omitempty"`
	OK      bool   `json:"ok"`
	// Error says why the check failed, with the tail of its output.
	Error   string        `json:"error,omitempty"`
	Elapsed time.Duration `json:"elapsed_ns"`
}

// Check runs the ready program of every booted service of run once, all
// at the same time, each bounded by timeout, and records nothing: no
// state, no event, no line in a service's log (the checks' output goes to
// a private temporary directory, removed before Check returns). It takes
// no lock, so it may run beside a launch or repair that holds the run:
// this is `mgmt status --verify`, which a monitoring check may call every
// second. Verify, by contrast, retries and writes what it finds.
func (e *Engine) Check(ctx context.Context, run string, timeout time.Duration) ([]CheckResult, error) {
	r, err := e.open(ctx, run)
	if err != nil {
		return nil, fmt.Errorf("check run %s: %w", run, err)
	}
	if r.run.State == RunTerminated {
		return nil, fmt.Errorf("check run %s: the run is terminated", run)
	}
	tmp, err := os.MkdirTemp("", "nightshift-check-")
	if err != nil {
		return nil, fmt.Errorf("check run %s: %w", run, err)
	}
	defer os.RemoveAll(tmp)
	out := make([]CheckResult, len(r.order))
	var wg sync.WaitGroup
	for i, name := range r.order {
		svc := r.svcs[name]
		rec := r.get(name)
		out[i] = CheckResult{Service: name, Level: svc.Level, State: rec.State}
		switch {
		case rec.State == ServicePending || rec.State == ServiceTerminated:
			out[i].Skipped = "service is " + string(rec.State)
			continue
		case !hasStep(svc, svc.Ready):
			out[i].Skipped = "no ready program"
			out[i].OK = rec.State == ServiceReady
			continue
		}
		wg.Go(func() {
			start := r.clock.Now()
			se := r.checkOnce(ctx, svc, filepath.Join(tmp, name+".log"), timeout)
			out[i].Checked, out[i].Elapsed = true, r.clock.Now().Sub(start)
			if se != nil {
				out[i].Error = r.scrub(se.Error())
				return
			}
			out[i].OK = true
		})
	}
	wg.Wait()
	return out, nil
}

// checkOnce runs svc's ready program once with its output in logPath.
func (r *runner) checkOnce(ctx context.Context, svc *launchplan.Service, logPath string, timeout time.Duration) *StepError {
	drv, err := r.driver(svc)
	if err != nil {
		return &StepError{Run: r.run.Name, Service: svc.Name, Level: svc.Level, Step: StepReady, ExitCode: NoExit, Err: err}
	}
	exp, env, err := r.expand(svc, StepReady)
	if err != nil {
		return &StepError{Run: r.run.Name, Service: svc.Name, Level: svc.Level, Step: StepReady, ExitCode: NoExit, Err: err}
	}
	_, se := r.step(ctx, drv, exp, env, StepReady, exp.Ready, timeout, logPath, false)
	if se != nil {
		se.Run, se.Service, se.Level, se.LogPath = r.run.Name, svc.Name, svc.Level, ""
	}
	return se
}
