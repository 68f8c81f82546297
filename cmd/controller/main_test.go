package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"nightshift"
	"nightshift/controller"
	"nightshift/controller/ctlbus"
	"nightshift/internal/amqpbus"
	"nightshift/internal/envelope"
	"nightshift/internal/store/pgdb"
	"nightshift/internal/store/pgdb/pgtest"
	"nightshift/internal/testsupport"
	"nightshift/internal/testsupport/amqptest"
	"nightshift/internal/testsupport/syncbuf"
	"nightshift/provisioner"
)

// fakeProvisioner serves the provisioner's bus protocol from the test
// process, deduping launches by id like the real one. It withholds the
// reply to the first launch, so the controller is killed with that launch
// in flight.
type fakeProvisioner struct {
	mu        sync.Mutex
	launches  []provisioner.LaunchRequest
	byLaunch  map[string][]provisioner.Instance
	describes int
}

func (f *fakeProvisioner) handle(ctx context.Context, bus *amqpbus.Bus, reg *envelope.Registry, d amqpbus.Delivery) error {
	_, body, err := amqpbus.DecodeOrReject(reg, slog.New(slog.DiscardHandler), d)
	if err != nil {
		return err
	}
	var r provisioner.Reply
	withhold := false
	f.mu.Lock()
	switch b := body.(type) {
	case *provisioner.LaunchRequest:
		f.launches = append(f.launches, *b)
		insts, ok := f.byLaunch[b.LaunchID]
		if !ok {
			now := time.Now().UTC()
			for i := range b.Count {
				insts = append(insts, provisioner.Instance{ID: provisioner.InstanceID(b.Job, b.LaunchID, i), Job: b.Job,
					LaunchID: b.LaunchID, Index: i, State: nightshift.StateRequested, Created: now, Updated: now})
			}
			f.byLaunch[b.LaunchID] = insts
		}
		r.Instances = insts
		withhold = len(f.launches) == 1
	case *provisioner.DescribeBody:
		f.describes++
		for _, insts := range f.byLaunch {
			for _, in := range insts {
				if in.Job == b.Job {
					r.Instances = append(r.Instances, in)
				}
			}
		}
	default:
		r.Error = fmt.Sprintf("fake provisioner: %T not supported", body)
	}
	f.mu.Unlock()
	if withhold || d.ReplyTo == "" {
		return nil
	}
	env, err := envelope.NewEnvelope(provisioner.TypeReply, 1, bus.Run(), provisioner.Component, r, time.Now())
	if err != nil {
		return err
	}
	b, err := json.Marshal(env)
	if err != nil {
		return err
	}
	return bus.Reply(ctx, d, b)
}

func (f *fakeProvisioner) snapshot() (calls []provisioner.LaunchRequest, instances, describes int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, insts := range f.byLaunch {
		instances += len(insts)
	}
	return append([]provisioner.LaunchRequest(nil), f.launches...), instances, f.describes
}

func buildController(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "controller")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build controller: %v\n%s", err, out)
	}
	return bin
}

// syncBuffer is the shared concurrent-safe test buffer.
type syncBuffer = syncbuf.Buffer

type daemon struct {
	cmd *exec.Cmd
	out *syncBuffer
}

func startDaemon(t *testing.T, bin string, args ...string) *daemon {
	t.Helper()
	out := &syncBuffer{}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &daemon{cmd: cmd, out: out}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return d
}

func waitUntil(t *testing.T, what string, d *daemon, cond func() bool) {
	t.Helper()
	err := testsupport.PollEvery(30*time.Second, 20*time.Millisecond, func() error {
		if !cond() {
			return fmt.Errorf("still waiting for %s", what)
		}
		return nil
	})
	if err != nil {
		log := ""
		if d != nil {
			log = d.out.String()
		}
		t.Fatalf("%v; controller log:\n%s", err, log)
	}
}

// TestKillAndRestartNeverDoubleLaunches runs on the SQLite store and, as a
// replica with a lease, on the PostgreSQL store: the restarted controller
// stands by until the killed one's lease expired, then takes over from
// what the shared store says.
func TestKillAndRestartNeverDoubleLaunches(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { killAndRestart(t, nil) })
	t.Run("postgres", func(t *testing.T) {
		url := pgtest.Need(t)
		file := filepath.Join(t.TempDir(), "store-url")
		if err := os.WriteFile(file, []byte(url), 0o600); err != nil {
			t.Fatal(err)
		}
		killAndRestart(t, func(run string) []string {
			t.Cleanup(func() { pgtest.Drop(t, url, pgdb.SchemaName("ns", run, "controller")) })
			return []string{"--store-file", file, "--lease", "--lease-ttl", "1s"}
		})
	})
}

func killAndRestart(t *testing.T, storeArgs func(run string) []string) {
	amqptest.NeedBroker(t)
	bin := buildController(t)
	run := amqptest.UniqueName(t, "ctltest-")
	amqptest.DeleteAtEnd(t, amqptest.Topology{
		Queues:    []string{amqpbus.CommandQueue(run, controller.Component), amqpbus.CommandQueue(run, provisioner.Component), amqpbus.DeadQueue(run)},
		Exchanges: []string{amqpbus.EventsExchange(run), amqpbus.DeadLetterExchange(run)},
	})
	home := t.TempDir()
	jobs := filepath.Join(home, "jobs.toml")
	if err := os.WriteFile(jobs, []byte("[jobs.web]\nengine = \"npreserving\"\n[jobs.web.policy]\nn = 3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	urlFile := filepath.Join(home, "amqp-url")
	if err := os.WriteFile(urlFile, []byte(amqptest.URL()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	secret, err := envelope.LoadOrCreateSecret(filepath.Join(home, "secret"))
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bus, err := amqpbus.Dial(ctx, amqpbus.Config{URL: amqptest.URL(), Name: "fake-provisioner", Run: run, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	fake := &fakeProvisioner{byLaunch: map[string][]provisioner.Instance{}}
	reg := provisioner.Messages()
	go func() {
		_ = bus.Consume(ctx, provisioner.Component, func(ctx context.Context, d amqpbus.Delivery) error {
			return fake.handle(ctx, bus, reg, d)
		})
	}()

	args := []string{"--run", run, "--state-dir", home, "--secret-file", filepath.Join(home, "secret"), "--amqp-url-file", urlFile, "--jobs", jobs, "--tick", "100ms"}
	if storeArgs != nil {
		args = append(args, storeArgs(run)...)
	}
	first := startDaemon(t, bin, args...)
	waitUntil(t, "the first launch", first, func() bool { calls, _, _ := fake.snapshot(); return len(calls) == 1 })
	// The launch reached the provisioner but its reply is withheld: kill -9
	// now, with the launch in flight.
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.cmd.Wait()
	if strings.Contains(first.out.String(), "guest:guest") {
		t.Fatalf("broker password in the log:\n%s", first.out.String())
	}

	second := startDaemon(t, bin, args...)
	client := &ctlbus.Client{Bus: bus, Signer: &envelope.Signer{Secret: secret}, Sender: "test"}
	waitUntil(t, "the restarted controller to settle its pending launch", second, func() bool {
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		defer ccancel()
		st, err := client.Status(cctx, "web")
		return err == nil && len(st) == 1 && len(st[0].Workers) == 3 && st[0].Counts["pending_launch"] == 0
	})
	// Prove the restarted controller is deciding: one more worker must
	// come from exactly one new launch.
	rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
	defer rcancel()
	if err := client.Reconfigure(rctx, "web", map[string]any{"n": 4}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the launch for n=4", second, func() bool { _, n, _ := fake.snapshot(); return n >= 4 })
	calls, n, describes := fake.snapshot()
	if n != 4 {
		t.Fatalf("%d instances created, want 4 (3 + 1 after reconfigure)", n)
	}
	ids := map[string]int{}
	total := 0
	for _, c := range calls {
		ids[c.LaunchID]++
		if ids[c.LaunchID] == 1 {
			total += c.Count
		}
	}
	if total != 4 || len(ids) != 2 {
		t.Fatalf("launch ids %v: want 2 distinct launches totalling 4", ids)
	}
	if describes < 2 {
		t.Fatalf("%d describes, want one per start", describes)
	}
	// The pending launch was found in the provisioner's records after the
	// restart, so it was not even resent.
	if len(calls) != 2 {
		t.Fatalf("%d launch calls (%v), want 2", len(calls), ids)
	}
	if err := second.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := second.cmd.Wait(); err != nil {
		t.Fatalf("controller exit after SIGTERM: %v\n%s", err, second.out.String())
	}
}

func TestFlagErrors(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--run", "r"}, "--state-dir and --jobs are required"},
		{[]string{"--state-dir", "s", "--jobs", "j"}, "--run is required"},
		{[]string{"--run", "a/../b", "--state-dir", "s", "--jobs", "j"}, "--run: run name"},
		{[]string{"--run", "r", "--state-dir", "s", "--jobs", "j"}, "--amqp-url or --amqp-url-file is required"},
		{[]string{"--run", "r", "--state-dir", "s", "--jobs", "j", "--amqp-url", "amqp://u:p@h", "--amqp-url-file", "f"}, "not both"},
		{[]string{"--run", "r", "--state-dir", "s", "--jobs", "j", "--amqp-url", "amqps://u:p@h", "--amqp-ca-file", "/nonexistent/ca.pem"}, "--amqp-ca-file"},
		{[]string{"--run", "r", "--state-dir", t.TempDir(), "--jobs", "/nonexistent/jobs.toml", "--amqp-url", "amqp://u:hunter2@h"}, "load jobs"},
		{[]string{"--run", "r", "--state-dir", "s", "--jobs", "j", "--amqp-url", "amqp://u:p@h", "--store", "s.db"}, "want a postgres:// URL"},
		{[]string{"--run", "r", "--state-dir", "s", "--jobs", "j", "--amqp-url", "amqp://u:p@h", "--store", "postgresql:/u:hunter2@h"}, "want a postgres:// URL"},
		{[]string{"--run", "r", "--state-dir", "s", "--jobs", "j", "--amqp-url", "amqp://u:p@h", "--lease"}, "--lease needs a PostgreSQL --store"},
		// An unreachable database: the error names it without its password.
		{[]string{"--run", "r", "--state-dir", t.TempDir(), "--jobs", "/dev/null", "--amqp-url", "amqp://u:p@h",
			"--store", "postgres://u:hunter2@127.0.0.1:1/db?connect_timeout=2"}, "postgres://u:xxxxx@127.0.0.1:1/db"},
	}
	for _, tc := range cases {
		var out bytes.Buffer
		code := run(context.Background(), tc.args, func(string) string { return "" }, &out)
		if code != 1 || !strings.Contains(out.String(), tc.want) {
			t.Errorf("args %v: exit %d, output %q, want 1 and %q", tc.args, code, out.String(), tc.want)
		}
		if strings.Contains(out.String(), "hunter2") {
			t.Errorf("password leaked: %s", out.String())
		}
	}
}
