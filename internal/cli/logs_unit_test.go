package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"nightshift/internal/runlayout"
	"nightshift/internal/store/runstore"
)

// TestLogsSaysWhereAUnitLogs: a daemon a built-in type installed on a host
// of its own (it recorded unit, and no log here) writes to that host's
// journal; mgmt logs still shows the step log, and says where the rest is
// instead of showing less than for a local daemon without a word.
func TestLogsSaysWhereAUnitLogs(t *testing.T) {
	home, dir := t.TempDir(), t.TempDir()
	t.Setenv("NIGHTSHIFT_HOME", home)
	if err := os.WriteFile(filepath.Join(dir, "alive"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, stderr := run(t, launch, "--home", home, "--plain", "-g", "dir="+dir, "testdata/checkable.toml"); code != 0 {
		t.Fatalf("launch exit %d\n%s\n%s", code, out, stderr)
	}
	code, _, stderr := run(t, mgmtc, "--home", home, "logs", "checkable", "svc")
	if code != 0 || strings.Contains(stderr, "journalctl") {
		t.Fatalf("logs of a service here: exit %d, stderr %q; want no word of a unit", code, stderr)
	}

	st, err := runstore.Open(context.Background(), runlayout.DB(home))
	if err != nil {
		t.Fatal(err)
	}
	recs, err := st.Services(context.Background(), "checkable")
	if err != nil || len(recs) == 0 {
		t.Fatalf("records %v: %v", recs, err)
	}
	rec := recs[0]
	rec.Attributes["unit"] = "nightshift-checkable-svc.service"
	rec.Host.Hostname = "10.0.0.7"
	if err := st.PutService(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	st.Close()

	code, out, stderr := run(t, mgmtc, "--home", home, "logs", "checkable", rec.Name)
	if code != 0 || len(strings.TrimSpace(out)) == 0 {
		t.Errorf("logs exit %d, output %q; want the step log still", code, out)
	}
	if want := "runs as unit nightshift-checkable-svc.service on 10.0.0.7; its own output is there: journalctl -u nightshift-checkable-svc.service"; !strings.Contains(stderr, want) {
		t.Errorf("stderr %q does not say %q", stderr, want)
	}
}
