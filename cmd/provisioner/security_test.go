package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"nightshift/internal/amqpbus"
	"nightshift/internal/envelope"
	"nightshift/internal/jobspec"
	"nightshift/internal/procscan"
	"nightshift/internal/testsupport/amqptest"
	"nightshift/internal/worker/localworker"
	"nightshift/provisioner"
	"nightshift/provisioner/client"
	"nightshift/provisioner/provisionertest"
)

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// binary builds this command once for the tests that run it.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "provisioner-bin-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "provisioner")
		if out, err := exec.Command("go", "build", "-o", builtBin, ".").CombinedOutput(); err != nil {
			buildErr = err
			builtBin = string(out)
		}
	})
	if buildErr != nil {
		t.Fatalf("build: %v\n%s", buildErr, builtBin)
	}
	return builtBin
}

// liveRun is one provisioner process on the shared broker, restartable.
type liveRun struct {
	t                   *testing.T
	run, home, jobsFile string
	secret              []byte
	jobs                map[string]jobspec.Spec
	logs                *syncBuf
	cmd                 *exec.Cmd
	bus                 *amqpbus.Bus
	client              *client.Client
}

func startRun(t *testing.T, prefix string) *liveRun {
	t.Helper()
	amqptest.NeedBroker(t)
	r := &liveRun{t: t, run: amqptest.UniqueName(t, prefix), home: t.TempDir(), logs: &syncBuf{}, jobs: provisionertest.Jobs("web")}
	deleteTopology(t, r.run)
	t.Cleanup(func() {
		localworker.Sweep(context.Background(), r.home, r.run)
		localworker.RemoveWorkerDirs(r.home, r.run) // outside home, as root
	})
	var err error
	if r.secret, err = envelope.LoadOrCreateSecret(filepath.Join(r.home, "runs", r.run, "secret")); err != nil {
		t.Fatal(err)
	}
	r.jobsFile = filepath.Join(r.home, "jobs.json")
	if err := jobspec.Write(r.jobsFile, r.jobs); err != nil {
		t.Fatal(err)
	}
	r.start()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if r.bus, err = amqpbus.Dial(ctx, amqpbus.Config{URL: amqptest.URL(), Name: "sec-client", Run: r.run, Log: slog.New(slog.DiscardHandler)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.bus.Close() })
	r.client = client.New(r.bus, &envelope.Signer{Secret: r.secret}, "sec-test", nil)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("provisioner logs:\n%s", r.logs)
		}
	})
	return r
}

func (r *liveRun) start() {
	r.t.Helper()
	r.cmd = exec.Command(binary(r.t), "--run", r.run, "--home", r.home, "--amqp-url", amqptest.URL(), "--jobs", r.jobsFile,
		"--worker-command", "sleep 3600", "--reconcile-every", "1s", "--grace", "1s")
	r.cmd.Stderr = r.logs
	if err := r.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	cmd := r.cmd
	r.t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
}

func (r *liveRun) kill() {
	r.cmd.Process.Signal(syscall.SIGKILL)
	r.cmd.Wait()
}

// call sends env as an RPC and decodes the provisioner's reply.
func (r *liveRun) call(ctx context.Context, env envelope.Envelope) provisioner.Reply {
	r.t.Helper()
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	raw, err := r.bus.Call(cctx, provisioner.Component, env)
	if err != nil {
		r.t.Fatalf("call %s: %v", env.Type, err)
	}
	_, body, err := provisioner.Messages().Decode(raw, client.MaxReplySize)
	if err != nil {
		r.t.Fatalf("reply to %s: %v", env.Type, err)
	}
	return *body.(*provisioner.Reply)
}

func (r *liveRun) envelope(typ string, body any, sign bool) envelope.Envelope {
	r.t.Helper()
	env, err := envelope.NewEnvelope(typ, 1, r.run, "sec-test", body, time.Now())
	if err != nil {
		r.t.Fatal(err)
	}
	if sign {
		if err := (&envelope.Signer{Secret: r.secret}).Sign(&env); err != nil {
			r.t.Fatal(err)
		}
	}
	return env
}

// TestLaunchNeedsSignatureAndAJobOfTheRun is the audit's first finding,
// against the real binary and broker: a launch that is unsigned, that
// carries a command of its own, that names a job the run does not have, or
// whose spec is not the run's, is refused with its reason, and nothing
// starts.
func TestLaunchNeedsSignatureAndAJobOfTheRun(t *testing.T) {
	r := startRun(t, "provsec")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	marker := filepath.Join(t.TempDir(), "pwned")
	evil := map[string]any{"launch_id": "evil", "job": "web", "count": 1,
		"spec": map[string]any{"worker": map[string]any{"command": []string{"/bin/sh", "-c", "touch " + marker}}}}
	otherSpec := provisionertest.Digest(jobspec.Spec{Worker: map[string]any{"command": []any{"/bin/sh", "-c", "touch " + marker}}})
	withDigest := func(job, digest string) provisioner.LaunchRequest {
		req := provisionertest.Launch(r.jobs, "L-"+job, "web", 1)
		req.Job, req.SpecDigest = job, digest
		return req
	}
	webDigest := provisionertest.Digest(r.jobs["web"])
	cases := []struct {
		name string
		env  envelope.Envelope
		want string
	}{
		{"unsigned, its own command", r.envelope(provisioner.TypeLaunch, evil, false), `field "spec": unknown field`},
		{"signed, its own command", r.envelope(provisioner.TypeLaunch, evil, true), `field "spec": unknown field`},
		{"unsigned, well formed", r.envelope(provisioner.TypeLaunch, provisionertest.Launch(r.jobs, "L-u", "web", 1), false), "missing signature"},
		{"forged signature", func() envelope.Envelope {
			env := r.envelope(provisioner.TypeLaunch, provisionertest.Launch(r.jobs, "L-f", "web", 1), false)
			_ = (&envelope.Signer{Secret: []byte("not the run's secret at all!!!!!")}).Sign(&env)
			return env
		}(), "bad signature"},
		{"unknown job", r.envelope(provisioner.TypeLaunch, withDigest("evil", webDigest), true), `unknown job "evil": the run's jobs are web`},
		{"another spec", r.envelope(provisioner.TypeLaunch, withDigest("web", otherSpec), true), "spec digest " + otherSpec + " is not the provisioner's"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rep := r.call(ctx, c.env)
			if !strings.Contains(rep.Error, c.want) {
				t.Errorf("reply %+v, want an error containing %q", rep, c.want)
			}
		})
	}
	st, err := r.client.Describe(ctx, provisioner.DescribeBody{})
	if err != nil || len(st.Instances) != 0 {
		t.Errorf("records after refused launches: %+v (err %v), want none", st, err)
	}
	if ents, _ := os.ReadDir(filepath.Join(r.home, "runs", r.run, "instances")); len(ents) != 0 {
		t.Errorf("instance directories were made: %v", ents)
	}
	if procs, _ := procscan.Find("", r.home, r.run); len(procs) != 0 {
		t.Errorf("processes started: %v", procs)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the attacker's command ran")
	}
	// The run's own job still launches, so the refusals above were not
	// a provisioner that refuses everything.
	insts, err := r.client.Launch(ctx, provisionertest.Launch(r.jobs, "L-ok", "web", 1))
	if err != nil || len(insts) != 1 {
		t.Fatalf("launch of the run's job: %v, %v", insts, err)
	}
}

// TestHandledCommandIsNeverRunAgain is the audit's replay finding: a
// handled command published again with the same id (as a consumer holding
// broker credentials can) is answered with the recorded reply, before and
// after a provisioner restart, and an old terminate_all replayed after a
// later enable does not disable the provisioner again.
func TestHandledCommandIsNeverRunAgain(t *testing.T) {
	r := startRun(t, "provreplay")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	launch := r.envelope(provisioner.TypeLaunch, provisionertest.Launch(r.jobs, "L1", "web", 1), true)
	first := r.call(ctx, launch)
	if first.Error != "" || len(first.Instances) != 1 {
		t.Fatalf("launch: %+v", first)
	}
	stop := r.envelope(provisioner.TypeTerminateAll, provisioner.TerminateAllBody{}, true)
	if rep := r.call(ctx, stop); rep.Error != "" || !rep.Disabled {
		t.Fatalf("terminate_all: %+v", rep)
	}
	if rep := r.call(ctx, r.envelope(provisioner.TypeEnable, provisioner.EnableBody{}, true)); rep.Error != "" {
		t.Fatalf("enable: %+v", rep)
	}
	check := func(when string) {
		t.Helper()
		again := r.call(ctx, launch)
		a, _ := json.Marshal(again)
		f, _ := json.Marshal(first)
		if string(a) != string(f) {
			t.Errorf("%s: launch repeated answered %s, want the recorded %s", when, a, f)
		}
		if rep := r.call(ctx, stop); !rep.Disabled {
			t.Errorf("%s: terminate_all repeated answered %+v, want its recorded reply", when, rep)
		}
		st, err := r.client.Describe(ctx, provisioner.DescribeBody{})
		if err != nil || st.Disabled {
			t.Errorf("%s: describe %+v, %v: the old terminate_all ran again and undid the later enable", when, st, err)
		}
	}
	check("replayed")
	r.kill()
	r.start()
	check("replayed after a restart")
	if n := strings.Count(r.logs.String(), "answering with the recorded result"); n < 4 {
		t.Errorf("log says %d repeats were answered from the ledger, want 4", n)
	}
}
