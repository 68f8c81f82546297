package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"nightshift/internal/app"
	"nightshift/internal/procscan"
	"nightshift/mgmt"
)

// run invokes a command in-process exactly as the binary would.
func run(t *testing.T, cmd func(context.Context, []string, *bytes.Buffer, *bytes.Buffer) int, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := cmd(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

// ctxT and bufT shorten the signatures of the command table tests.
type (
	ctxT = context.Context
	bufT = bytes.Buffer
)

func launch(ctx context.Context, args []string, o, e *bytes.Buffer) int {
	return Launch(ctx, args, o, e)
}
func mgmtc(ctx context.Context, args []string, o, e *bytes.Buffer) int { return Mgmt(ctx, args, o, e) }

func TestInvalidPlansExit2WithPositionAndLaunchNothing(t *testing.T) {
	cases := []struct {
		file string
		want []string // substrings of stderr
	}{
		{"forward-ref.toml", []string{"forward-ref.toml:", "${b.port}", "level"}},
		{"unknown-key.toml", []string{"unknown-key.toml:5", "ready_timout"}},
		{"syntax.toml", []string{"syntax.toml:4"}},
		{"missing-worker.toml", []string{"missing-worker.toml:6", "config.jobs.w.worker.command", "testdata/no-such-worker does not exist"}},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			home := t.TempDir()
			code, _, stderr := run(t, launch, "--home", home, filepath.Join("testdata", c.file))
			if code != 2 {
				t.Fatalf("exit %d, want 2; stderr:\n%s", code, stderr)
			}
			for _, w := range c.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			if _, err := os.Stat(filepath.Join(home, "nightshift.db")); !os.IsNotExist(err) {
				t.Errorf("an invalid plan created a run database (err=%v)", err)
			}
		})
	}
}

func TestDryRunPrintsLevelsAndReferences(t *testing.T) {
	code, out, stderr := run(t, launch, "--dry-run", "../../examples/hello/plan.toml")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, w := range []string{"level 1", "level 3", "echo", "greeter", "notes", "smoke", "greeter -> echo", "nothing launched"} {
		if !strings.Contains(out, w) {
			t.Errorf("dry run output lacks %q:\n%s", w, out)
		}
	}
}

func status(t *testing.T, home, runName string) mgmt.RunStatus {
	t.Helper()
	code, out, stderr := run(t, mgmtc, "--home", home, "status", "--json", runName)
	if code != 0 && code != 3 { // 3: read fine, not ready
		t.Fatalf("status exit %d: %s", code, stderr)
	}
	var st mgmt.RunStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status JSON: %v\n%s", err, out)
	}
	return st
}

// TestHelloEndToEnd is the "done when": launch the example, see every
// service ready with the exported port wired through, tear down, and find no
// process of the run left.
func TestHelloEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("boots real daemons")
	}
	home := t.TempDir()
	t.Setenv("NIGHTSHIFT_HOME", home)
	code, out, stderr := run(t, launch, "--home", home, "--plain", "../../examples/hello/plan.toml")
	if code != 0 {
		t.Fatalf("launch exit %d\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
	}
	t.Cleanup(func() { procscan.Kill("", home, "hello", 0) })

	st := status(t, home, "hello")
	if st.State != "ready" || len(st.Levels) != 3 {
		t.Fatalf("run state %q with %d levels, want ready with 3", st.State, len(st.Levels))
	}
	var echoPort, greeterURL string
	for _, l := range st.Levels {
		for _, s := range l.Services {
			if s.State != "ready" {
				t.Errorf("service %s is %s", s.Name, s.State)
			}
			switch s.Name {
			case "echo":
				echoPort = s.Attributes["port"]
			case "greeter":
				greeterURL = s.Attributes["url"]
			}
		}
	}
	if echoPort == "" || !strings.HasPrefix(greeterURL, "http://127.0.0.1:") {
		t.Fatalf("exports not recorded: echo port %q, greeter url %q", echoPort, greeterURL)
	}
	procs, err := procscan.Find("", home, "hello")
	if err != nil || len(procs) < 2 {
		t.Fatalf("want the two daemons running, found %v (err %v)", procs, err)
	}

	// Resume: launching again re-verifies and boots nothing twice.
	code, out, stderr = run(t, launch, "--home", home, "--plain", "../../examples/hello/plan.toml")
	if code != 0 {
		t.Fatalf("relaunch exit %d: %s %s", code, out, stderr)
	}
	if strings.Contains(out, "step=boot") {
		t.Errorf("resume booted something again:\n%s", out)
	}
	if again := status(t, home, "hello"); again.Levels[0].Services[0].Attributes["port"] != echoPort {
		t.Errorf("resume changed echo's port: %q -> %q", echoPort, again.Levels[0].Services[0].Attributes["port"])
	}

	// While another command holds the run, launch, repair and teardown are
	// refused and change nothing.
	release, err := app.LockRun(home, "hello", "launch")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		cmd  func(context.Context, []string, *bytes.Buffer, *bytes.Buffer) int
		args []string
	}{
		{"launch", launch, []string{"--home", home, "--plain", "../../examples/hello/plan.toml"}},
		{"repair", mgmtc, []string{"--home", home, "repair", "hello"}},
		{"teardown", mgmtc, []string{"--home", home, "teardown", "hello"}},
	} {
		code, out, stderr := run(t, c.cmd, c.args...)
		if code != 1 || !strings.Contains(stderr, "run is busy: launch (pid ") {
			t.Errorf("%s while the run is locked: exit %d, stderr %q, want 1 naming the holder", c.name, code, stderr)
		}
		if strings.Contains(out, "step=boot") || strings.Contains(out, "destroyed") {
			t.Errorf("%s acted while the run was locked:\n%s", c.name, out)
		}
	}
	if procs, _ := procscan.Find("", home, "hello"); len(procs) < 2 {
		t.Fatalf("daemons gone while the run was locked: %v", procs)
	}
	release()

	code, out, stderr = run(t, mgmtc, "--home", home, "teardown", "hello")
	if code != 0 {
		t.Fatalf("teardown exit %d\n%s\n%s", code, out, stderr)
	}
	if left, _ := procscan.Find("", home, "hello"); len(left) != 0 {
		t.Fatalf("processes left after teardown: %v", left)
	}
	if st := status(t, home, "hello"); st.State != "terminated" {
		t.Fatalf("after teardown the run is %q", st.State)
	}
	// Idempotent.
	if code, out, stderr = run(t, mgmtc, "--home", home, "teardown", "hello"); code != 0 {
		t.Fatalf("second teardown exit %d\n%s\n%s", code, out, stderr)
	}
}

func TestFailureReportAndRollback(t *testing.T) {
	home := t.TempDir()
	t.Setenv("NIGHTSHIFT_HOME", home)
	marker := filepath.Join(t.TempDir(), "terminated")
	code, out, stderr := run(t, launch, "--home", home, "--plain", "--on-failure", "rollback",
		"-g", "marker="+marker, "testdata/failing.toml")
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s\n%s", code, out, stderr)
	}
	for _, w := range []string{"second", "boot", "exit code 3", "on stderr", "second.log"} {
		if !strings.Contains(stderr, w) {
			t.Errorf("failure report lacks %q:\n%s", w, stderr)
		}
	}
	got, err := os.ReadFile(marker)
	if err != nil || !strings.Contains(string(got), "first terminated") {
		t.Fatalf("rollback did not terminate level 1 (marker %q, err %v)", got, err)
	}
	code, out, _ = run(t, mgmtc, "--home", home, "history", "failing")
	if code != 0 || !strings.Contains(out, "second") {
		t.Fatalf("history exit %d:\n%s", code, out)
	}
}

func TestMgmtUnknownRunAndUsage(t *testing.T) {
	home := t.TempDir()
	if code, _, _ := run(t, mgmtc, "--home", home, "frobnicate"); code != 2 {
		t.Errorf("unknown command exit %d, want 2", code)
	}
	// Without a run name, status wants the home's only run; there is none.
	if code, _, stderr := run(t, mgmtc, "--home", home, "status"); code != 1 || !strings.Contains(stderr, "no runs") {
		t.Errorf("status without run in an empty home: exit %d, want 1: %s", code, stderr)
	}
	if code, _, stderr := run(t, mgmtc, "--home", home, "status", "nope"); code != 1 || !strings.Contains(stderr, "no runs") {
		t.Errorf("status of unknown run: exit %d, %s", code, stderr)
	}
}

// TestBadRunNamesExit2AndMakeNothing: a run name becomes the paths of the
// run's secret, lock and log; a bad one is refused before any exists.
func TestBadRunNamesExit2AndMakeNothing(t *testing.T) {
	root := t.TempDir()
	home := filepath.Join(root, "home", "ns")
	plan := "../../examples/hello/plan.toml"
	for _, name := range []string{"../../elsewhere/x", "a\nb", "Upper", "under_score", "a.b", "x\x00"} {
		for _, args := range [][]string{
			{"--home", home, "--name", name, plan},
			{"--home", home, "--dry-run", "--name", name, plan},
		} {
			code, _, stderr := run(t, launch, args...)
			if code != 2 || !strings.Contains(stderr, "must match") {
				t.Errorf("launch %q: exit %d, stderr %q", args, code, stderr)
			}
			if strings.ContainsAny(stderr, "\x00") || strings.Contains(stderr, "a\nb") {
				t.Errorf("stderr holds the raw name: %q", stderr)
			}
		}
		for _, sub := range [][]string{{"status", name}, {"history", name}, {"repair", name}, {"teardown", name}, {"logs", name, "svc"}, {"decisions", name, "job"}, {"reconfigure", name, "job", "n=1"}} {
			code, _, stderr := run(t, mgmtc, append([]string{"--home", home}, sub...)...)
			if code != 2 || !strings.Contains(stderr, "must match") {
				t.Errorf("mgmt %q: exit %d, stderr %q", sub, code, stderr)
			}
		}
	}
	var made []string
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if p != root {
			made = append(made, p)
		}
		return nil
	})
	if len(made) > 0 {
		t.Errorf("bad run names made %v", made)
	}
	if code, _, stderr := run(t, mgmtc, "--home", home, "logs", "hello", "../../etc"); code != 2 {
		t.Errorf("logs with a path for a service: exit %d, stderr %q", code, stderr)
	}
}

// TestProdPlaceholders: plans/prod.toml as shipped holds placeholders
// (ami-CHANGE-ME, sg-CHANGE-ME); launch refuses it with each one's
// file:line before anything runs, and --dry-run warns and succeeds.
func TestProdPlaceholders(t *testing.T) {
	home := t.TempDir()
	code, _, stderr := run(t, launch, "--home", home, "--dry-run", "../../plans/prod.toml")
	if code != 0 {
		t.Fatalf("dry run exit %d: %s", code, stderr)
	}
	for _, w := range []string{"warning: ", "prod.toml:", "globals.ami", "globals.security_group", "CHANGE-ME"} {
		if !strings.Contains(stderr, w) {
			t.Errorf("dry run warnings lack %q:\n%s", w, stderr)
		}
	}
	code, _, stderr = run(t, launch, "--home", home, "../../plans/prod.toml")
	if code != 2 {
		t.Fatalf("launch with placeholders: exit %d, want 2\n%s", code, stderr)
	}
	for _, w := range []string{"prod.toml:", "globals.ami", "globals.security_group"} {
		if !strings.Contains(stderr, w) {
			t.Errorf("launch error lacks %q:\n%s", w, stderr)
		}
	}
	if _, err := os.Stat(filepath.Join(home, "nightshift.db")); !os.IsNotExist(err) {
		t.Errorf("a plan with placeholders created a run database (err=%v)", err)
	}
	// Replaced on the command line: no placeholder is left to warn about.
	code, _, stderr = run(t, launch, "--home", home, "--dry-run", "-g", "ami=ami-1", "-g", "security_group=sg-1", "../../plans/prod.toml")
	if code != 0 || strings.Contains(stderr, "CHANGE-ME") {
		t.Errorf("dry run with every placeholder set: exit %d\n%s", code, stderr)
	}
}

// TestDryRunShowsDNSNames: the names a plan's pools would get, rendered as
// the provisioner renders them; a bad dns table is named, not launched.
func TestDryRunShowsDNSNames(t *testing.T) {
	code, out, stderr := run(t, launch, "--dry-run", "--name", "prod", "testdata/dns.toml")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, w := range []string{
		"web in zone example.internal: web-0.prod.example.internal, web-1.prod.example.internal, web-2.prod.example.internal; pool web.prod.example.internal\n",
		`bad: key dns.name: "bad.example.internal": want ${index}`,
	} {
		if !strings.Contains(out, w) {
			t.Errorf("dry run output lacks %q:\n%s", w, out)
		}
	}
	code, out, stderr = run(t, launch, "--dry-run", "--json", "--name", "prod", "testdata/dns.toml")
	if code != 0 || !strings.Contains(out, `"web-2.prod.example.internal"`) || !strings.Contains(out, `"pool": "web.prod.example.internal"`) {
		t.Errorf("--json: exit %d, %s%s", code, out, stderr)
	}
}
