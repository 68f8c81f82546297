package builtin

import (
	"os"
	"slices"
	"strings"
	"testing"

	"nightshift/bootlevel"
	"nightshift/internal/nsenv"
	"nightshift/internal/redact"
	"nightshift/internal/runlayout"
)

// TestStoreKey: config key store hands both daemon types their PostgreSQL
// store through a 0600 file, never their command line; its password joins
// the run's redaction registry; a bad value is refused without being
// echoed; no key means no flag (the SQLite store).
func TestStoreKey(t *testing.T) {
	home := t.TempDir()
	t.Setenv(nsenv.Home, home)
	const pass = "storePassw0rdXYZ"
	storeURL := "postgres://ns:" + pass + "@db.internal:5432/nightshift"
	sleeper := map[string]any{"driver": "ec2", "worker": map[string]any{"command": []any{"/bin/true"}},
		"instance": map[string]any{"image": "ami-1", "sitter_url": "https://example.com/sitter"}}
	req := bootlevel.StepRequest{Run: "r1", Plan: controllerPlan(map[string]any{"sleeper": sleeper}), Expand: scope()}
	jobs := map[string]any{"web": map[string]any{"engine": "npreserving", "policy": map[string]any{"n": int64(1)}}}
	for _, tc := range []struct {
		name     string
		spec     Spec
		cfg      map[string]any
		wantFail string
	}{
		{name: "provisioner", spec: provisionerSpec, cfg: map[string]any{"driver": "ec2", "store": storeURL}},
		{name: "controller", spec: controllerSpec, cfg: map[string]any{"jobs": jobs, "store": storeURL}},
		{name: "provisioner without store", spec: provisionerSpec, cfg: map[string]any{"driver": "ec2"}},
		{name: "not postgres", spec: controllerSpec, cfg: map[string]any{"jobs": jobs, "store": "mysql://u:" + pass + "@h/db"}, wantFail: "config.store"},
		{name: "not a string", spec: provisionerSpec, cfg: map[string]any{"driver": "ec2", "store": int64(5432)}, wantFail: "config.store"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			args, err := tc.spec.Args(req, tc.cfg, dir, "", Self{Home: home, ManagementURLFile: "/run/m"})
			if tc.wantFail != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantFail) || strings.Contains(err.Error(), pass) {
					t.Fatalf("err = %v, want one naming %s without the password", err, tc.wantFail)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(strings.Join(args, " "), pass) {
				t.Fatalf("password on the command line: %q", args)
			}
			i := slices.Index(args, "--store-file")
			if _, ok := tc.cfg["store"]; !ok {
				if i >= 0 {
					t.Fatalf("--store-file without a store key: %q", args)
				}
				return
			}
			if i < 0 || i+1 >= len(args) {
				t.Fatalf("no --store-file in %q", args)
			}
			fi, err := os.Stat(args[i+1])
			if err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("store file %s: %v mode %v, want 0600", args[i+1], err, fi.Mode().Perm())
			}
			if b, _ := os.ReadFile(args[i+1]); strings.TrimSpace(string(b)) != storeURL {
				t.Errorf("store file holds %q", b)
			}
			r := redact.NewRedactor()
			if err := r.LoadRegistry(runlayout.Of(home, "r1").RedactValues()); err != nil {
				t.Fatal(err)
			}
			if got := r.String("x " + pass + " y"); strings.Contains(got, pass) {
				t.Errorf("the run's registry does not hide the store's password: %q", got)
			}
		})
	}
}
