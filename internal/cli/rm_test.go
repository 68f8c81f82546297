package cli

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"nightshift/internal/runlayout"
)

// TestRmAndPruneRefuseALiveRun: rm and prune remove a torn-down run's
// records and files, and never a live one.
func TestRmAndPruneRefuseALiveRun(t *testing.T) {
	home, dir := t.TempDir(), t.TempDir()
	t.Setenv("NIGHTSHIFT_HOME", home)
	if err := os.WriteFile(dir+"/alive", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"one", "two"} {
		if code, out, stderr := run(t, launch, "--home", home, "--plain", "--name", name, "-g", "dir="+dir, "testdata/checkable.toml"); code != 0 {
			t.Fatalf("launch %s: exit %d\n%s\n%s", name, code, out, stderr)
		}
	}
	if code, _, stderr := run(t, mgmtc, "rm", "one", "--home", home); code != 1 || !strings.Contains(stderr, "live") {
		t.Errorf("rm of a live run: exit %d, want 1 saying it is live\n%s", code, stderr)
	}
	code, out, stderr := run(t, mgmtc, "prune", "--older-than", "1ns", "--json", "--home", home)
	var res struct{ Removed, Live []string }
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || len(res.Removed) != 0 || len(res.Live) != 2 {
		t.Errorf("prune of two live runs: exit %d, %+v, want both kept\n%s%s", code, res, out, stderr)
	}
	if _, err := os.Stat(runlayout.Of(home, "one").Dir()); err != nil {
		t.Fatalf("a refused rm removed files: %v", err)
	}
	if code, out, stderr := run(t, mgmtc, "teardown", "one", "--home", home); code != 0 {
		t.Fatalf("teardown: exit %d\n%s\n%s", code, out, stderr)
	}
	if code, out, stderr := run(t, mgmtc, "rm", "one", "--home", home); code != 0 || !strings.Contains(out, "removed one") {
		t.Fatalf("rm of a torn-down run: exit %d\n%s\n%s", code, out, stderr)
	}
	if _, err := os.Stat(runlayout.Of(home, "one").Dir()); !os.IsNotExist(err) {
		t.Errorf("rm left the run's directory (err %v)", err)
	}
	code, out, _ = run(t, mgmtc, "list", "--json", "--home", home)
	var runs []struct{ Name string }
	if code != 0 || json.Unmarshal([]byte(out), &runs) != nil || len(runs) != 1 || runs[0].Name != "two" {
		t.Errorf("list after rm: exit %d, %s; want only two", code, out)
	}
	if code, _, _ := run(t, mgmtc, "prune", "--home", home); code != 2 {
		t.Errorf("prune without --older-than: exit %d, want 2", code)
	}
	if code, out, stderr := run(t, mgmtc, "teardown", "two", "--home", home); code != 0 {
		t.Fatalf("teardown: exit %d\n%s\n%s", code, out, stderr)
	}
	if code, out, stderr := run(t, mgmtc, "prune", "--older-than", "1ns", "--home", home); code != 0 || !strings.Contains(out, "removed two") {
		t.Errorf("prune of a torn-down run: exit %d\n%s%s", code, out, stderr)
	}
}
