package cli

import (
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
