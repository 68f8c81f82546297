package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestHelpIsOnStdoutWithExit0 asks for help every way an operator does and
// wants it on stdout, exit 0, naming the arguments and giving examples.
func TestHelpIsOnStdoutWithExit0(t *testing.T) {
	home := t.TempDir()
	cases := []struct {
		name string
		cmd  func(ctxT, []string, *bufT, *bufT) int
		args []string
		want []string
	}{
		{"launch --help", launch, []string{"--help"}, []string{"launch PLAN.toml", "Examples:", "--dry-run", "Exit codes:"}},
		{"launch -h", launch, []string{"-h"}, []string{"launch PLAN.toml"}},
		{"launch help", launch, []string{"help"}, []string{"launch PLAN.toml", "Examples:"}},
		{"mgmt --help", mgmtc, []string{"--help"}, []string{"Commands:", "status", "teardown", "Exit codes:", "3  status only"}},
		{"mgmt help", mgmtc, []string{"help"}, []string{"Commands:"}},
		{"mgmt help status", mgmtc, []string{"help", "status"}, []string{"mgmt status [RUN]"}},
		{"mgmt status --help", mgmtc, []string{"status", "--help"}, []string{"mgmt status [RUN]", "Examples:", "--verify", "Global Flags:", "--home"}},
		{"mgmt reconfigure --help", mgmtc, []string{"--home", home, "reconfigure", "--help"}, []string{"mgmt reconfigure RUN JOB KEY=VALUE...", "Examples:"}},
		{"mgmt logs -h", mgmtc, []string{"logs", "-h"}, []string{"mgmt logs RUN SERVICE|WORKER", "--follow"}},
		{"mgmt decisions --help", mgmtc, []string{"decisions", "--help"}, []string{"mgmt decisions RUN JOB"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, stderr := run(t, c.cmd, c.args...)
			if code != 0 || stderr != "" {
				t.Fatalf("exit %d, stderr %q; want 0 and nothing on stderr", code, stderr)
			}
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("help lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

// TestVersion: --version names the binary and its build.
func TestVersion(t *testing.T) {
	for _, c := range []struct {
		cmd  func(ctxT, []string, *bufT, *bufT) int
		name string
	}{{launch, "launch"}, {mgmtc, "mgmt"}} {
		code, out, stderr := run(t, c.cmd, "--version")
		if code != 0 || !strings.HasPrefix(out, c.name+" ") || !strings.Contains(out, "commit") {
			t.Errorf("%s --version: exit %d, stdout %q, stderr %q", c.name, code, out, stderr)
		}
	}
}

// TestFlagsAnywhere: the hint launch prints after a failure, and flags after
// the arguments, parse; usage errors still exit 2.
func TestFlagsAnywhere(t *testing.T) {
	home := t.TempDir()
	// No run database yet: each of these gets past parsing and fails on
	// the missing run (1), which a parse error (2) would not.
	for _, args := range [][]string{
		{"status", "--home", home, "hello"},
		{"status", "hello", "--home", home, "--json"},
		{"history", "hello", "--json", "--home=" + home},
		{"--json", "status", "hello", "--home", home},
		{"teardown", "hello", "--dry-run", "--home", home},
		{"logs", "hello", "echo", "-n", "5", "--home", home},
	} {
		code, _, stderr := run(t, mgmtc, args...)
		if code != 1 || !strings.Contains(stderr, "no runs in "+home) {
			t.Errorf("mgmt %q: exit %d, stderr %q; want 1 and no runs in the home", args, code, stderr)
		}
	}
	code, out, stderr := run(t, launch, "../../examples/hello/plan.toml", "--dry-run", "--name", "later")
	if code != 0 || !strings.Contains(out, "run name later") {
		t.Errorf("launch with flags after the plan: exit %d\n%s\n%s", code, out, stderr)
	}
	for _, c := range []struct {
		cmd  func(ctxT, []string, *bufT, *bufT) int
		args []string
		want string
	}{
		{mgmtc, []string{"status", "hello", "--no-such-flag"}, "unknown flag: --no-such-flag"},
		{mgmtc, []string{}, "want a command"},
		{mgmtc, []string{"frobnicate"}, `unknown command "frobnicate"`},
		{mgmtc, []string{"status", "a", "b"}, "want [RUN], got 2"},
		{mgmtc, []string{"logs", "--json", "hello", "echo"}, "--json: mgmt logs prints"},
		{mgmtc, []string{"--log-level", "loud", "list"}, "--log-level"},
		{launch, []string{}, "want PLAN.toml, got 0"},
		{launch, []string{"--json", "../../examples/hello/plan.toml"}, "--json goes with --dry-run"},
	} {
		code, _, stderr := run(t, c.cmd, c.args...)
		if code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("%q: exit %d, stderr %q; want 2 and %q", c.args, code, stderr, c.want)
		}
	}
}

// TestCompletion: the completion scripts exist for the three shells, and
// names complete from the home: runs, then a run's services.
func TestCompletion(t *testing.T) {
	for _, sh := range []string{"bash", "zsh", "fish"} {
		for _, c := range []func(ctxT, []string, *bufT, *bufT) int{launch, mgmtc} {
			if code, out, stderr := run(t, c, "completion", sh); code != 0 || !strings.Contains(out, "__complete") {
				t.Errorf("completion %s: exit %d, stderr %q", sh, code, stderr)
			}
		}
	}
	home, dir := t.TempDir(), t.TempDir()
	t.Setenv("NIGHTSHIFT_HOME", home)
	if err := os.WriteFile(filepath.Join(dir, "alive"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, stderr := run(t, launch, "--home", home, "--plain", "-g", "dir="+dir, "--name", "compl", "testdata/checkable.toml"); code != 0 {
		t.Fatalf("launch: exit %d\n%s\n%s", code, out, stderr)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"__complete", "--home", home, "status", ""}, "compl"},
		{[]string{"__complete", "--home", home, "teardown", "co"}, "compl"},
		{[]string{"__complete", "--home", home, "logs", "compl", ""}, "svc"},
	} {
		code, out, stderr := run(t, mgmtc, c.args...)
		if code != 0 || !strings.Contains(out, c.want+"\n") {
			t.Errorf("%q: exit %d, completions %q (stderr %q), want %s", c.args, code, out, stderr, c.want)
		}
	}
	if _, out, _ := run(t, mgmtc, "__complete", "--home", home, "status", "x"); strings.Contains(out, "compl") {
		t.Errorf("completion ignores the prefix: %q", out)
	}
}
