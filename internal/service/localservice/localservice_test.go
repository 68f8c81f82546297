package localservice

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"nightshift/bootlevel"
	"nightshift/internal/process"
	"nightshift/internal/redact"
	"nightshift/internal/testsupport"
	"nightshift/launchplan"
)

// writeScript writes an executable /bin/sh script and returns its path. The
// directory name has a space in it, which breaks anything that goes through
// a shell without quoting.
func writeScript(t *testing.T, body string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "my scripts")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "prog.sh")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func newReq(t *testing.T, step bootlevel.Step, prog string, args ...string) bootlevel.StepRequest {
	t.Helper()
	root := t.TempDir()
	return bootlevel.StepRequest{
		Run:     "r1",
		Level:   1,
		Service: &launchplan.Service{Name: "web", Level: 1, Driver: launchplan.DriverLocal},
		Step:    step,
		Program: launchplan.Program{Path: prog, Args: args},
		Env:     map[string]string{},
		WorkDir: filepath.Join(root, "work", "web"),
		LogPath: filepath.Join(root, "logs", "r1", "web.log"),
	}
}

func testDriver() *Driver {
	d := New(nil)
	d.KillGrace = 300 * time.Millisecond
	return d
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestExitCodes(t *testing.T) {
	cases := []struct {
		name string
		body string
		want int
	}{
		{"zero", "exit 0", 0},
		{"one", "exit 1", 1},
		{"three", "echo failing >&2; exit 3", 3},
		{"max", "exit 255", 255},
		{"kill -9 self", "kill -9 $$", 128 + 9},
		{"TERM self", "kill -TERM $$", 128 + 15},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := newReq(t, bootlevel.StepReady, writeScript(t, c.body))
			res, err := testDriver().Run(ctxFor(t, 20*time.Second), req)
			if err != nil {
				t.Fatalf("Run error = %v; a non-zero exit is not an error", err)
			}
			if res.ExitCode != c.want {
				t.Errorf("ExitCode = %d, want %d", res.ExitCode, c.want)
			}
		})
	}
}

func TestTailIsThisStepsLastLines(t *testing.T) {
	prog := writeScript(t, `i=1
while [ $i -le 30 ]; do
	if [ $((i % 2)) = 0 ]; then echo "$1 err $i" >&2; else echo "$1 out $i"; fi
	i=$((i + 1))
done
printf 'no newline at end'
exit 4`)
	d := testDriver()
	req := newReq(t, bootlevel.StepBoot, prog, "first")
	if _, err := d.Run(ctxFor(t, 20*time.Second), req); err != nil {
		t.Fatal(err)
	}
	req.Program.Args = []string{"second"}
	res, err := d.Run(ctxFor(t, 20*time.Second), req)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := 12; i <= 30; i++ {
		stream := "out"
		if i%2 == 0 {
			stream = "err"
		}
		want = append(want, fmt.Sprintf("second %s %d", stream, i))
	}
	want = append(want, "no newline at end")
	if !reflect.DeepEqual(res.Tail, want) {
		t.Errorf("Tail =\n%q\nwant\n%q", res.Tail, want)
	}
	if res.ExitCode != 4 {
		t.Errorf("ExitCode = %d, want 4", res.ExitCode)
	}
	// Both steps appended to one log, each under its own header.
	log := readFile(t, req.LogPath)
	headers := regexp.MustCompile(`(?m)^=== \S+ boot: .*prog\.sh" (first|second) ===$`).FindAllStringSubmatch(log, -1)
	if len(headers) != 2 || headers[0][1] != "first" || headers[1][1] != "second" {
		t.Errorf("headers = %q in log:\n%s", headers, log)
	}
	if !strings.Contains(log, "first out 1\n") {
		t.Error("first step's output is missing from the log")
	}
}

func TestTailEmptyAndHuge(t *testing.T) {
	d := testDriver()
	res, err := d.Run(ctxFor(t, 20*time.Second), newReq(t, bootlevel.StepReady, writeScript(t, "exit 0")))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Tail) != 0 {
		t.Errorf("Tail of a silent step = %q, want none", res.Tail)
	}

	// Far more than the read-back cap: the tail is still exact and whole lines.
	res, err = d.Run(ctxFor(t, 30*time.Second), newReq(t, bootlevel.StepReady, writeScript(t, "seq 1 200000")))
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := 199981; i <= 200000; i++ {
		want = append(want, strconv.Itoa(i))
	}
	if !reflect.DeepEqual(res.Tail, want) {
		t.Errorf("Tail = %q, want %q", res.Tail, want)
	}
}

func TestLastLinesDropsCutLine(t *testing.T) {
	cases := []struct {
		in      string
		partial bool
		n       int
		want    []string
	}{
		{"a\nb\nc\n", false, 2, []string{"b", "c"}},
		{"t-cut\nb\n", true, 5, []string{"b"}},
		{"only-cut", true, 5, []string{"only-cut"}},
		{"crlf\r\nx\r\n", false, 5, []string{"crlf", "x"}},
		{"bad \xff utf8\n", false, 5, []string{"bad \uFFFD utf8"}},
		{"\n\n", false, 5, []string{"", ""}},
	}
	for _, c := range cases {
		if got := lastLines([]byte(c.in), c.partial, c.n); !reflect.DeepEqual(got, c.want) {
			t.Errorf("lastLines(%q, %v, %d) = %q, want %q", c.in, c.partial, c.n, got, c.want)
		}
	}
}

// TestArgsAndEnvArriveVerbatim proves there is no shell between the plan and
// the program: metacharacters reach it as data and run nothing.
func TestArgsAndEnvArriveVerbatim(t *testing.T) {
	canary := filepath.Join(t.TempDir(), "canary")
	hostile := []string{
		"plain",
		"with space",
		"  leading and trailing  ",
		"",
		`"double quoted"`,
		`'single quoted'`,
		"$(touch " + canary + "1)",
		"`touch " + canary + "2`",
		"; touch " + canary + "3",
		"| touch " + canary + "4",
		"&& touch " + canary + "5 #",
		"$HOME ${PATH} $1",
		"*",
		"new\nline\ttab",
		"ünïcödé ✓",
		`back\slash`,
	}
	prog := writeScript(t, `for a in "$@"; do printf '%s\0' "$a"; done > args.out
for v in V00 V01 V02 V03 V04 V05 V06 V07 V08 V09 V10 V11 V12 V13 V14 V15; do eval "printf '%s\0' \"\$$v\""; done > env.out
printf '%s' "$NS_TEST_OVERRIDE/$NS_TEST_INHERITED" > os.out
pwd -P > pwd.out`)
	req := newReq(t, bootlevel.StepBoot, prog, hostile...)
	for i, v := range hostile {
		req.Env[fmt.Sprintf("V%02d", i)] = v
	}
	t.Setenv("NS_TEST_OVERRIDE", "from-os")
	t.Setenv("NS_TEST_INHERITED", "inherited")
	req.Env["NS_TEST_OVERRIDE"] = "from-req"

	res, err := testDriver().Run(ctxFor(t, 20*time.Second), req)
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("Run = %+v, %v", res, err)
	}
	split := func(s string) []string { return strings.Split(strings.TrimSuffix(s, "\x00"), "\x00") }
	if got := split(readFile(t, filepath.Join(req.WorkDir, "args.out"))); !reflect.DeepEqual(got, hostile) {
		t.Errorf("args =\n%q\nwant\n%q", got, hostile)
	}
	if got := split(readFile(t, filepath.Join(req.WorkDir, "env.out"))); !reflect.DeepEqual(got, hostile) {
		t.Errorf("env =\n%q\nwant\n%q", got, hostile)
	}
	if got := readFile(t, filepath.Join(req.WorkDir, "os.out")); got != "from-req/inherited" {
		t.Errorf("env precedence = %q, want req.Env over os env, os env inherited", got)
	}
	wd, err := filepath.EvalSymlinks(req.WorkDir)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(readFile(t, filepath.Join(req.WorkDir, "pwd.out"))); got != wd {
		t.Errorf("working dir = %q, want %q", got, wd)
	}
	for i := 1; i <= 5; i++ {
		if _, err := os.Stat(fmt.Sprintf("%s%d", canary, i)); err == nil {
			t.Errorf("canary %d exists: an argument was run by a shell", i)
		}
	}
}

func TestFilesAndModes(t *testing.T) {
	req := newReq(t, bootlevel.StepBoot, writeScript(t, "echo hi"))
	if _, err := testDriver().Run(ctxFor(t, 20*time.Second), req); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path string
		want os.FileMode
	}{
		{filepath.Dir(req.LogPath), 0o700},
		{req.LogPath, 0o600},
		{req.WorkDir, 0o755},
		{filepath.Join(req.WorkDir, outputDir), 0o700},
	} {
		fi, err := os.Stat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != c.want {
			t.Errorf("%s mode = %o, want %o", c.path, fi.Mode().Perm(), c.want)
		}
	}
}

func TestHeaderIsStampedAndRedacted(t *testing.T) {
	d := testDriver()
	d.Clock = clockwork.NewFakeClockAt(time.Date(2026, 11, 21, 22, 0, 0, 0, time.UTC))
	prog := writeScript(t, "exit 0")
	req := newReq(t, bootlevel.StepTerminate, prog, "--url", "amqp://nightshift:hunter2@broker:5672/", "two words")
	if _, err := d.Run(ctxFor(t, 20*time.Second), req); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("=== 2026-11-21T22:00:00Z terminate: %q --url amqp://nightshift:xxxxx@broker:5672/ \"two words\" ===\n", prog)
	if got := readFile(t, req.LogPath); got != want {
		t.Errorf("log =\n%q\nwant\n%q", got, want)
	}
}

// TestHeaderRedactsKnownSecretsByValue: a secret the run's redactor knows
// is removed from the command line in the header even where nothing (no
// key name, no URL) marks it as one.
func TestHeaderRedactsKnownSecretsByValue(t *testing.T) {
	const secret = "0123456789abcdef0123456789abcdef"
	prog := writeScript(t, "exit 0")
	req := newReq(t, bootlevel.StepBoot, prog, "--key", secret, "--other", "x"+secret+"y")
	req.Redactor = redact.NewRedactor(secret)
	if _, err := testDriver().Run(ctxFor(t, 20*time.Second), req); err != nil {
		t.Fatal(err)
	}
	got := readFile(t, req.LogPath)
	if strings.Contains(got, secret) || !strings.Contains(got, "--key xxxxx --other xxxxxxy") {
		t.Errorf("header = %q", got)
	}
}

// TestExistingLogIsTightened: a step log an older version created 0644 is
// 0600 after the next step appends to it.
func TestExistingLogIsTightened(t *testing.T) {
	req := newReq(t, bootlevel.StepBoot, writeScript(t, "echo again"))
	if err := os.MkdirAll(filepath.Dir(req.LogPath), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(req.LogPath, []byte("old run\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := testDriver().Run(ctxFor(t, 20*time.Second), req); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(req.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("log mode = %o, want 600", fi.Mode().Perm())
	}
	if got := readFile(t, req.LogPath); !strings.HasPrefix(got, "old run\n") || !strings.Contains(got, "again") {
		t.Errorf("log = %q: the old content must stay and the new be appended", got)
	}
}

func TestBootOutputs(t *testing.T) {
	cases := []struct {
		name    string
		body    string
		step    bootlevel.Step
		want    map[string]string
		wantErr []string // substrings of the error; nil means no error
	}{
		{
			name: "types",
			body: `printf '{"port": 8080, "host": "db-1", "tls": true, "off": false, "ratio": 0.50, "big": 1e3, "neg": -7, "url": "amqp://u:p@h/"}' > "$NIGHTSHIFT_OUTPUT"`,
			want: map[string]string{"port": "8080", "host": "db-1", "tls": "true", "off": "false", "ratio": "0.50", "big": "1000", "neg": "-7", "url": "amqp://u:p@h/"},
		},
		{name: "empty object", body: `echo '{}' > "$NIGHTSHIFT_OUTPUT"`, want: map[string]string{}},
		{name: "missing file", body: `echo nothing exported`, want: nil},
		{name: "nested object", body: `printf '{"ok": "1",\n "db": {"port": 1}}' > "$NIGHTSHIFT_OUTPUT"`,
			wantErr: []string{":2:", `key "db"`, "an object"}},
		{name: "array", body: `echo '{"hosts": ["a"]}' > "$NIGHTSHIFT_OUTPUT"`, wantErr: []string{`key "hosts"`, "an array"}},
		{name: "null", body: `echo '{"pw": null}' > "$NIGHTSHIFT_OUTPUT"`, wantErr: []string{`key "pw"`, "null"}},
		{name: "not an object", body: `echo '["a"]' > "$NIGHTSHIFT_OUTPUT"`, wantErr: []string{"want a JSON object"}},
		{name: "syntax", body: `printf '{"a": "1",\n\n "b": }' > "$NIGHTSHIFT_OUTPUT"`, wantErr: []string{":3:", "invalid JSON"}},
		{name: "truncated", body: `printf '{"a": "1"' > "$NIGHTSHIFT_OUTPUT"`, wantErr: []string{"end of JSON"}},
		{name: "empty file", body: `: > "$NIGHTSHIFT_OUTPUT"`, wantErr: []string{"empty file"}},
		{name: "failed boot ignores outputs", body: `echo '{"a": "1"}' > "$NIGHTSHIFT_OUTPUT"; exit 2`, want: nil},
		{name: "not set for ready", step: bootlevel.StepReady,
			body: `if [ -n "${NIGHTSHIFT_OUTPUT+set}" ]; then echo "leaked $NIGHTSHIFT_OUTPUT"; exit 9; fi`, want: nil},
	}
	// As if nightshift itself ran under a boot program.
	t.Setenv(launchplan.OutputEnv, filepath.Join(t.TempDir(), "outer-output.json"))
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			step := c.step
			if step == "" {
				step = bootlevel.StepBoot
			}
			req := newReq(t, step, writeScript(t, `echo "$NIGHTSHIFT_OUTPUT" > out.path
`+c.body))
			res, err := testDriver().Run(ctxFor(t, 20*time.Second), req)
			if c.wantErr != nil {
				if err == nil {
					t.Fatalf("Run succeeded with outputs %v", res.Outputs)
				}
				outPath := strings.TrimSpace(readFile(t, filepath.Join(req.WorkDir, "out.path")))
				for _, w := range append(c.wantErr, outPath) {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not contain %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.ExitCode == 9 {
				t.Fatalf("program saw NIGHTSHIFT_OUTPUT: %q", res.Tail)
			}
			if !reflect.DeepEqual(res.Outputs, c.want) {
				t.Errorf("Outputs = %#v, want %#v", res.Outputs, c.want)
			}
			if step == bootlevel.StepBoot {
				outPath := strings.TrimSpace(readFile(t, filepath.Join(req.WorkDir, "out.path")))
				if filepath.Dir(outPath) != filepath.Join(req.WorkDir, outputDir) {
					t.Errorf("output path %q is not under %s", outPath, filepath.Join(req.WorkDir, outputDir))
				}
				if res.ExitCode == 0 {
					if _, err := os.Stat(outPath); !errors.Is(err, os.ErrNotExist) {
						t.Errorf("output file left behind after a successful read: %v", err)
					}
				}
			}
		})
	}
}

func TestOutputPathIsFreshEachBoot(t *testing.T) {
	prog := writeScript(t, `if [ -e "$NIGHTSHIFT_OUTPUT" ]; then exit 7; fi
echo "$NIGHTSHIFT_OUTPUT" >> paths
echo '{"n": 1}' > "$NIGHTSHIFT_OUTPUT"`)
	d := testDriver()
	req := newReq(t, bootlevel.StepBoot, prog)
	for i := 0; i < 3; i++ {
		res, err := d.Run(ctxFor(t, 20*time.Second), req)
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("boot %d: %+v, %v (exit 7: output file existed before boot)", i, res, err)
		}
	}
	paths := strings.Fields(readFile(t, filepath.Join(req.WorkDir, "paths")))
	if len(paths) != 3 || paths[0] == paths[1] || paths[1] == paths[2] {
		t.Errorf("output paths = %q, want three distinct", paths)
	}
}

func procAlive(pid int) bool { return process.Alive(pid) }

// waitDead polls /proc until pid is gone: SIGKILL is delivered asynchronously.
func waitDead(t *testing.T, what string, pid int) {
	t.Helper()
	err := testsupport.Poll(10*time.Second, func() error {
		if procAlive(pid) {
			return fmt.Errorf("%s (pid %d) still alive", what, pid)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

func readPid(t *testing.T, path string) int {
	t.Helper()
	pid, err := strconv.Atoi(strings.TrimSpace(readFile(t, path)))
	if err != nil || pid <= 1 {
		t.Fatalf("pid file %s: %v", path, err)
	}
	return pid
}

// TestDaemonDoesNotHoldRun: a boot program that leaves a daemon behind
// returns as soon as the program exits, and the daemon is left running.
func TestDaemonDoesNotHoldRun(t *testing.T) {
	cases := []struct{ name, body string }{
		{"same group", `sleep 30 &
echo $! > daemon.pid
echo started`},
		{"setsid", `setsid sh -c 'echo $$ > daemon.pid.tmp && mv daemon.pid.tmp daemon.pid; exec sleep 30' &
while [ ! -s daemon.pid ]; do sleep 0.01; done
echo started`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := exec.LookPath("setsid"); err != nil && strings.Contains(c.body, "setsid") {
				if os.Getenv("NIGHTSHIFT_TEST_STRICT") == "1" {
					t.Fatal("setsid (util-linux) is not installed")
				}
				t.Skip("setsid (util-linux) is not installed")
			}
			req := newReq(t, bootlevel.StepBoot, writeScript(t, c.body))
			// The deadline only guards against a hang; a hang shows up as a
			// timeout error below, not as slowness.
			res, err := testDriver().Run(ctxFor(t, 20*time.Second), req)
			pid := readPid(t, filepath.Join(req.WorkDir, "daemon.pid"))
			t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
			if err != nil {
				t.Fatalf("Run = %v; the daemon held the step open", err)
			}
			if res.ExitCode != 0 || !reflect.DeepEqual(res.Tail, []string{"started"}) {
				t.Errorf("result = %+v", res)
			}
			if !procAlive(pid) {
				t.Errorf("daemon %d was killed after a successful boot", pid)
			}
			syscall.Kill(pid, syscall.SIGKILL)
			waitDead(t, "daemon", pid)
		})
	}
}

// TestTimeoutKillsWholeGroup: on deadline the program and everything it
// started die, whether they honour SIGTERM or not.
func TestTimeoutKillsWholeGroup(t *testing.T) {
	cases := []struct{ name, body string }{
		{"honours TERM", `echo $$ > leader.pid
sleep 30 &
echo $! > child.pid
echo started
wait`},
		{"all ignore TERM", `trap '' TERM
echo $$ > leader.pid
sleep 30 &
echo $! > child.pid
echo started
while :; do sleep 1; done`},
		{"leader exits, child ignores TERM", `echo $$ > leader.pid
sh -c 'trap "" TERM; echo $$ > child.pid; exec sleep 30' &
while [ ! -s child.pid ]; do sleep 0.01; done
echo started
wait`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := newReq(t, bootlevel.StepBoot, writeScript(t, c.body))
			res, err := testDriver().Run(ctxFor(t, time.Second), req)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Run error = %v, want DeadlineExceeded", err)
			}
			if !regexp.MustCompile(`^service web boot timed out after [0-9.]+m?s: context deadline exceeded$`).MatchString(err.Error()) {
				t.Errorf("error %q does not say what timed out and after how long", err)
			}
			if !reflect.DeepEqual(res.Tail, []string{"started"}) {
				t.Errorf("Tail = %q, want [started]", res.Tail)
			}
			waitDead(t, "leader", readPid(t, filepath.Join(req.WorkDir, "leader.pid")))
			waitDead(t, "child", readPid(t, filepath.Join(req.WorkDir, "child.pid")))
			if log := readFile(t, req.LogPath); !regexp.MustCompile(`(?m)^=== boot timed out after [0-9.]+m?s: process group killed ===$`).MatchString(log) {
				t.Errorf("log does not record the kill:\n%s", log)
			}
		})
	}
}

func TestCancelKillsGroup(t *testing.T) {
	req := newReq(t, bootlevel.StepReady, writeScript(t, `sleep 30 &
echo $! > child.pid.tmp; mv child.pid.tmp child.pid
wait`))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pidFile := filepath.Join(req.WorkDir, "child.pid")
	go func() {
		// Cancel once the child exists, so the kill has something to kill.
		for {
			if _, err := os.Stat(pidFile); err == nil {
				cancel()
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	guard := time.AfterFunc(20*time.Second, cancel)
	defer guard.Stop()
	_, err := testDriver().Run(ctx, req)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "service web ready cancelled after") {
		t.Fatalf("Run error = %v, want a cancellation naming the step", err)
	}
	waitDead(t, "child", readPid(t, pidFile))
}

func TestFailuresToRun(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "not-exec.sh")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\nexit 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	badInterp := filepath.Join(dir, "bad-interp.sh")
	if err := os.WriteFile(badInterp, []byte("#!/nonexistent/interpreter\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		edit func(r *bootlevel.StepRequest)
		want string
	}{
		{"missing program", func(r *bootlevel.StepRequest) { r.Program.Path = filepath.Join(dir, "nope") }, filepath.Join(dir, "nope")},
		{"not executable", func(r *bootlevel.StepRequest) { r.Program.Path = notExec }, "permission denied"},
		{"directory", func(r *bootlevel.StepRequest) { r.Program.Path = dir }, dir},
		{"bad interpreter", func(r *bootlevel.StepRequest) { r.Program.Path = badInterp }, badInterp},
		{"empty path", func(r *bootlevel.StepRequest) { r.Program.Path = "" }, "program path is empty"},
		{"empty workdir", func(r *bootlevel.StepRequest) { r.WorkDir = "" }, "workdir is empty"},
		{"empty log path", func(r *bootlevel.StepRequest) { r.LogPath = "" }, "log path is empty"},
		{"bad env name", func(r *bootlevel.StepRequest) { r.Env["A=B"] = "x" }, `invalid variable name "A=B"`},
		{"NUL in env", func(r *bootlevel.StepRequest) { r.Env["A"] = "x\x00y" }, "env A: value contains a NUL"},
		{"workdir under a file", func(r *bootlevel.StepRequest) { r.WorkDir = filepath.Join(notExec, "w") }, "workdir"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := newReq(t, bootlevel.StepBoot, "/bin/true")
			c.edit(&req)
			_, err := testDriver().Run(ctxFor(t, 20*time.Second), req)
			if err == nil {
				t.Fatal("Run succeeded")
			}
			if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "service web boot") {
				t.Errorf("error %q should contain %q and name the step", err, c.want)
			}
		})
	}
}

func TestCancelledBeforeStartRunsNothing(t *testing.T) {
	canary := filepath.Join(t.TempDir(), "ran")
	req := newReq(t, bootlevel.StepBoot, "/usr/bin/touch", canary)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := testDriver().Run(ctx, req); !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v, want context.Canceled", err)
	}
	if _, err := os.Stat(canary); err == nil {
		t.Error("program ran despite a cancelled context")
	}
}

func TestAcquireRelease(t *testing.T) {
	d := New(nil)
	svc := &launchplan.Service{Name: "web"}
	h, err := d.Acquire(context.Background(), "r1", svc)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := os.Hostname()
	if want == "" {
		want = "localhost"
	}
	if h.Hostname != want || h.InstanceID != "local" {
		t.Errorf("Acquire = %+v, want hostname %q, instance local", h, want)
	}
	if err := d.Release(context.Background(), "r1", svc, h); err != nil {
		t.Errorf("Release = %v", err)
	}
	if err := d.Release(context.Background(), "r1", svc, h); err != nil {
		t.Errorf("second Release = %v", err)
	}
	if d.KillGrace != DefaultKillGrace {
		t.Errorf("New KillGrace = %v, want %v", d.KillGrace, DefaultKillGrace)
	}
}

// TestRunUsesNoShell runs a program path with shell metacharacters in its
// name: only exec of the literal path can find it.
func TestRunUsesNoShell(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a;b $(x)")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	prog := filepath.Join(dir, "p'q.sh")
	if err := os.WriteFile(prog, []byte("#!/bin/sh\necho ran\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	res, err := testDriver().Run(ctxFor(t, 20*time.Second), newReq(t, bootlevel.StepBoot, prog))
	if err != nil || !reflect.DeepEqual(res.Tail, []string{"ran"}) {
		t.Errorf("Run = %+v, %v", res, err)
	}
}

// BenchmarkRunTrue measures the driver's own overhead per step around the
// cheapest possible program.
func BenchmarkRunTrue(b *testing.B) {
	root := b.TempDir()
	d := New(nil)
	req := bootlevel.StepRequest{
		Run: "bench", Service: &launchplan.Service{Name: "web"}, Step: bootlevel.StepBoot,
		Program: launchplan.Program{Path: "/bin/true"},
		WorkDir: filepath.Join(root, "work"), LogPath: filepath.Join(root, "web.log"),
	}
	ctx := context.Background()
	for b.Loop() {
		if res, err := d.Run(ctx, req); err != nil || res.ExitCode != 0 {
			b.Fatalf("Run = %+v, %v", res, err)
		}
	}
}
