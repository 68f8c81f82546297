package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"nightshift/internal/runlayout"
	"nightshift/internal/store/runstore"
)

// TestIdenticalRetriesAreRecordedOnce: a service that fails its ready check
// the same way many times before it comes up leaves two retry events in
// history (the first and the last, with a count), not one per attempt.
func TestIdenticalRetriesAreRecordedOnce(t *testing.T) {
	home, dir := t.TempDir(), t.TempDir()
	t.Setenv("NIGHTSHIFT_HOME", home)
	attempts := filepath.Join(dir, "attempts")
	// The ready check counts its attempts; the service "comes up" after
	// the fifth.
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if b, _ := os.ReadFile(attempts); strings.Count(string(b), "\n") >= 5 {
				os.WriteFile(filepath.Join(dir, "alive"), nil, 0o644)
				return
			}
		}
	}()
	plan := filepath.Join(dir, "plan.toml")
	if err := os.WriteFile(plan, []byte(`name = "retrying"
[defaults]
ready_interval = "20ms"
timeout = "30s"
[[level]]
[level.service.svc]
boot = ["true"]
ready = ["sh", "-c", "echo x >> \"$0/attempts\"; test -e \"$0/alive\"", "`+dir+`"]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := run(t, launch, "--home", home, "--plain", plan)
	if code != 0 {
		t.Fatalf("launch exit %d\n%s\n%s", code, out, stderr)
	}
	st, err := runstore.Open(context.Background(), runlayout.DB(home))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	evs, err := st.Events(context.Background(), "retrying", 0)
	if err != nil {
		t.Fatal(err)
	}
	var retries []string
	for _, e := range evs {
		if e.Kind == "step.retry" {
			retries = append(retries, e.Message)
		}
	}
	if len(retries) != 2 || !strings.Contains(retries[0], "ready attempt") || !strings.Contains(retries[1], "identical failures since attempt") {
		t.Fatalf("want the first and the last retry, the last with a count; got %d:\n%s", len(retries), strings.Join(retries, "\n"))
	}
	if n := strings.Count(out, "step.retry"); n != 2 {
		t.Errorf("--plain printed %d retry lines, want 2:\n%s", n, out)
	}
}

// TestOneHeaderPerStep: each step of a local service starts its log with
// one header line, not the engine's and the driver's both.
func TestOneHeaderPerStep(t *testing.T) {
	home := t.TempDir()
	t.Setenv("NIGHTSHIFT_HOME", home)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "alive"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, stderr := run(t, launch, "--home", home, "--plain", "-g", "dir="+dir, "testdata/checkable.toml"); code != 0 {
		t.Fatalf("launch exit %d\n%s\n%s", code, out, stderr)
	}
	b, err := os.ReadFile(runlayout.Of(home, "checkable").StepLog("svc"))
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []string{"boot", "ready"} {
		if n := strings.Count(string(b), " "+step+": "); n != 1 {
			t.Errorf("%d headers for step %s, want 1:\n%s", n, step, b)
		}
	}
}
