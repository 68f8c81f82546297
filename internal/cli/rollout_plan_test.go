package cli

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"nightshift/bootlevel"
	"nightshift/internal/service/builtin"
	"nightshift/launchplan"
)

// editedLocal copies plans/local.toml into dir as name with each old
// string replaced by its new one, and loads it.
func editedLocal(t *testing.T, dir, name string, edits ...string) *launchplan.Plan {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "plans", "local.toml"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	for i := 0; i+1 < len(edits); i += 2 {
		if !strings.Contains(s, edits[i]) {
			t.Fatalf("plans/local.toml lacks %q", edits[i])
		}
		s = strings.Replace(s, edits[i], edits[i+1], 1)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := launchplan.Load(path, launchplan.Options{Types: builtin.Names(), Replicas: builtin.Replicas})
	if err != nil {
		t.Fatalf("load %s: %v", name, err)
	}
	return p
}

var localRecs = []bootlevel.ServiceRecord{
	{Name: "broker", Attributes: map[string]string{"url": "amqp://u:p@127.0.0.1:5999/", "management_url": "http://u:p@127.0.0.1:15999"}},
	{Name: "controller", Attributes: map[string]string{"run": "local", "component": "controller"}},
}

// TestSpecFromPlan: --from-plan takes the job's worker spec from an edited
// plan, resolved as at boot (an unchanged plan gives the booted spec), and
// refuses, at the plan's file, line and key, a plan whose job is missing
// or changes what a rollout cannot.
func TestSpecFromPlan(t *testing.T) {
	dir := t.TempDir()
	booted := editedLocal(t, dir, "local.toml")
	same, err := specFromPlan(booted, booted, localRecs, "local", "work", "queuelen", "local")
	if err != nil {
		t.Fatal(err)
	}
	if got := same.Worker["env"].(map[string]any)["NIGHTSHIFT_WORK_QUEUE"]; got != "nightshift.local.work" {
		t.Errorf("worker env NIGHTSHIFT_WORK_QUEUE = %v, want the run's queue (${.run} resolved)", got)
	}
	if cmd := same.Worker["command"].([]any); cmd[0] != filepath.Join(dir, "..", "bin", "queueworker") && !strings.HasSuffix(cmd[0].(string), "/bin/queueworker") {
		t.Errorf("command %v, want ${global.plan_dir} resolved", cmd)
	}
	if d := specDiff(same, same); len(d) != 0 {
		t.Errorf("diff of a spec with itself: %q", d)
	}

	v2 := editedLocal(t, dir, "v2.toml", `env = { NIGHTSHIFT_WORK_QUEUE = "nightshift.${.run}.work" }`,
		`env = { NIGHTSHIFT_WORK_QUEUE = "nightshift.${.run}.work", VERSION = "2" }`, `"--work", "250ms"]`, `"--work", "100ms"]`)
	got, err := specFromPlan(v2, booted, localRecs, "local", "work", "queuelen", "local")
	if err != nil {
		t.Fatal(err)
	}
	diff := specDiff(same, got)
	want := []string{
		`- worker.command = ["` + dir + `/../bin/queueworker","--work","250ms"]`,
		`+ worker.command = ["` + dir + `/../bin/queueworker","--work","100ms"]`,
		`+ worker.env.VERSION = "2"`,
	}
	if !slices.Equal(diff, want) {
		t.Errorf("diff\n%s\nwant\n%s", strings.Join(diff, "\n"), strings.Join(want, "\n"))
	}

	bad := []struct {
		name           string
		plan           *launchplan.Plan
		job, engine    string
		driver         string
		wantSubstrings []string
	}{
		{"a job the plan lacks", v2, "nope", "queuelen", "local", []string{"v2.toml", "config.jobs.nope", "no job nope", "sleeper, work"}},
		{"another engine", v2, "work", "npreserving", "local", []string{"v2.toml:", "config.jobs.work.engine", "not the run's"}},
		{"another driver", v2, "work", "queuelen", "ec2", []string{"v2.toml:", "config.jobs.work.driver", "not where"}},
		{"a changed policy", editedLocal(t, dir, "policy.toml", "max_instances = 6", "max_instances = 9"), "work", "queuelen", "local",
			[]string{"policy.toml:", "config.jobs.work.policy", "mgmt reconfigure"}},
		{"a changed queue", editedLocal(t, dir, "queue.toml", `queue = { name = "nightshift.${.run}.work"`, `queue = { name = "other"`), "work", "queuelen", "local",
			[]string{"queue.toml:", "config.jobs.work.queue", "relaunch"}},
		{"a worker the sitter refuses", editedLocal(t, dir, "health.toml", `backoff_initial = "200ms"
`, `backoff_initial = "200ms"
health = { http = "http://127.0.0.1:$${port}/healthz", interval = "1s", timeout = "5s" }
`), "sleeper", "npreserving", "local", []string{"health.toml:", "config.jobs.sleeper", "worker.health.timeout"}},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			_, err := specFromPlan(c.plan, booted, localRecs, "local", c.job, c.engine, c.driver)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range c.wantSubstrings {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// TestRolloutFromBadPlanExits2: a plan the loader refuses, or one without
// the job, exits 2 with the file, line and key before any run is opened.
func TestRolloutFromBadPlanExits2(t *testing.T) {
	home := t.TempDir()
	for _, c := range []struct {
		plan string
		want []string
	}{
		{filepath.Join("testdata", "unknown-key.toml"), []string{"invalid plan", "unknown-key.toml:5", "ready_timout"}},
		{filepath.Join("..", "..", "plans", "local.toml"), []string{"local.toml", "no job nope", "sleeper, work"}},
	} {
		code, _, stderr := run(t, mgmtc, "--home", home, "rollout", "local", "nope", "--from-plan", c.plan)
		if code != 2 {
			t.Errorf("%s: exit %d, want 2; stderr:\n%s", c.plan, code, stderr)
		}
		for _, w := range c.want {
			if !strings.Contains(stderr, w) {
				t.Errorf("%s: stderr lacks %q:\n%s", c.plan, w, stderr)
			}
		}
	}
}
