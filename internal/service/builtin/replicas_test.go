package builtin

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"nightshift/bootlevel"
	"nightshift/launchplan"
)

// TestReplicasAtPlanValidation: config.replicas on the daemons expands the
// service into NAME-0 … NAME-(N-1), and a bad count, or replicas without a
// PostgreSQL store to share, is refused when the plan is loaded, at the
// file and line of config.replicas.
func TestReplicasAtPlanValidation(t *testing.T) {
	cases := []struct {
		name, config string
		extra        string   // other keys of the service
		want         []string // services, when accepted
		wantErr      string
	}{
		{name: "two on postgres", config: `replicas = 2, store = "postgres://u@h/db"`, want: []string{"ctl-0", "ctl-1"}},
		{name: "one", config: `replicas = 1`, want: []string{"ctl"}},
		{name: "absent", config: `tick = "1s"`, want: []string{"ctl"}},
		{name: "store from a global", config: `replicas = 3, store = "${global.pg}"`, want: []string{"ctl-0", "ctl-1", "ctl-2"}},
		{name: "no store", config: `replicas = 2`, wantErr: "p.toml:4: level[1].service.ctl.config.replicas: replicas = 2 needs store = \"postgres://...\""},
		{name: "zero", config: `replicas = 0, store = "postgres://u@h/db"`, wantErr: "p.toml:4: level[1].service.ctl.config.replicas: want 1 to 9 replicas, got 0"},
		{name: "too many", config: `replicas = 10, store = "postgres://u@h/db"`, wantErr: "want 1 to 9 replicas, got 10"},
		{name: "not a number", config: `replicas = "2", store = "postgres://u@h/db"`, wantErr: "config.replicas: want a whole number of replicas, got string"},
		{name: "with replica_count", config: `replicas = 2, store = "postgres://u@h/db"`, extra: "replica_count = 2, ", wantErr: "set with replica_count too"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			src := "[globals]\npg = \"postgres://u@h/db\"\n[[level]]\nservice.ctl = { type = \"controller\", " + tc.extra + "config = { " + tc.config + " } }\n"
			p := filepath.Join(dir, "p.toml")
			if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
				t.Fatal(err)
			}
			plan, err := launchplan.Load(p, launchplan.Options{Types: Names(), Replicas: Replicas})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(strings.ReplaceAll(err.Error(), dir+"/", ""), tc.wantErr) {
					t.Fatalf("got %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range plan.Levels[0].Services {
				got = append(got, s.Name)
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("services %v, want %v", got, tc.want)
			}
		})
	}
}

// TestReplicaArgs: a replica stands by under the lease and records its
// role where status reads it; a single daemon gets neither flag; the boot
// refuses what plan validation would have (a stored plan may be older).
func TestReplicaArgs(t *testing.T) {
	t.Setenv("NIGHTSHIFT_HOME", t.TempDir())
	jobs := map[string]any{"web": map[string]any{"engine": "npreserving", "policy": map[string]any{"n": int64(1)}}}
	const store = "postgres://postgres@127.0.0.1:5432/postgres"
	for _, tc := range []struct {
		name     string
		cfg      map[string]any
		want     []string
		wantNot  []string
		wantFail string
	}{
		{name: "two replicas", cfg: map[string]any{"jobs": jobs, "store": store, "replicas": float64(2), "lease_ttl": "3s"},
			want: []string{"--lease", "--lease-file", "--lease-ttl 3s"}},
		{name: "one", cfg: map[string]any{"jobs": jobs, "store": store, "replicas": float64(1)}, wantNot: []string{"--lease"}},
		{name: "no store", cfg: map[string]any{"jobs": jobs, "replicas": float64(2)}, wantFail: "config.replicas"},
		{name: "ttl without replicas", cfg: map[string]any{"jobs": jobs, "store": store, "lease_ttl": "3s"}, wantFail: "config.lease_ttl"},
		{name: "bad ttl", cfg: map[string]any{"jobs": jobs, "store": store, "replicas": float64(2), "lease_ttl": "1ms"}, wantFail: "config.lease_ttl"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			args, err := controllerSpec.Args(bootlevel.StepRequest{Run: "r1"}, tc.cfg, dir, "", Self{})
			if tc.wantFail != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantFail) {
					t.Fatalf("err = %v, want %s", err, tc.wantFail)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			line := strings.Join(args, " ")
			for _, w := range tc.want {
				if !strings.Contains(line, w) {
					t.Errorf("%q lacks %s", line, w)
				}
			}
			for _, w := range tc.wantNot {
				if strings.Contains(line, w) {
					t.Errorf("%q has %s", line, w)
				}
			}
			if i := slices.Index(args, "--lease-file"); i >= 0 && args[i+1] != filepath.Join(dir, LeaseFile) {
				t.Errorf("lease file %s, want in %s", args[i+1], dir)
			}
		})
	}
}
