package bootlevel

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"nightshift/launchplan"
)

// TestGoneReadyIsNotRetried: a driver that knows the service's process is
// dead says so, and the engine fails the check at once instead of retrying
// for the whole ready timeout (repair of a killed daemon would otherwise
// wait minutes before restarting it).
func TestGoneReadyIsNotRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		drv := &fakeDriver{script: func(_ context.Context, req StepRequest) (StepResult, error) {
			if req.Step == StepReady {
				return StepResult{ExitCode: 1, Gone: true, Tail: []string{"not running"}}, nil
			}
			return StepResult{}, nil
		}}
		e, _ := newEngine(t, drv)
		svc := service("daemon")
		svc.ReadyTimeout = 10 * time.Minute
		start := time.Now()
		_, err := e.Launch(t.Context(), plan([]launchplan.Service{svc}), LaunchOptions{Run: "gone"})
		if err == nil {
			t.Fatal("launch passed with a dead service")
		}
		if n := drv.count("daemon", StepReady); n != 1 {
			t.Fatalf("%d ready attempts, want 1", n)
		}
		if waited := time.Since(start); waited > time.Second {
			t.Fatalf("waited %s (fake time) before failing", waited)
		}
	})
}
