package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestEventsStream: mgmt events gives the run's history in time order,
// filtered by service and type, as one JSON object per line with --json.
func TestEventsStream(t *testing.T) {
	home, dir := t.TempDir(), t.TempDir()
	t.Setenv("NIGHTSHIFT_HOME", home)
	if err := os.WriteFile(filepath.Join(dir, "alive"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, stderr := run(t, launch, "--home", home, "--plain", "-g", "dir="+dir, "testdata/checkable.toml"); code != 0 {
		t.Fatalf("launch exit %d\n%s\n%s", code, out, stderr)
	}
	code, out, stderr := run(t, mgmtc, "events", "checkable", "--json", "--home", home)
	if code != 0 {
		t.Fatalf("events exit %d\n%s", code, stderr)
	}
	type ev struct {
		Time                         time.Time
		Source, Type, Service, State string
	}
	var all []ev
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var e ev
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("not one JSON object per line: %v\n%s", err, out)
		}
		if len(all) > 0 && e.Time.Before(all[len(all)-1].Time) {
			t.Errorf("events out of time order:\n%s", out)
		}
		all = append(all, e)
	}
	ready := false
	for _, e := range all {
		ready = ready || (e.Service == "svc" && e.State == "ready" && e.Source == "run")
	}
	if len(all) < 3 || !ready {
		t.Errorf("events lack the service's way to ready:\n%s", out)
	}
	code, out, _ = run(t, mgmtc, "events", "checkable", "--service", "svc", "--type", "service.state", "--since", "1h", "--home", home)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) == 0 || !strings.Contains(out, "service/svc") {
		t.Fatalf("filtered events: exit %d\n%s", code, out)
	}
	for _, l := range lines {
		if !strings.Contains(l, "service.state") || !strings.Contains(l, "service/svc") {
			t.Errorf("filter let through %q", l)
		}
	}
	if code, out, _ := run(t, mgmtc, "events", "checkable", "--service", "nope", "--home", home); code != 0 || out != "" {
		t.Errorf("events of no service: exit %d, %q", code, out)
	}
}
