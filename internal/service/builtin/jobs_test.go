package builtin

import (
	"path/filepath"
	"strings"
	"testing"

	"nightshift/bootlevel"
	"nightshift/internal/jobspec"
	"nightshift/launchplan"
)

func controllerPlan(jobs map[string]any) *launchplan.Plan {
	return &launchplan.Plan{Levels: []launchplan.Level{
		{Index: 1, Services: []launchplan.Service{{Name: "provisioner", Type: "provisioner"}}},
		{Index: 2, Services: []launchplan.Service{{Name: "controller", Type: "controller", TypeConfig: map[string]any{"jobs": jobs}}}},
	}}
}

func scope() func(string) (string, error) {
	return launchplan.Scope{
		Self:    map[string]string{"run": "r1"},
		Globals: map[string]string{"plan_dir": "/plans"},
		Service: func(svc, attr string) (string, bool) {
			if svc == "broker" && attr == "url" {
				return "amqp://b", true
			}
			return "", false
		},
	}.Expand
}

// TestWriteRunJobs: the provisioner's jobs file holds the controllers'
// worker specs resolved as the controller resolves them, so their digests
// agree, and refuses what it cannot resolve or reconcile.
func TestWriteRunJobs(t *testing.T) {
	sleeper := map[string]any{
		"engine": "npreserving", "policy": map[string]any{"n": int64(3)},
		"queue":  map[string]any{"name": "q", "management_url": "${later.url}"},
		"worker": map[string]any{"command": []any{"${global.plan_dir}/../bin/sleeper", "--run", "${.run}"}, "mem": int64(64)},
	}
	path := filepath.Join(t.TempDir(), "jobs.json")
	req := bootlevel.StepRequest{Plan: controllerPlan(map[string]any{"sleeper": sleeper}), Expand: scope()}
	if _, err := writeRunJobs(req, path); err != nil {
		t.Fatal(err)
	}
	got, err := jobspec.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	want := jobspec.Spec{Driver: "local", Worker: map[string]any{"command": []any{"/plans/../bin/sleeper", "--run", "r1"}, "mem": int64(64)}}
	gd, _ := got["sleeper"].Digest()
	wd, _ := want.Digest()
	if len(got) != 1 || gd != wd {
		t.Fatalf("jobs file %+v, want sleeper as %+v", got, want)
	}

	bad := []struct {
		name string
		plan *launchplan.Plan
		want string
	}{
		{"no controller", &launchplan.Plan{Levels: []launchplan.Level{{Index: 1}}}, "no controller service"},
		{"worker refers to a later service", controllerPlan(map[string]any{"w": map[string]any{
			"worker": map[string]any{"command": []any{"${later.bin}"}}}}), "config.jobs.w: worker.command[0]"},
		{"unknown key", controllerPlan(map[string]any{"w": map[string]any{"wroker": map[string]any{}}}), "key wroker: unknown key"},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			_, err := writeRunJobs(bootlevel.StepRequest{Plan: c.plan, Expand: scope()}, filepath.Join(t.TempDir(), "j.json"))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want one containing %q", err, c.want)
			}
		})
	}
}

// TestProvisionerDriver: jobs that all say driver = "sim" get a sim
// provisioner without a word in its config; a sim provisioner refuses a
// job of another driver, and drivers it cannot run are named.
func TestProvisionerDriver(t *testing.T) {
	sim, local := jobspec.Spec{Driver: "sim"}, jobspec.Spec{Driver: "local"}
	for _, c := range []struct {
		name string
		cfg  map[string]any
		jobs map[string]jobspec.Spec
		want string
		err  string
	}{
		{"local jobs", nil, map[string]jobspec.Spec{"a": local}, "local", ""},
		{"all jobs simulated", nil, map[string]jobspec.Spec{"a": sim, "b": sim}, "sim", ""},
		{"mixed jobs default to local", nil, map[string]jobspec.Spec{"a": sim, "b": local}, "local", ""},
		{"sim asked with a local job", map[string]any{"driver": "sim"}, map[string]jobspec.Spec{"a": sim, "b": local}, "", "job b has driver \"local\""},
		{"sim asked", map[string]any{"driver": "sim"}, map[string]jobspec.Spec{"a": sim}, "sim", ""},
		{"ec2 not yet", map[string]any{"driver": "ec2"}, map[string]jobspec.Spec{"a": local}, "", "config.driver: \"ec2\""},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := provisionerDriver(c.cfg, c.jobs)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err = %v, want one containing %q", err, c.err)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("driver = %q, %v; want %q", got, err, c.want)
			}
		})
	}
	args, err := simArgs(map[string]any{"sim_connections": float64(3), "reconcile_every": "5s"}, "/j.json", Self{})
	if err != nil || !strings.Contains(strings.Join(args, " "), "--driver sim --sim-connections 3 --reconcile-every 5s") {
		t.Fatalf("simArgs = %q, %v", args, err)
	}
	if _, err := simArgs(map[string]any{"worker_command": []any{"x"}}, "/j.json", Self{}); err == nil {
		t.Fatal("simArgs accepted a worker_command")
	}
	if _, err := simArgs(map[string]any{"sim_connections": float64(0)}, "/j.json", Self{}); err == nil || !strings.Contains(err.Error(), "config.sim_connections") {
		t.Fatalf("sim_connections 0: %v", err)
	}
}
