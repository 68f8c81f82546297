package localworker_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"nightshift"
	"nightshift/internal/store/provstore"
	"nightshift/internal/worker/localworker"
	"nightshift/provisioner"
	"nightshift/provisioner/provisionertest"
)

// TestKilledInstanceIsReportedDisappeared runs the provisioner core over the
// real driver and store: an instance killed with SIGKILL behind the
// provisioner's back is failed with reason "disappeared" by the next
// reconcile, and a restarted provisioner on the same files adopts the
// survivors instead of launching them again.
func TestKilledInstanceIsReportedDisappeared(t *testing.T) {
	home := t.TempDir()
	t.Cleanup(func() { localworker.Sweep(context.Background(), home, "r1") })
	st, err := provstore.Open(context.Background(), filepath.Join(home, "p.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	drv, err := localworker.New(localworker.Config{Home: home, Run: "r1", Command: []string{"sleep", "300"}, Grace: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	newProv := func() (*provisioner.Provisioner, func()) {
		p, err := provisioner.New(provisioner.Config{Run: "r1", Driver: drv, Store: st, Log: slog.New(slog.DiscardHandler), ReconcileEvery: -1, Jobs: provisionertest.Jobs("web")})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { p.Run(ctx); close(done) }()
		<-p.Ready()
		return p, func() { cancel(); <-done }
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	p, stop := newProv()
	insts, err := p.Launch(ctx, provisionertest.Launch(provisionertest.Jobs("web"), "L1", "web", 2))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	victim, _ := st.Instance(ctx, insts[0].ID)
	survivor, _ := st.Instance(ctx, insts[1].ID)
	if victim.State != nightshift.StateRunning || victim.PID == 0 {
		t.Fatalf("instance not running: %+v", victim)
	}
	// Killed while no provisioner runs, so only the start-up reconcile can
	// notice (TestExitIsRecordedAtOnce covers a running provisioner).
	stop()
	syscall.Kill(-victim.PID, syscall.SIGKILL)
	// The kill is asynchronous; wait for the driver to stop listing it.
	for {
		owned, _ := drv.List(ctx)
		if len(owned) == 1 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("driver still lists %+v", owned)
		}
		time.Sleep(10 * time.Millisecond)
	}

	p, stop = newProv() // start-up reconcile
	defer stop()
	if err := p.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := st.Instance(ctx, victim.ID); got.State != nightshift.StateFailed || got.Reason != "disappeared" {
		t.Errorf("killed instance: %s %q, want failed \"disappeared\"", got.State, got.Reason)
	}
	got, _ := st.Instance(ctx, survivor.ID)
	if got.State != nightshift.StateRunning || got.PID != survivor.PID {
		t.Errorf("survivor: %s pid %d, want still running as pid %d", got.State, got.PID, survivor.PID)
	}
	if _, err := p.TerminateAll(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	if owned, _ := localworker.ListOwned(home, "r1"); len(owned) != 0 {
		t.Errorf("after terminate_all the driver still owns %+v", owned)
	}
}

// TestExitIsRecordedAtOnce: a running provisioner is the parent of the
// instances it started, so it records one that dies the moment it is
// reaped, with no reconcile, and its controller can replace it within a
// tick instead of waiting for the heartbeat timeout. An instance it
// terminates itself is recorded terminated, not failed.
func TestExitIsRecordedAtOnce(t *testing.T) {
	home := t.TempDir()
	t.Cleanup(func() { localworker.Sweep(context.Background(), home, "r2") })
	st, err := provstore.Open(context.Background(), filepath.Join(home, "p.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	drv, err := localworker.New(localworker.Config{Home: home, Run: "r2", Command: []string{"sleep", "300"}, Grace: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	p, err := provisioner.New(provisioner.Config{Run: "r2", Driver: drv, Store: st, Log: slog.New(slog.DiscardHandler), ReconcileEvery: -1, Jobs: provisionertest.Jobs("web")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	<-p.Ready()
	insts, err := p.Launch(ctx, provisionertest.Launch(provisionertest.Jobs("web"), "L1", "web", 2))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	victim, _ := st.Instance(ctx, insts[0].ID)
	syscall.Kill(-victim.PID, syscall.SIGKILL)
	for {
		got, _ := st.Instance(ctx, victim.ID)
		if got.State == nightshift.StateFailed {
			if got.Reason != "exited: process signal: killed" {
				t.Fatalf("reason %q, want the exit named", got.Reason)
			}
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("killed instance still %s: the exit was not recorded", got.State)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := p.Terminate(ctx, []string{insts[1].ID}); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // let the reaped exit arrive, if it wrongly counted
	if got, _ := st.Instance(ctx, insts[1].ID); got.State != nightshift.StateTerminated {
		t.Fatalf("terminated instance is %s %q, want terminated", got.State, got.Reason)
	}
}
