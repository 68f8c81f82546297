package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"nightshift/controller/ctlbus"
	"nightshift/internal/amqpbus"
	"nightshift/internal/ec2/ec2test"
	"nightshift/internal/envelope"
	"nightshift/internal/nsenv"
	"nightshift/internal/pki"
	"nightshift/internal/ssmparams"
	"nightshift/internal/testsupport"
	"nightshift/internal/testsupport/amqptest"
	"nightshift/internal/testsupport/syncbuf"
	"nightshift/internal/worker/localworker"
	"nightshift/provisioner"
	"nightshift/sitter"
)

// A broker URL that cannot be read from SSM is a fetchError (exit 1, the
// world's fault), not bad usage; without a fetcher the flag is refused.
func TestParseAgentSSMFailures(t *testing.T) {
	args := []string{"--run", "r", "--job", "j", "--instance", "i", "--spec", "/s", "--amqp-url-ssm", "/nightshift/r/workers/i/broker-url"}
	env := func(string) string { return "" }
	_, err := parseAgent(args, env, io.Discard, func(string, string, string) (string, error) {
		return "", errors.New("AccessDeniedException")
	})
	if fe := (fetchError{}); !errors.As(err, &fe) || !strings.Contains(err.Error(), "AccessDenied") {
		t.Fatalf("err %v, want a fetchError", err)
	}
	if _, err := parseAgent(args, env, io.Discard, nil); !errors.As(err, new(usageError)) {
		t.Fatalf("err %v without a fetcher, want a usage error", err)
	}
}

// TestSSMFetcherReadsTheParameter: the fetcher the agent uses reads a
// SecureString parameter from moto as the provisioner stored it.
func TestSSMFetcherReadsTheParameter(t *testing.T) {
	u := ec2test.URL(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "testing")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "testing")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	ctx := context.Background()
	st, err := ssmparams.New(ctx, ssmparams.Config{Region: "eu-west-1", EndpointURL: u})
	if err != nil {
		t.Fatal(err)
	}
	run := fmt.Sprintf("sitter%d", time.Now().UnixNano())
	t.Cleanup(func() { st.DeleteRun(context.Background(), run, false) })
	want := "amqps://ns." + run + ".worker.i-1:pw-" + run + "@10.0.0.5:5671/"
	name, err := st.Put(ctx, run, "workers/i-1/broker-url", want)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ssmFetcher(ctx)(name, "eu-west-1", u)
	if err != nil || got != want {
		t.Fatalf("fetched %q (err %v), want %q", got, err, want)
	}
}

func TestParseAgent(t *testing.T) {
	dir := t.TempDir()
	urlFile := filepath.Join(dir, "broker-url")
	if err := os.WriteFile(urlFile, []byte("amqp://guest:hunter2@broker:5672/\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badURL := filepath.Join(dir, "bad-url")
	if err := os.WriteFile(badURL, []byte("http://guest:hunter2@broker/\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	caDir := filepath.Join(dir, "pki")
	if _, err := pki.LoadOrCreateCA(caDir, "r1", time.Now()); err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(caDir, pki.CACertFile)
	tlsURL := "amqps://guest:hunter2@localhost:5671/"
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub2, _, _ := ed25519.GenerateKey(rand.Reader)
	fullEnv := map[string]string{
		envHome: "/home/ns", envRun: "r1", envJob: "crunch", envInstance: "i-1",
		envInstanceDir: "/home/ns/runs/r1/instances/i-1", envAMQPURL: "amqp://guest:hunter2@h:5672/",
		envCommandKey: hex.EncodeToString(pub),
	}
	without := func(keys ...string) map[string]string {
		m := map[string]string{}
		for k, v := range fullEnv {
			m[k] = v
		}
		for _, k := range keys {
			delete(m, k)
		}
		return m
	}
	cases := []struct {
		name  string
		args  []string
		env   map[string]string
		check func(agentConfig) bool
		err   string // "" = accepted
	}{
		{name: "an isolated worker's own directory wins over the instance directory",
			env: func() map[string]string {
				m := without()
				m[nsenv.WorkerDir] = "/var/lib/nightshift-worker/r1-abc/i-1"
				return m
			}(), check: func(c agentConfig) bool {
				return c.specPath == "/var/lib/nightshift-worker/r1-abc/i-1/spec.json" &&
					c.stateDir == "/var/lib/nightshift-worker/r1-abc/i-1/sitter"
			}},
		{name: "everything from the local driver's environment", env: fullEnv, check: func(c agentConfig) bool {
			return c.run == "r1" && c.job == "crunch" && c.instance == "i-1" &&
				c.specPath == "/home/ns/runs/r1/instances/i-1/spec.json" &&
				c.stateDir == "/home/ns/runs/r1/instances/i-1/sitter" && !c.tempState &&
				pub.Equal(c.commandKey) && c.brokerURL == "amqp://guest:hunter2@h:5672/" &&
				c.heartbeat == time.Second && c.sample == time.Second
		}},
		{name: "EC2 user data flags", env: map[string]string{},
			args: []string{"--run", "r2", "--job", "web", "--instance", "i-9", "--amqp-url-file", urlFile, "--spec", "/etc/nightshift/spec.json"},
			check: func(c agentConfig) bool {
				return c.run == "r2" && c.job == "web" && c.instance == "i-9" && c.brokerURL == "amqp://guest:hunter2@broker:5672/" &&
					c.commandKey == nil && c.tempState
			}},
		{name: "flags beat environment", env: fullEnv,
			args: []string{"--run", "r3", "--state-dir", "/s", "--command-key", hex.EncodeToString(pub2), "--heartbeat-interval", "250ms"},
			check: func(c agentConfig) bool {
				return c.run == "r3" && c.stateDir == "/s" && pub2.Equal(c.commandKey) && c.heartbeat == 250*time.Millisecond
			}},
		{name: "command key not hex", env: fullEnv, args: []string{"--command-key", "zz"}, err: "--command-key: command public key: not hex"},
		{name: "command key too short", env: func() map[string]string { m := without(); m[envCommandKey] = "0102"; return m }(),
			err: "--command-key: command public key: 2 bytes"},
		{name: "URL file from environment beats URL", env: func() map[string]string { m := without(); m[envAMQPURLFile] = urlFile; return m }(),
			check: func(c agentConfig) bool { return c.brokerURL == "amqp://guest:hunter2@broker:5672/" }},
		{name: "CA from the local driver's environment", env: func() map[string]string { m := without(); m[envAMQPURL], m[envAMQPCAFile] = tlsURL, caFile; return m }(),
			check: func(c agentConfig) bool { return c.caFile == caFile && c.brokerURL == tlsURL }},
		{name: "CA flag beats environment", env: func() map[string]string { m := without(); m[envAMQPURL], m[envAMQPCAFile] = tlsURL, "/nope"; return m }(),
			args:  []string{"--amqp-ca-file", caFile},
			check: func(c agentConfig) bool { return c.caFile == caFile }},
		{name: "CA for a plain URL", env: fullEnv, args: []string{"--amqp-ca-file", caFile}, err: "--amqp-ca-file is for an amqps:// broker"},
		{name: "CA file missing", env: func() map[string]string { m := without(); m[envAMQPURL] = tlsURL; return m }(),
			args: []string{"--amqp-ca-file", filepath.Join(dir, "nope.pem")}, err: "--amqp-ca-file: CA file"},
		{name: "CA file not a certificate", env: func() map[string]string { m := without(); m[envAMQPURL] = tlsURL; return m }(),
			args: []string{"--amqp-ca-file", urlFile}, err: "no PEM certificate"},
		{name: "no run", env: without(envRun), err: "--run is required (or set $NIGHTSHIFT_RUN)"},
		{name: "no instance", env: without(envInstance), err: "--instance is required"},
		{name: "no spec", env: without(envInstanceDir), err: "--spec is required"},
		{name: "no broker", env: without(envAMQPURL), err: "no broker URL"},
		{name: "old flag spelling still read", env: without(envAMQPURL), args: []string{"--broker-url-file", urlFile},
			check: func(c agentConfig) bool {
				return c.brokerURL == "amqp://guest:hunter2@broker:5672/" && c.urlSource == urlFile
			}},
		{name: "URL flag is not the sitter's", env: fullEnv, args: []string{"--amqp-url", "amqp://guest:hunter2@h/"}, err: "flag provided but not defined: -amqp-url"},
		{name: "missing URL file", env: fullEnv, args: []string{"--amqp-url-file", filepath.Join(dir, "nope")}, err: "--amqp-url-file: open"},
		{name: "bad URL, password hidden", env: fullEnv, args: []string{"--amqp-url-file", badURL}, err: "guest:xxxxx@broker"},
		{name: "bad log level", env: fullEnv, args: []string{"--log-level", "loud"}, err: "--log-level"},
		{name: "zero interval", env: fullEnv, args: []string{"--sample-interval", "0s"}, err: "must be > 0"},
		{name: "bad cgroup mode", env: fullEnv, args: []string{"--cgroup", "maybe"}, err: `--cgroup "maybe"`},
		{name: "stray argument", env: fullEnv, args: []string{"extra"}, err: `unexpected argument "extra"`},
		{name: "unknown flag", env: fullEnv, args: []string{"--bogus"}, err: "flag provided but not defined"},
		{name: "EC2 user data: the URL from its SSM parameter", env: map[string]string{},
			args: []string{"--run", "r2", "--job", "web", "--instance", "i-9", "--amqp-url-ssm", "/nightshift/r2/workers/i-9/broker-url",
				"--ssm-region", "eu-west-1", "--ssm-endpoint-url", "http://moto:5000", "--spec", "/etc/nightshift/spec.json"},
			check: func(c agentConfig) bool {
				return c.brokerURL == "amqp://w:from-ssm@broker:5672/" && c.urlSource == "ssm parameter /nightshift/r2/workers/i-9/broker-url"
			}},
		{name: "SSM parameter and URL file both", env: map[string]string{},
			args: []string{"--run", "r2", "--job", "web", "--instance", "i-9", "--spec", "/s", "--amqp-url-ssm", "/nightshift/r2/x", "--amqp-url-file", urlFile},
			err:  "give ssm parameter /nightshift/r2/x or --amqp-url/--amqp-url-file, not both"},
		{name: "SSM parameter that holds no broker URL, password hidden", env: map[string]string{},
			args: []string{"--run", "r2", "--job", "web", "--instance", "i-9", "--spec", "/s", "--amqp-url-ssm", "/nightshift/r2/bad"},
			err:  "http://w:xxxxx@broker"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var stderr bytes.Buffer
			fetch := func(name, region, endpoint string) (string, error) {
				switch {
				case name == "/nightshift/r2/bad":
					return "http://w:from-ssm@broker/", nil
				case region != "eu-west-1" && region != "" || endpoint != "http://moto:5000" && endpoint != "":
					return "", fmt.Errorf("asked region %q endpoint %q", region, endpoint)
				}
				return "amqp://w:from-ssm@broker:5672/", nil
			}
			cfg, err := parseAgent(c.args, func(k string) string { return c.env[k] }, &stderr, fetch)
			if c.err == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if !c.check(cfg) {
					t.Errorf("config %+v", cfg)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Fatalf("error %v, want one containing %q", err, c.err)
			}
			if _, ok := err.(usageError); !ok {
				t.Errorf("error %T is not a usage error (exit 2)", err)
			}
			if strings.Contains(err.Error()+stderr.String(), "hunter2") {
				t.Errorf("password printed: %v %s", err, stderr.String())
			}
		})
	}
}

// TestAgentExitCodes runs the real entry point on bad input: exit 2 with a
// message naming what is wrong, and no password anywhere.
func TestAgentExitCodes(t *testing.T) {
	dir := t.TempDir()
	spec := filepath.Join(dir, "spec.json")
	if err := os.WriteFile(spec, []byte(`{"worker": {"shell": "true", "cpus": 1}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(envAMQPURL, "amqp://guest:hunter2@127.0.0.1:1/")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"agent", "--job", "j", "--instance", "i"}, "--run is required"},
		{[]string{"agent", "--run", "../r", "--job", "j", "--instance", "i", "--spec", spec}, "--run: run name"},
		{[]string{"agent", "--run", "r", "--job", "j", "--instance", "i", "--spec", spec}, "key worker.cpus: unknown key"},
		{[]string{"agent", "--run", "r", "--job", "j", "--instance", "i", "--spec", filepath.Join(dir, "nope.json")}, "nope.json"},
	} {
		// The agent drops the URL from its environment once read.
		t.Setenv(envAMQPURL, "amqp://guest:hunter2@127.0.0.1:1/")
		var out, errb bytes.Buffer
		if code := run(c.args, &out, &errb); code != 2 || !strings.Contains(errb.String(), c.want) {
			t.Errorf("%q: exit %d, stderr %q; want 2 and %q", c.args, code, errb.String(), c.want)
		}
		if strings.Contains(errb.String(), "hunter2") {
			t.Errorf("password printed: %s", errb.String())
		}
	}
	// The run's secret is no longer an agent input at all: a worker must
	// never hold it.
	t.Setenv(envAMQPURL, "amqp://guest:hunter2@127.0.0.1:1/")
	var out, errb bytes.Buffer
	okSpec := filepath.Join(dir, "ok.json")
	os.WriteFile(okSpec, []byte(`{"worker": {"shell": "true"}}`), 0o600)
	if code := run([]string{"agent", "--run", "r", "--job", "j", "--instance", "i", "--spec", okSpec, "--secret-file", "/k"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "flag provided but not defined") {
		t.Errorf("--secret-file: exit %d, stderr %q", code, errb.String())
	}
}

// ---- broker-backed tests of the real binary ----

// agentEnv is a run home with a secret and one instance directory holding
// spec.json, as the provisioner and its local driver leave them.
type agentEnv struct {
	home, run, job, inst, dir string
	beats                     chan sitter.Heartbeat
	bus                       *amqpbus.Bus
}

func newAgentEnv(t *testing.T, worker map[string]any) *agentEnv {
	t.Helper()
	amqptest.NeedBroker(t)
	e := &agentEnv{home: t.TempDir(), run: amqptest.UniqueName(t, "agtest-"), job: "crunch", inst: amqptest.UniqueName(t, "i-"),
		beats: make(chan sitter.Heartbeat, 1000)}
	if _, err := envelope.LoadOrCreateSecret(filepath.Join(e.home, "runs", e.run, "secret")); err != nil {
		t.Fatal(err)
	}
	e.dir = localworker.InstanceDir(e.home, e.run, e.inst)
	if err := os.MkdirAll(e.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	spec, _ := json.Marshal(map[string]any{"driver": "local", "worker": worker})
	if err := os.WriteFile(filepath.Join(e.dir, "spec.json"), spec, 0o600); err != nil {
		t.Fatal(err)
	}
	ready := make(chan string, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	b, err := amqpbus.Dial(ctx, amqpbus.Config{URL: amqptest.URL(), Name: "agtest-observer-" + e.inst, Run: e.run,
		Log: slog.New(slog.DiscardHandler), OnConsume: func(q string) { ready <- q }})
	if err != nil {
		t.Fatal(err)
	}
	e.bus = b
	sctx, scancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = b.Subscribe(sctx, []string{ctlbus.HeartbeatKey(e.job, "*")}, func(_ context.Context, d amqpbus.Delivery) error {
			hb, err := ctlbus.DecodeHeartbeat(ctlbus.Messages(), d.Body)
			if err != nil {
				t.Errorf("heartbeat does not decode: %v", err)
				return nil
			}
			select {
			case e.beats <- hb:
			default:
			}
			return nil
		})
	}()
	t.Cleanup(func() {
		scancel()
		<-done
		_ = b.Close()
		amqptest.Delete(t, amqptest.Topology{
			Queues:    []string{amqpbus.CommandQueue(e.run, ctlbus.SitterComponent(e.inst)), amqpbus.DeadQueue(e.run)},
			Exchanges: []string{amqpbus.DeadLetterExchange(e.run), amqpbus.EventsExchange(e.run)},
		})
	})
	select {
	case <-ready:
	case <-time.After(15 * time.Second):
		t.Fatal("heartbeat subscription did not start")
	}
	return e
}

func (e *agentEnv) runningBeat(t *testing.T) sitter.TaskStatus {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case hb := <-e.beats:
			if hb.InstanceID == e.inst && len(hb.Tasks) == 1 && hb.Tasks[0].State == sitter.StateRunning && hb.Tasks[0].PID > 0 {
				return hb.Tasks[0]
			}
		case <-deadline:
			t.Fatal("no heartbeat showing the task running within 30s")
		}
	}
}

// lockedBuffer is the shared concurrent-safe test buffer.
type lockedBuffer = syncbuf.Buffer

// TestAgentSIGTERMLeavesNothing: a real `sitter agent` heartbeats to the
// broker with its task running; SIGTERM makes it stop the task (a shell
// with a child) and exit 0, leaving no descendant.
func TestAgentSIGTERMLeavesNothing(t *testing.T) {
	e := newAgentEnv(t, map[string]any{"shell": "sleep 300 & wait", "stop_grace": "2s"})
	bin := buildSitter(t)
	cmd := exec.Command(bin, "agent", "--heartbeat-interval", "100ms", "--sample-interval", "100ms", "--cgroup", "off")
	cmd.Env = append(os.Environ(), envHome+"="+e.home, envRun+"="+e.run, envJob+"="+e.job,
		envInstance+"="+e.inst, envInstanceDir+"="+e.dir, envAMQPURL+"="+amqptest.URL())
	var logs lockedBuffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("agent log:\n%s", logs.String())
		}
	})
	task := e.runningBeat(t)
	var desc map[int]bool
	testsupport.Eventually(t, 10*time.Second, func() error {
		if desc = descendants(t, cmd.Process.Pid); len(desc) < 2 || !desc[task.PID] {
			return fmt.Errorf("task %d and its child not among the agent's descendants %v", task.PID, desc)
		}
		return nil
	})
	environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", task.PID))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(environ), envAMQPURL+"=") || !strings.Contains(string(environ), envInstance+"="+e.inst) {
		t.Errorf("task environment: want the instance id and no broker URL, got %q", environ)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("agent exit after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("agent did not exit within 30s of SIGTERM")
	}
	testsupport.Eventually(t, 5*time.Second, func() error {
		var left []int
		procs := procTable(t)
		for pid := range desc {
			if _, ok := procs[pid]; ok {
				left = append(left, pid)
			}
		}
		if len(left) > 0 {
			return fmt.Errorf("descendants left after SIGTERM: %v", left)
		}
		return nil
	})
	l := logs.String()
	if strings.Contains(l, "guest:guest@") || !strings.Contains(l, "sitter agent stopped") {
		t.Errorf("agent log leaks the password or lacks the clean stop:\n%s", l)
	}
}

// TestAgentUnderLocalDriver is the "done when": a sitter started by
// the provisioner's local driver heartbeats to the broker, and terminating
// the instance leaves no process.
func TestAgentUnderLocalDriver(t *testing.T) {
	e := newAgentEnv(t, map[string]any{"shell": "sleep 300 & wait", "stop_grace": "2s"})
	bin := buildSitter(t)
	drv, err := localworker.New(localworker.Config{Home: e.home, Run: e.run,
		Command: []string{bin, "agent", "--heartbeat-interval", "100ms", "--sample-interval", "100ms", "--cgroup", "off"},
		Env:     []string{envAMQPURL + "=" + amqptest.URL()}, Grace: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	spec, _ := os.ReadFile(filepath.Join(e.dir, "spec.json"))
	res, err := drv.Launch(ctx, provisioner.InstanceSpec{ID: e.inst, Job: e.job, Run: e.run, Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = localworker.Sweep(context.Background(), e.home, e.run)
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(e.dir, "stderr"))
			t.Logf("agent stderr:\n%s", b)
		}
	})
	task := e.runningBeat(t)
	if task.Name != e.job {
		t.Errorf("task name %q, want the job name", task.Name)
	}
	family := descendants(t, res.PID)
	family[res.PID] = true
	if !family[task.PID] {
		t.Fatalf("task %d is not under the agent %d", task.PID, res.PID)
	}
	if err := drv.Terminate(ctx, e.inst); err != nil {
		t.Fatal(err)
	}
	procs := procTable(t)
	for pid := range family {
		if _, ok := procs[pid]; ok {
			t.Errorf("pid %d survived Terminate", pid)
		}
	}
	if _, ok := procs[task.PID]; ok {
		t.Errorf("task pid %d still in /proc", task.PID)
	}
	// The agent stopped its task itself within the driver's grace rather
	// than being SIGKILLed.
	if b, _ := os.ReadFile(filepath.Join(e.dir, "stderr")); !strings.Contains(string(b), "sitter agent stopped") {
		t.Errorf("agent did not stop cleanly:\n%s", b)
	}
	if owned, err := localworker.ListOwned(e.home, e.run); err != nil || len(owned) != 0 {
		t.Errorf("still owned after Terminate: %+v, %v", owned, err)
	}
}
