package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"nightshift/internal/app"
	"nightshift/internal/runlayout"
	"nightshift/internal/store/runstore"
	"nightshift/internal/worker/localworker"
)

// runFacts is what status must never change: the run's state and its
// history's length.
func runFacts(t *testing.T, home, run string) (string, int) {
	t.Helper()
	st, err := runstore.Open(context.Background(), runlayout.DB(home))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r, err := st.GetRun(context.Background(), run)
	if err != nil {
		t.Fatal(err)
	}
	evs, err := st.Events(context.Background(), run, 0)
	if err != nil {
		t.Fatal(err)
	}
	return string(r.State), len(evs)
}

// TestStatusIsReadOnlyAndScriptable is the first bug: status of a
// run whose service is dead exits 3, not 0; --verify runs each check once
// with --timeout, says which failed, writes nothing, and works while launch
// holds the run's lock. The run name may be left out when the home has one.
func TestStatusIsReadOnlyAndScriptable(t *testing.T) {
	home, dir := t.TempDir(), t.TempDir()
	t.Setenv("NIGHTSHIFT_HOME", home)
	if err := os.WriteFile(filepath.Join(dir, "alive"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, stderr := run(t, launch, "--home", home, "--plain", "-g", "dir="+dir, "testdata/checkable.toml"); code != 0 {
		t.Fatalf("launch exit %d\n%s\n%s", code, out, stderr)
	}
	stateBefore, eventsBefore := runFacts(t, home, "checkable")
	svcLog := runlayout.Of(home, "checkable").StepLog("svc")
	logBefore, err := os.ReadFile(svcLog)
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"status", "checkable"}, {"status"}, {"status", "--verify"}, {"status", "--json", "--verify"}} {
		if code, out, stderr := run(t, mgmtc, append(args, "--home", home)...); code != 0 {
			t.Errorf("%q of a ready run: exit %d, want 0\n%s\n%s", args, code, out, stderr)
		}
	}

	// The service dies; launch holds the run (as during a resume).
	if err := os.Remove(filepath.Join(dir, "alive")); err != nil {
		t.Fatal(err)
	}
	release, err := app.LockRun(home, "checkable", "launch")
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	code, out, stderr := run(t, mgmtc, "status", "--verify", "--home", home)
	if code != 3 || !strings.Contains(out, "ready check failing") || strings.Contains(stderr, "busy") {
		t.Errorf("status --verify of a dead service: exit %d, want 3 and the check failing\n%s\n%s", code, out, stderr)
	}
	if !strings.Contains(stderr, "svc") {
		t.Errorf("status --verify does not say which check failed:\n%s", stderr)
	}
	// A check that hangs is cut at --timeout and counts as failed.
	if err := os.WriteFile(filepath.Join(dir, "hang"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = run(t, mgmtc, "status", "checkable", "--verify", "--timeout", "300ms", "--home", home)
	if code != 3 || !strings.Contains(stderr, "timed out") && !strings.Contains(stderr, "timeout") {
		t.Errorf("status --verify of a hanging check: exit %d, want 3 and a timeout\n%s", code, stderr)
	}
	os.Remove(filepath.Join(dir, "hang"))
	if state, events := runFacts(t, home, "checkable"); state != stateBefore || events != eventsBefore {
		t.Errorf("status wrote to the run: state %s -> %s, events %d -> %d", stateBefore, state, eventsBefore, events)
	}
	if b, _ := os.ReadFile(svcLog); string(b) != string(logBefore) {
		t.Errorf("status --verify wrote to the service's log:\n%s", b[len(logBefore):])
	}
	release()

	// A second run: the name is needed again.
	if err := os.WriteFile(filepath.Join(dir, "alive"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := run(t, launch, "--home", home, "--plain", "--name", "other", "-g", "dir="+dir, "testdata/checkable.toml"); code != 0 {
		t.Fatalf("launch of a second run: exit %d\n%s", code, stderr)
	}
	if code, _, stderr := run(t, mgmtc, "status", "--home", home); code != 2 || !strings.Contains(stderr, "checkable") || !strings.Contains(stderr, "other") {
		t.Errorf("status without a run in a home of two: exit %d, want 2 naming both\n%s", code, stderr)
	}
	if code, _, stderr := run(t, mgmtc, "status", "other", "--home", home); code != 0 {
		t.Errorf("status of the second, ready run: exit %d, want 0\n%s", code, stderr)
	}
}

// TestStatusNotesWorkersSharingTheUser: a run whose provisioner could not
// isolate its local workers (it was not root) says so in mgmt status, in
// the table and in --json; one whose workers run as their own user does
// not.
func TestStatusNotesWorkersSharingTheUser(t *testing.T) {
	home, dir := t.TempDir(), t.TempDir()
	t.Setenv("NIGHTSHIFT_HOME", home)
	if err := os.WriteFile(filepath.Join(dir, "alive"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, stderr := run(t, launch, "--home", home, "--plain", "-g", "dir="+dir, "testdata/checkable.toml"); code != 0 {
		t.Fatalf("launch exit %d\n%s\n%s", code, out, stderr)
	}
	const want = "local workers run as your user alice: they can read this run's secrets"
	for _, tc := range []struct {
		id   localworker.Identity
		note bool
	}{{localworker.Identity{User: "alice"}, true}, {localworker.Identity{Isolated: true, User: "nightshift-worker"}, false}} {
		if err := localworker.WriteIdentity(home, "checkable", tc.id); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{{"status", "checkable"}, {"status", "--json", "checkable"}} {
			_, out, stderr := run(t, mgmtc, append(args, "--home", home)...)
			if got := strings.Contains(out, want); got != tc.note {
				t.Errorf("%q with %+v: note shown %v, want %v\n%s\n%s", args, tc.id, got, tc.note, out, stderr)
			}
		}
	}
}
