package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"nightshift/internal/service/builtin"
	"nightshift/launchplan"
)

// TestLocalWorkersShareUserWarning: launch warns a non-root operator whose
// plan runs local workers here that they can read the run's secrets, and
// stays quiet as root or when no local worker runs here.
func TestLocalWorkersShareUserWarning(t *testing.T) {
	load := func(name string) *launchplan.Plan {
		t.Helper()
		p, err := launchplan.Load(name, launchplan.Options{Types: builtin.Names(), Globals: map[string]string{"plan_dir": "/x"}})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	local := load("../../plans/local.toml")
	for _, tc := range []struct {
		name   string
		plan   *launchplan.Plan
		isRoot bool
		want   string
	}{
		{"not root, local workers", local, false, "local workers run as your user alice: they can read this run's secrets"},
		{"root isolates them", local, true, ""},
		{"no local jobs", load("../../plans/sim.toml"), false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := localWorkersShareUser(tc.plan, tc.isRoot, "alice")
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Fatalf("warning %q, want %q", got, tc.want)
			}
		})
	}
}

// TestWorkersCannotReachWarning: as root, launch warns of a job program its
// workers, running as their own user, could not run (a 0700 directory on
// the way, or a file only its owner may run); not root, or reachable, no
// warning.
func TestWorkersCannotReachWarning(t *testing.T) {
	base, err := os.MkdirTemp("", "nsreach-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	mk := func(dir string, dirMode, fileMode os.FileMode) string {
		d := filepath.Join(base, dir)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(d, "worker")
		if err := os.WriteFile(f, []byte("#!/bin/sh\n"), fileMode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(f, fileMode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, dirMode); err != nil {
			t.Fatal(err)
		}
		return f
	}
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	open, private, ownerOnly := mk("open", 0o755, 0o755), mk("private", 0o700, 0o755), mk("owner", 0o755, 0o700)
	plan := func(prog string) *launchplan.Plan {
		return &launchplan.Plan{Levels: []launchplan.Level{{Index: 1, Services: []launchplan.Service{
			{Name: "provisioner", Type: "provisioner", Pos: launchplan.Pos{File: "p.toml", Line: 3}},
			{Name: "controller", Type: "controller", Pos: launchplan.Pos{File: "p.toml", Line: 7},
				TypeConfig: map[string]any{"jobs": map[string]any{"w": map[string]any{"worker": map[string]any{"command": []any{prog}}}}}},
		}}}}
	}
	for _, tc := range []struct {
		name         string
		prog, sitter string
		isRoot       bool
		want         string
	}{
		{"reachable", open, open, true, ""},
		{"under a 0700 directory", private, open, true, "p.toml:7: config.jobs.w.worker.command: other users cannot reach " + private},
		{"only its owner may run it", ownerOnly, open, true, "other users cannot run " + ownerOnly + " (mode 0700)"},
		{"the sitter under a 0700 directory", open, private, true, "p.toml:3: config.worker_command (the sitter): other users cannot reach " + private},
		{"not root: workers run as the launcher", private, private, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := strings.Join(workersCannotReach(plan(tc.prog), "r1", tc.isRoot, tc.sitter), "\n")
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Fatalf("warnings %q, want %q", got, tc.want)
			}
		})
	}
}
