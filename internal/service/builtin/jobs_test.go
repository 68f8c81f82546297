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
		{"worker user not a name", func() *launchplan.Plan {
			p := controllerPlan(map[string]any{"w": map[string]any{"worker": map[string]any{"command": []any{"/bin/true"}, "user": "Root Admin"}}})
			p.Levels[1].Services[0].Pos = launchplan.Pos{File: "local.toml", Line: 33}
			return p
		}(), `local.toml:33: service controller: config.jobs.w: key worker.user: "Root Admin" is not a user name`},
		{"bad probe", controllerPlan(map[string]any{"w": map[string]any{"worker": map[string]any{"command": []any{"w"},
			"health": map[string]any{"http": "127.0.0.1:$${port}/healthz"}}}}), "config.jobs.w: key worker.health.http:"},
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
		{"ec2 asked", map[string]any{"driver": "ec2"}, map[string]jobspec.Spec{"a": {Driver: "ec2"}}, "ec2", ""},
		{"unknown driver", map[string]any{"driver": "gce"}, map[string]jobspec.Spec{"a": local}, "", "config.driver: \"gce\""},
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

// TestProvisionerDrivers: the built-in provisioner runs local pools with a
// worker command and EC2 pools with the region and endpoint its config
// names, and refuses keys that do not fit the driver.
func TestProvisionerDrivers(t *testing.T) {
	sleeper := map[string]any{"driver": "ec2", "worker": map[string]any{"command": []any{"/bin/true"}},
		"instance": map[string]any{"image": "ami-1", "sitter_url": "https://example.com/sitter"}}
	req := bootlevel.StepRequest{Plan: controllerPlan(map[string]any{"sleeper": sleeper}), Expand: scope()}
	for _, tc := range []struct {
		name     string
		cfg      map[string]any
		want     []string // consecutive args
		notWant  string
		wantFail string
	}{
		{name: "ec2 with region and endpoint", cfg: map[string]any{"driver": "ec2", "ec2_region": "us-west-2", "ec2_endpoint_url": "http://127.0.0.1:5055"},
			want: []string{"--driver", "ec2", "--ec2-region", "us-west-2", "--ec2-endpoint-url", "http://127.0.0.1:5055"}, notWant: "--worker-command"},
		{name: "ec2 with the SDK's region", cfg: map[string]any{"driver": "ec2", "ec2_region": ""}, want: []string{"--driver", "ec2"}, notWant: "--ec2-region"},
		{name: "local", cfg: map[string]any{"worker_command": []any{"/bin/sitter", "agent"}}, want: []string{"--driver", "local", "--worker-command", "/bin/sitter agent"}},
		{name: "ec2 with a worker command", cfg: map[string]any{"driver": "ec2", "worker_command": []any{"x"}}, wantFail: "config.worker_command"},
		{name: "local with a region", cfg: map[string]any{"worker_command": []any{"x"}, "ec2_region": "us-east-1"}, wantFail: "config.ec2_region"},
		{name: "unknown driver", cfg: map[string]any{"driver": "gce"}, wantFail: "config.driver"},
		{name: "local with a sim key", cfg: map[string]any{"worker_command": []any{"x"}, "sim_connections": float64(2)}, wantFail: "config.sim_connections"},
		{name: "region not a string", cfg: map[string]any{"driver": "ec2", "ec2_region": int64(1)}, wantFail: "config.ec2_region"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args, err := provisionerSpec.Args(req, tc.cfg, t.TempDir(), "", Self{ManagementURLFile: "/run/m"})
			if tc.wantFail != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantFail) {
					t.Fatalf("err = %v, want one naming %s", err, tc.wantFail)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			joined := "\x00" + strings.Join(args, "\x00") + "\x00"
			if !strings.Contains(joined, "\x00"+strings.Join(tc.want, "\x00")+"\x00") {
				t.Errorf("args %q lack %q", args, tc.want)
			}
			if tc.notWant != "" && strings.Contains(joined, tc.notWant) {
				t.Errorf("args %q hold %s", args, tc.notWant)
			}
		})
	}
}

// TestWriteRunJobsDNS: a job's dns table reaches the provisioner's jobs
// file with the plan's escapes undone ($${job} is the name template's
// ${job}) and its plan references resolved; a bad one is refused with the
// service's file:line and the key.
func TestWriteRunJobsDNS(t *testing.T) {
	web := map[string]any{"worker": map[string]any{"command": []any{"/bin/w"}},
		"dns": map[string]any{"zone": "example.internal", "name": "$${job}-$${index}.${.run}.example.internal", "ttl": int64(30)}}
	path := filepath.Join(t.TempDir(), "jobs.json")
	if _, err := writeRunJobs(bootlevel.StepRequest{Plan: controllerPlan(map[string]any{"web": web}), Expand: scope()}, path); err != nil {
		t.Fatal(err)
	}
	got, err := jobspec.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	d := got["web"].DNS
	if d == nil || d.Name != "${job}-${index}.r1.example.internal" || d.TTL != 30 || d.Zone != "example.internal" {
		t.Fatalf("dns = %+v", d)
	}
	if n, err := jobspec.RenderName(d.Name, "web", "r1", 2); err != nil || n != "web-2.r1.example.internal" {
		t.Fatalf("name = %q, %v", n, err)
	}

	p := controllerPlan(map[string]any{"web": map[string]any{"dns": map[string]any{"zone": "Z1", "name": "web.example.internal"}}})
	p.Levels[1].Services[0].Pos = launchplan.Pos{File: "prod.toml", Line: 90}
	_, err = writeRunJobs(bootlevel.StepRequest{Plan: p, Expand: scope()}, filepath.Join(t.TempDir(), "j.json"))
	if want := `prod.toml:90: service controller: config.jobs.web: key dns.name: "web.example.internal": want ${index}`; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want %q", err, want)
	}
}

// TestProvisionerWithoutOwnWorkerUsers: a management_url that resolved to
// nothing at boot leaves the provisioner no way to give each worker a user
// of its own; that is refused unless the plan accepted sharing.
func TestProvisionerWithoutOwnWorkerUsers(t *testing.T) {
	sleeper := map[string]any{"driver": "ec2", "worker": map[string]any{"command": []any{"/bin/true"}},
		"instance": map[string]any{"image": "ami-1", "sitter_url": "https://example.com/sitter"}}
	req := bootlevel.StepRequest{Plan: controllerPlan(map[string]any{"sleeper": sleeper}), Expand: scope()}
	for _, cfg := range []map[string]any{
		{"worker_command": []any{"/bin/sitter", "agent"}},
		{"driver": "ec2"},
	} {
		if _, err := provisionerSpec.Args(req, cfg, t.TempDir(), "", Self{}); err == nil || !strings.Contains(err.Error(), "config.management_url") {
			t.Fatalf("%v without a management API: err %v, want one naming config.management_url", cfg, err)
		}
		cfg["shared_worker_user"] = true
		if _, err := provisionerSpec.Args(req, cfg, t.TempDir(), "", Self{}); err != nil {
			t.Fatalf("%v: %v, want sharing accepted", cfg, err)
		}
	}
}
