package main

import (
	"context"
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"nightshift"
	"nightshift/internal/amqpbus"
	"nightshift/internal/envelope"
	"nightshift/internal/jobspec"
	"nightshift/internal/procscan"
	"nightshift/internal/testsupport/amqptest"
	"nightshift/internal/testsupport/syncbuf"
	"nightshift/internal/worker/localworker"
	"nightshift/provisioner"
	"nightshift/provisioner/client"
	"nightshift/provisioner/provisionertest"
)

// syncBuf is the shared concurrent-safe test buffer.
type syncBuf = syncbuf.Buffer

// TestSurvivesKill9MidLaunch is the "done when": launches go to a
// real provisioner process through the real broker, the process is
// SIGKILLed while launching, a new one starts on the same home, and the run
// ends with exactly the requested instances and no strays.
func TestSurvivesKill9MidLaunch(t *testing.T) {
	amqptest.NeedBroker(t)
	bin := filepath.Join(t.TempDir(), "provisioner")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	home := t.TempDir()
	run := amqptest.UniqueName(t, "prove2e")
	deleteTopology(t, run)
	secret, err := envelope.LoadOrCreateSecret(filepath.Join(home, "runs", run, "secret"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if killed, _ := localworker.Sweep(context.Background(), home, run); len(killed) > 0 {
			t.Errorf("swept stray instances at cleanup: %v", killed)
		}
		// As root the workers had directories of their own, outside home.
		localworker.RemoveWorkerDirs(home, run)
	})

	jobs := provisionertest.Jobs("web")
	jobsFile := filepath.Join(home, "jobs.json")
	if err := jobspec.Write(jobsFile, jobs); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuf{}
	start := func() *exec.Cmd {
		cmd := exec.Command(bin, "--run", run, "--home", home, "--amqp-url", amqptest.URL(), "--jobs", jobsFile,
			"--worker-command", "sleep 3600", "--max-launches", "2", "--reconcile-every", "1s", "--grace", "1s")
		cmd.Stderr = logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd
	}

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	subscribed := make(chan string, 1)
	bus, err := amqpbus.Dial(ctx, amqpbus.Config{URL: amqptest.URL(), Name: "e2e-client", Run: run,
		Log: slog.New(slog.DiscardHandler), OnConsume: func(q string) { subscribed <- q }})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	c := client.New(bus, &envelope.Signer{Secret: secret}, "e2e", nil)
	running := make(chan string, 100)
	go c.SubscribeEvents(ctx, []string{"instance.*.running"}, func(_ context.Context, inst provisioner.Instance) error {
		running <- inst.ID
		return nil
	})
	<-subscribed

	const launches, per = 5, 4
	send := func() {
		for i := range launches {
			env, err := envelope.NewEnvelope(provisioner.TypeLaunch, 1, run, "e2e",
				provisionertest.Launch(jobs, fmt.Sprintf("launch-%d", i), "web", per), time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if err := (&envelope.Signer{Secret: secret}).Sign(&env); err != nil {
				t.Fatal(err)
			}
			if err := bus.SendCommand(ctx, provisioner.Component, env); err != nil {
				t.Fatal(err)
			}
		}
	}

	first := start()
	send()
	// Kill it once a few instances are up: the rest are queued, recorded
	// but not launched, or mid-launch.
	for range 3 {
		select {
		case <-running:
		case <-ctx.Done():
			t.Fatalf("no instances came up before the kill; logs:\n%s", logs)
		}
	}
	first.Process.Signal(syscall.SIGKILL)
	first.Wait()

	second := start()
	send() // a client retrying after the outage must not double anything

	var st provisioner.Status
	for {
		st, err = c.Describe(ctx, provisioner.DescribeBody{Job: "web"})
		if err == nil && len(st.Instances) == launches*per && countState(st, nightshift.StateRunning) == launches*per {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("never converged: %+v, err %v\nlogs:\n%s", st, err, logs)
		case <-time.After(100 * time.Millisecond):
		}
	}
	var want []string
	for _, in := range st.Instances {
		want = append(want, in.ID)
	}
	slices.Sort(want)
	owned, err := localworker.ListOwned(home, run)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range owned {
		got = append(got, o.InstanceID)
	}
	if !slices.Equal(got, want) {
		t.Errorf("live instances %v\nwant exactly the records %v", got, want)
	}
	procs, err := procscan.Find("", home, run)
	if err != nil {
		t.Fatal(err)
	}
	if len(procs) != launches*per {
		t.Errorf("%d processes carry the run's environment, want %d: %v", len(procs), launches*per, procs)
	}

	for live := -1; live != 0; {
		if live, err = c.TerminateAll(ctx); err != nil {
			t.Fatal(err)
		}
		if ctx.Err() != nil {
			t.Fatalf("terminate_all never finished\nlogs:\n%s", logs)
		}
		time.Sleep(50 * time.Millisecond) // poll interval, not an assertion
	}
	if procs, _ := procscan.Find("", home, run); len(procs) != 0 {
		t.Errorf("processes left after terminate_all: %v", procs)
	}
	second.Process.Signal(syscall.SIGTERM)
	if err := second.Wait(); err != nil {
		t.Errorf("provisioner exit after SIGTERM: %v\nlogs:\n%s", err, logs)
	}
}

func countState(st provisioner.Status, s nightshift.InstanceState) int {
	n := 0
	for _, in := range st.Instances {
		if in.State == s {
			n++
		}
	}
	return n
}

// deleteTopology removes the run's queues and exchanges from the shared
// broker when the test ends.
func deleteTopology(t *testing.T, run string) {
	amqptest.DeleteAtEnd(t, amqptest.Topology{
		Queues:    []string{amqpbus.CommandQueue(run, provisioner.Component), amqpbus.DeadQueue(run)},
		Exchanges: []string{amqpbus.EventsExchange(run), amqpbus.DeadLetterExchange(run)},
	})
}
