package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"nightshift"
	"nightshift/internal/amqpbus"
	"nightshift/internal/envelope"
	"nightshift/internal/jobspec"
	"nightshift/internal/leader"
	"nightshift/internal/store/pgdb"
	"nightshift/internal/store/pgdb/pgtest"
	"nightshift/internal/testsupport"
	"nightshift/internal/testsupport/amqptest"
	"nightshift/internal/worker/localworker"
	"nightshift/provisioner"
	"nightshift/provisioner/client"
	"nightshift/provisioner/provisionertest"
)

// TestReplicasOnPostgres: provisioner replicas share a PostgreSQL store.
// The first started holds the lease and serves; the second stands by. The
// active one is killed -9 mid-run: the standby takes over at the next
// epoch, finds the instances its predecessor launched, and launches more.
// Then the new active one is paused (SIGSTOP) until a third replica took
// over; resumed, it exits non-zero without serving, as a deposed leader
// must. The store's password never reaches a log.
func TestReplicasOnPostgres(t *testing.T) {
	amqptest.NeedBroker(t)
	pgURL := pgtest.Need(t)
	run := amqptest.UniqueName(t, "provha")
	deleteTopology(t, run)
	// The schema the daemons derive from the run; dropped at the end.
	t.Cleanup(func() { pgtest.Drop(t, pgURL, pgdb.SchemaName("ns", run, "provisioner")) })
	bin := filepath.Join(t.TempDir(), "provisioner")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	home := t.TempDir()
	secret, err := envelope.LoadOrCreateSecret(filepath.Join(home, "runs", run, "secret"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		localworker.Sweep(context.Background(), home, run)
		localworker.RemoveWorkerDirs(home, run) // outside home, as root
	})
	jobs := provisionertest.Jobs("web")
	jobsFile := filepath.Join(home, "jobs.json")
	if err := jobspec.Write(jobsFile, jobs); err != nil {
		t.Fatal(err)
	}
	// Trust authentication ignores the password, which lets the test
	// hand one over and look for it in the logs.
	const password = "pgSecretDoNotLog77"
	withPass := strings.Replace(pgURL, "postgres@", "postgres:"+password+"@", 1)
	if withPass == pgURL {
		t.Skipf("cannot add a password to %s", pgtest.DefaultURL)
	}
	storeFile := filepath.Join(home, "store-url")
	if err := os.WriteFile(storeFile, []byte(withPass), 0o600); err != nil {
		t.Fatal(err)
	}
	type replica struct {
		cmd        *exec.Cmd
		logs       *syncBuf
		metricsURL string
	}
	n := 0
	start := func() replica {
		n++
		logs := &syncBuf{}
		urlFile := filepath.Join(home, fmt.Sprintf("metrics-url-%d", n))
		cmd := exec.Command(bin, "--run", run, "--home", home, "--amqp-url", amqptest.URL(), "--jobs", jobsFile,
			"--worker-command", "sleep 3600", "--reconcile-every", "1s", "--grace", "1s",
			"--store-file", storeFile, "--lease", "--lease-ttl", "1s", "--metrics-addr", "127.0.0.1:0", "--metrics-url-file", urlFile)
		cmd.Stderr = logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Signal(syscall.SIGCONT); cmd.Process.Kill(); cmd.Wait() })
		var u []byte
		testsupport.Eventually(t, 30*time.Second, func() error {
			var err error
			u, err = os.ReadFile(urlFile)
			return err
		})
		return replica{cmd, logs, strings.TrimSpace(string(u))}
	}
	// lease reads a replica's lease metrics: "active epoch".
	lease := func(r replica) string {
		t.Helper()
		resp, err := http.Get(r.metricsURL)
		if err != nil {
			t.Fatalf("metrics: %v", err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var active, epoch string
		for _, line := range strings.Split(string(body), "\n") {
			if f := strings.Fields(line); len(f) == 2 && strings.HasPrefix(f[0], "nightshift_lease_active{") {
				active = f[1]
			} else if len(f) == 2 && strings.HasPrefix(f[0], "nightshift_lease_epoch{") {
				epoch = f[1]
			}
		}
		return active + " " + epoch
	}
	says := func(r replica, what string) {
		t.Helper()
		testsupport.Eventually(t, 30*time.Second, func() error {
			if !strings.Contains(r.logs.String(), what) {
				return fmt.Errorf("no %q in the log yet:\n%s", what, r.logs)
			}
			return nil
		})
	}

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	bus, err := amqpbus.Dial(ctx, amqpbus.Config{URL: amqptest.URL(), Name: "ha-client", Run: run, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	c := client.New(bus, &envelope.Signer{Secret: secret}, "ha", nil)
	runningIs := func(n int) {
		t.Helper()
		testsupport.Eventually(t, 60*time.Second, func() error {
			st, err := c.Describe(ctx, provisioner.DescribeBody{Job: "web"})
			if err != nil {
				return err
			}
			if got := countState(st, nightshift.StateRunning); got != n || len(st.Instances) != n {
				return fmt.Errorf("%d records, %d running; want %d", len(st.Instances), got, n)
			}
			return nil
		})
	}

	a := start()
	says(a, `"epoch":1`)
	b := start()
	says(b, "standby: waiting for the provisioner lease")
	if got := lease(b); got != "0 0" {
		t.Errorf("standby's lease metrics %q, want active 0 epoch 0", got)
	}
	if got := lease(a); got != "1 1" {
		t.Errorf("leader's lease metrics %q, want active 1 epoch 1", got)
	}
	if _, err := c.Launch(ctx, provisionertest.Launch(jobs, "L1", "web", 2)); err != nil {
		t.Fatal(err)
	}
	runningIs(2)
	a.cmd.Process.Signal(syscall.SIGKILL)
	a.cmd.Wait()
	says(b, `"epoch":2`)
	if got := lease(b); got != "1 2" {
		t.Errorf("new leader's lease metrics %q, want active 1 epoch 2", got)
	}
	if _, err := c.Launch(ctx, provisionertest.Launch(jobs, "L2", "web", 1)); err != nil {
		t.Fatal(err)
	}
	runningIs(3)
	owned, err := localworker.ListOwned(home, run)
	if err != nil || len(owned) != 3 {
		t.Fatalf("%d local instances (%v), want the 3 records: none lost, none doubled", len(owned), err)
	}

	// B is paused past its lease; C takes over; B, resumed, must stop.
	if err := b.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	cRep := start()
	says(cRep, `"epoch":3`)
	b.cmd.Process.Signal(syscall.SIGCONT)
	err = b.cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() == 0 {
		t.Errorf("deposed replica exit: %v, want non-zero\n%s", err, b.logs)
	}
	if testing.Verbose() {
		t.Logf("deposed replica log:\n%s", b.logs)
	}
	if s := b.logs.String(); !strings.Contains(s, leader.ErrLost.Error()) && !strings.Contains(s, "fenced") {
		t.Errorf("deposed replica's log does not say it lost the lease:\n%s", b.logs)
	}
	runningIs(3)
	for live := -1; live != 0; {
		if live, err = c.TerminateAll(ctx); err != nil {
			t.Fatal(err)
		}
		if ctx.Err() != nil {
			t.Fatalf("terminate_all never finished\n%s", cRep.logs)
		}
		time.Sleep(50 * time.Millisecond) // poll interval, not an assertion
	}
	for name, r := range map[string]replica{"a": a, "b": b, "c": cRep} {
		if strings.Contains(r.logs.String(), password) {
			t.Errorf("replica %s logged the store's password", name)
		}
	}
}
