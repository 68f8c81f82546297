package sshservice

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"nightshift/bootlevel"
	"nightshift/internal/testsupport/sshtest"
	"nightshift/launchplan"
)

// These tests run against a real OpenSSH sshd on 127.0.0.1 (internal/testsupport/sshtest).
// sshd runs on this machine, so the "remote" stage dir and processes are
// checked directly through the file system and /proc.

const testRun = "r1"

func newDriver(t *testing.T) *Driver {
	return New(t.TempDir(), slog.New(slog.NewTextHandler(t.Output(), nil)))
}

// newService returns a service that reaches srv with strict host key
// checking, and its stage dir as seen on the (same) host.
func newService(t *testing.T, srv *sshtest.Server, name string) (*launchplan.Service, string) {
	base := t.TempDir()
	svc := &launchplan.Service{Name: name, Driver: launchplan.DriverSSH, SSH: srv.SSH(base)}
	return svc, filepath.Join(base, testRun, name)
}

func program(t *testing.T, name string, args ...string) launchplan.Program {
	p, err := filepath.Abs(filepath.Join("testdata", "programs", name))
	if err != nil {
		t.Fatal(err)
	}
	return launchplan.Program{Path: p, Args: args, Pos: launchplan.Pos{File: "plan.toml", Line: 7}}
}

func request(svc *launchplan.Service, step bootlevel.Step, p launchplan.Program, logPath string) bootlevel.StepRequest {
	return bootlevel.StepRequest{
		Run: testRun, Level: 1, Service: svc, Step: step, Program: p,
		Env:     map[string]string{"NIGHTSHIFT_RUN": testRun, launchplan.OutputEnv: "/local/path/that/must/not/leak"},
		LogPath: logPath,
	}
}

func TestAcquirePinsHostKeyOnFirstUse(t *testing.T) {
	srv := sshtest.Start(t)
	d := newDriver(t)
	svc, _ := newService(t, srv, "web")
	svc.SSH.KnownHostsFile = ""
	ctx := context.Background()

	host, err := d.Acquire(ctx, testRun, svc)
	if err != nil {
		t.Fatalf("first Acquire: %v", err)
	}
	want := bootlevel.Host{Hostname: "127.0.0.1", InstanceID: "ssh:127.0.0.1:" + strconv.Itoa(srv.Port)}
	if !reflect.DeepEqual(host, want) {
		t.Fatalf("host = %+v, want %+v", host, want)
	}
	pinned, err := os.ReadFile(filepath.Join(d.Home, "known_hosts"))
	if err != nil {
		t.Fatalf("known_hosts not written: %v", err)
	}
	if strings.TrimSpace(string(pinned)) != srv.KnownHostsLine {
		t.Fatalf("pinned %q, want %q", pinned, srv.KnownHostsLine)
	}
	if _, err := d.Acquire(ctx, testRun, svc); err != nil {
		t.Fatalf("second Acquire against the pinned key: %v", err)
	}
	again, _ := os.ReadFile(filepath.Join(d.Home, "known_hosts"))
	if string(again) != string(pinned) {
		t.Fatalf("known_hosts changed on second use: %q", again)
	}
}

func TestHostKeyVerification(t *testing.T) {
	srv := sshtest.Start(t)
	otherKey := sshtest.NewKey(t, filepath.Join(t.TempDir(), "other"))
	wrongLine := knownhosts.Line([]string{srv.Addr}, otherKey) + "\n"
	otherHostLine := knownhosts.Line([]string{"10.9.9.9:22"}, srv.HostKey) + "\n"

	tests := []struct {
		name       string
		strictFile string // content of ssh.known_hosts_file; "" means TOFU
		pinned     string // content of <Home>/known_hosts before the test
		wantErr    string // "" means success
	}{
		{name: "tofu pinned key differs", pinned: wrongLine, wantErr: "CHANGED"},
		{name: "strict file has other key", strictFile: wrongLine, wantErr: "CHANGED"},
		{name: "strict file lacks host", strictFile: otherHostLine, wantErr: "is not in"},
		{name: "strict file matches", strictFile: srv.KnownHostsLine + "\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := newDriver(t)
			svc, _ := newService(t, srv, "web")
			svc.SSH.KnownHostsFile = ""
			if tc.strictFile != "" {
				svc.SSH.KnownHostsFile = filepath.Join(t.TempDir(), "kh")
				if err := os.WriteFile(svc.SSH.KnownHostsFile, []byte(tc.strictFile), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			homeKH := filepath.Join(d.Home, "known_hosts")
			if tc.pinned != "" {
				if err := os.WriteFile(homeKH, []byte(tc.pinned), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			_, err := d.Acquire(context.Background(), testRun, svc)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Acquire: %v", err)
				}
				return
			}
			var hke *HostKeyError
			if !errors.As(err, &hke) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want *HostKeyError containing %q", err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), ssh.FingerprintSHA256(srv.HostKey)) {
				t.Errorf("error does not name the presented key: %v", err)
			}
			after, _ := os.ReadFile(homeKH)
			if string(after) != tc.pinned {
				t.Fatalf("refused key was recorded: known_hosts = %q", after)
			}
		})
	}
}

func TestAcquireWrongClientKeyIsAuthError(t *testing.T) {
	srv := sshtest.Start(t)
	d := newDriver(t)
	svc, _ := newService(t, srv, "web")
	svc.SSH.KeyFile = filepath.Join(t.TempDir(), "not_authorized")
	sshtest.NewKey(t, svc.SSH.KeyFile)
	_, err := d.Acquire(context.Background(), testRun, svc)
	if !errors.Is(err, ErrAuth) {
		t.Fatalf("err = %v, want ErrAuth", err)
	}
	for _, want := range []string{"acquire service web", svc.SSH.KeyFile, srv.User + "@" + srv.Addr} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestUnreachableHost(t *testing.T) {
	// A port nobody listens on: grab one and release it.
	keyFile := filepath.Join(t.TempDir(), "key")
	sshtest.NewKey(t, keyFile)
	port := closedPort(t)
	svc := &launchplan.Service{Name: "db", SSH: &launchplan.SSH{Host: "127.0.0.1", Port: port, User: "nobody", KeyFile: keyFile}}
	d := newDriver(t)
	ctx := context.Background()
	if _, err := d.Acquire(ctx, testRun, svc); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("Acquire err = %v, want ErrUnreachable", err)
	}
	if err := d.Release(ctx, testRun, svc, bootlevel.Host{}); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("Release err = %v, want ErrUnreachable", err)
	}
}

func TestRunBootOutputs(t *testing.T) {
	srv := sshtest.Start(t)
	d := newDriver(t)
	tests := []struct {
		mode    string
		want    map[string]string
		wantErr string
	}{
		{mode: "ok", want: map[string]string{
			"url": "amqp://h:5672/", "port": "5672", "ratio": "1500", "small": "0.25",
			"big": "123456789012345678901", "on": "true",
		}},
		{mode: "nothing", want: nil}, // a stale file from an earlier boot must not count
		{mode: "array", wantErr: `key "hosts": value is an array`},
	}
	for _, tc := range tests {
		t.Run(tc.mode, func(t *testing.T) {
			svc, stage := newService(t, srv, "web")
			if err := os.MkdirAll(stage, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(stage, OutputFile), []byte(`{"stale":"yes"}`), 0o600); err != nil {
				t.Fatal(err)
			}
			logPath := filepath.Join(t.TempDir(), "web.log")
			res, err := d.Run(context.Background(), request(svc, bootlevel.StepBoot, program(t, "boot_outputs.sh", tc.mode), logPath))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "boot service web") {
					t.Fatalf("err = %v, want %q naming the service", err, tc.wantErr)
				}
				return
			}
			if err != nil || res.ExitCode != 0 {
				t.Fatalf("Run = %+v, %v", res, err)
			}
			if tc.want != nil {
				// The program reports its cwd; it must be the stage dir.
				if res.Outputs["cwd"] != stage {
					t.Errorf("program ran in %q, want stage dir %q", res.Outputs["cwd"], stage)
				}
				delete(res.Outputs, "cwd")
			}
			if !reflect.DeepEqual(res.Outputs, tc.want) {
				t.Fatalf("Outputs = %v, want %v", res.Outputs, tc.want)
			}
			fi, err := os.Stat(logPath)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("log mode = %v, want 0600", fi.Mode().Perm())
			}
			logged, _ := os.ReadFile(logPath)
			if !strings.Contains(string(logged), "booting in "+stage) || !strings.Contains(string(logged), "boot done") {
				t.Errorf("log = %q", logged)
			}
			up, err := os.Stat(filepath.Join(stage, "boot_outputs.sh"))
			if err != nil || up.Mode().Perm() != 0o755 {
				t.Errorf("uploaded program: %v, %v; want mode 0755", up, err)
			}
		})
	}
}

func TestRunNonZeroExit(t *testing.T) {
	srv := sshtest.Start(t)
	d := newDriver(t)
	svc, _ := newService(t, srv, "web")
	logPath := filepath.Join(t.TempDir(), "web.log")
	if err := os.WriteFile(logPath, []byte("earlier step\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	res, err := d.Run(context.Background(), request(svc, bootlevel.StepReady, program(t, "fail.sh"), logPath))
	if err != nil {
		t.Fatalf("a non-zero exit must not be an error: %v", err)
	}
	if res.ExitCode != 3 {
		t.Fatalf("ExitCode = %d, want 3", res.ExitCode)
	}
	if res.Outputs != nil {
		t.Errorf("Outputs = %v for a ready step", res.Outputs)
	}
	if len(res.Tail) != 20 {
		t.Fatalf("Tail has %d lines, want 20: %q", len(res.Tail), res.Tail)
	}
	// fail.sh alternates stdout and stderr; the order must survive.
	var want []string
	var all strings.Builder
	all.WriteString("earlier step\n")
	for i := 1; i <= 30; i++ {
		all.WriteString("line " + strconv.Itoa(i) + "\n")
		if i > 10 {
			want = append(want, "line "+strconv.Itoa(i))
		}
	}
	if !reflect.DeepEqual(res.Tail, want) {
		t.Fatalf("Tail = %q, want %q", res.Tail, want)
	}
	logged, _ := os.ReadFile(logPath)
	if string(logged) != all.String() {
		t.Errorf("log = %q, want the earlier content plus all 30 lines in order", logged)
	}
}

func TestRunArgvAndEnvArriveVerbatim(t *testing.T) {
	srv := sshtest.Start(t)
	d := newDriver(t)
	svc, stage := newService(t, srv, "web")
	canary := filepath.Join(t.TempDir(), "pwned")
	tests := []struct{ name, value string }{
		{"spaces", "a  b c"},
		{"single quotes", `it's 'quoted'`},
		{"double quotes", `say "hi"`},
		{"command substitution", "$(touch " + canary + ")"},
		{"backquotes", "`touch " + canary + "`"},
		{"semicolon", "; touch " + canary},
		{"and-and pipe", "x && touch " + canary + " | cat"},
		{"newlines", "line1\nline2\n; touch " + canary + "\n"},
		{"variables", "$HOME ${PATH} $1"},
		{"globs", "* ? [a-z]"},
		{"backslashes", `a\b\\c\`},
		{"leading dash", "-n"},
		{"empty", ""},
		{"redirect", "> " + canary},
		{"unicode", "héllo wörld ✓"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := t.TempDir()
			req := request(svc, bootlevel.StepReady, program(t, "argv.sh", out, tc.value, "second arg"), "")
			req.Env["INJ"] = tc.value
			res, err := d.Run(context.Background(), req)
			if err != nil || res.ExitCode != 0 {
				t.Fatalf("Run = %+v, %v", res, err)
			}
			argv, _ := os.ReadFile(filepath.Join(out, "argv"))
			if want := tc.value + "\x00second arg\x00"; string(argv) != want {
				t.Errorf("argv = %q, want %q", argv, want)
			}
			env, _ := os.ReadFile(filepath.Join(out, "env"))
			if string(env) != tc.value {
				t.Errorf("$INJ = %q, want %q", env, tc.value)
			}
			pwd, _ := os.ReadFile(filepath.Join(out, "pwd"))
			if strings.TrimSpace(string(pwd)) != stage {
				t.Errorf("cwd = %q, want %q", pwd, stage)
			}
			if _, err := os.Stat(canary); err == nil {
				t.Fatalf("injected command ran: %s exists", canary)
			}
		})
	}
}

func TestRunRemoteProgramIsNotUploaded(t *testing.T) {
	srv := sshtest.Start(t)
	d := newDriver(t)
	svc, stage := newService(t, srv, "web")
	// The engine's local NIGHTSHIFT_OUTPUT must not reach non-boot steps.
	p := launchplan.Program{Path: "/bin/sh", Args: []string{"-c", `echo "remote ok in $(pwd) output=${NIGHTSHIFT_OUTPUT-unset}"`}, Remote: true}
	res, err := d.Run(context.Background(), request(svc, bootlevel.StepReady, p, ""))
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("Run = %+v, %v", res, err)
	}
	if want := []string{"remote ok in " + stage + " output=unset"}; !reflect.DeepEqual(res.Tail, want) {
		t.Fatalf("Tail = %q, want %q", res.Tail, want)
	}
	entries, _ := os.ReadDir(stage)
	if len(entries) != 0 {
		t.Fatalf("stage dir not empty for a remote program: %v", entries)
	}
}

func TestRunRejectsBadInputBeforeConnecting(t *testing.T) {
	// No sshd: each case must fail on validation, not on the network.
	svc := &launchplan.Service{Name: "web", SSH: &launchplan.SSH{Host: "127.0.0.1", Port: closedPort(t), KeyFile: "/nonexistent"}}
	d := newDriver(t)
	tests := []struct {
		name string
		edit func(*bootlevel.StepRequest)
		want string
	}{
		{"bad env key", func(r *bootlevel.StepRequest) { r.Env["BAD-KEY"] = "x" }, `plan.toml:7: env key "BAD-KEY"`},
		{"run name escapes", func(r *bootlevel.StepRequest) { r.Run = "../etc" }, `run name "../etc"`},
		{"relative stage dir", func(r *bootlevel.StepRequest) {
			s := *r.Service
			c := *s.SSH
			c.StageDir = "rel"
			s.SSH = &c
			r.Service = &s
		}, `ssh.stage_dir "rel" must be an absolute path`},
		{"no ssh section", func(r *bootlevel.StepRequest) {
			s := *r.Service
			s.SSH = nil
			r.Service = &s
		}, "no [ssh] section"},
		{"empty program", func(r *bootlevel.StepRequest) { r.Program.Path = "" }, "program path is empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := request(svc, bootlevel.StepBoot, program(t, "fail.sh"), "")
			tc.edit(&req)
			_, err := d.Run(context.Background(), req)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "boot service web") {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestRunCancelKillsRemoteProcessGroup(t *testing.T) {
	srv := sshtest.Start(t)
	d := newDriver(t)
	svc, _ := newService(t, srv, "web")
	pidFile := filepath.Join(t.TempDir(), "pids")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		res bootlevel.StepResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := d.Run(ctx, request(svc, bootlevel.StepBoot, program(t, "sleeper.sh", pidFile), ""))
		done <- result{res, err}
	}()
	pids := waitPids(t, pidFile, 2)
	cancel()
	r := <-done
	if !errors.Is(r.err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", r.err)
	}
	if !strings.Contains(r.err.Error(), "boot service web") {
		t.Errorf("error does not name the step and service: %v", r.err)
	}
	for _, pid := range pids {
		waitGone(t, pid)
	}
}

func TestRunDeadlineIsAnError(t *testing.T) {
	srv := sshtest.Start(t)
	d := newDriver(t)
	svc, _ := newService(t, srv, "web")
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	p := launchplan.Program{Path: "sleep", Args: []string{"30"}, Remote: true}
	_, err := d.Run(ctx, request(svc, bootlevel.StepReady, p, ""))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
}

// TestConnectionLossKillsRemoteProgram is the launcher being killed with -9:
// no signal request is ever sent, the connection just goes away.
func TestConnectionLossKillsRemoteProgram(t *testing.T) {
	srv := sshtest.Start(t)
	d := newDriver(t)
	svc, stage := newService(t, srv, "web")
	pidFile := filepath.Join(t.TempDir(), "pids")
	ctx := context.Background()
	prog, err := filepath.Abs("testdata/programs/sleeper.sh")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(stage, 0o700); err != nil {
		t.Fatal(err)
	}
	cmd, err := remoteCommand(stage, nil, []string{prog, pidFile})
	if err != nil {
		t.Fatal(err)
	}
	client, _, err := d.connect(ctx, svc)
	if err != nil {
		t.Fatal(err)
	}
	sess, err := client.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sess.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := sess.Start(cmd); err != nil {
		t.Fatal(err)
	}
	pids := waitPids(t, pidFile, 2)
	_ = client.Close()
	for _, pid := range pids {
		waitGone(t, pid)
	}
}

// TestNormalExitKeepsBackgroundChildren guards the other side of the
// watcher: a boot program that started a daemon and exited 0 must not see
// its daemon killed when the session closes.
func TestNormalExitKeepsBackgroundChildren(t *testing.T) {
	srv := sshtest.Start(t)
	d := newDriver(t)
	svc, _ := newService(t, srv, "web")
	pidFile := filepath.Join(t.TempDir(), "pid")
	res, err := d.Run(context.Background(), request(svc, bootlevel.StepBoot, program(t, "daemon.sh", pidFile), ""))
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("Run = %+v, %v", res, err)
	}
	daemon := waitPids(t, pidFile, 1)[0]
	t.Cleanup(func() { killPid(daemon) })
	// The watcher shares the daemon's process group; once every other
	// member is gone it has made its decision, and the daemon must live.
	pgid := processGroup(t, daemon)
	waitUntil(t, "watcher to exit", func() bool {
		for _, p := range groupMembers(pgid) {
			if p != daemon {
				return false
			}
		}
		return true
	})
	if !alive(daemon) {
		t.Fatalf("background child %d of a successful boot program was killed", daemon)
	}
}

// TestExitEndsStepEvenWhenOutputStaysOpen: a background child that holds
// stdout must not keep the step open until its timeout.
func TestExitEndsStepEvenWhenOutputStaysOpen(t *testing.T) {
	srv := sshtest.Start(t)
	d := newDriver(t)
	d.outputDrain = 100 * time.Millisecond
	svc, _ := newService(t, srv, "web")
	pidFile := filepath.Join(t.TempDir(), "pid")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := d.Run(ctx, request(svc, bootlevel.StepBoot, program(t, "holder.sh", pidFile), ""))
	if pids, _ := os.ReadFile(pidFile); len(pids) > 0 {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(pids))); err == nil {
			t.Cleanup(func() { killPid(pid) })
		}
	}
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("Run = %+v, %v; want exit 0 once the program exited", res, err)
	}
	if len(res.Tail) != 2 || res.Tail[0] != "started holder" || !strings.Contains(res.Tail[1], "output still open") {
		t.Fatalf("Tail = %q, want the program's line and a note about open output", res.Tail)
	}
}

func TestReleaseRemovesStageDirIdempotently(t *testing.T) {
	srv := sshtest.Start(t)
	d := newDriver(t)
	svc, stage := newService(t, srv, "web")
	ctx := context.Background()
	if res, err := d.Run(ctx, request(svc, bootlevel.StepBoot, program(t, "boot_outputs.sh", "ok"), "")); err != nil || res.ExitCode != 0 {
		t.Fatalf("Run = %+v, %v", res, err)
	}
	if _, err := os.Stat(filepath.Join(stage, OutputFile)); err != nil {
		t.Fatalf("stage dir not populated: %v", err)
	}
	for i := 0; i < 2; i++ {
		if err := d.Release(ctx, testRun, svc, bootlevel.Host{}); err != nil {
			t.Fatalf("Release #%d: %v", i+1, err)
		}
		if _, err := os.Stat(stage); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("stage dir still there after Release #%d: %v", i+1, err)
		}
		if _, err := os.Stat(filepath.Dir(stage)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("empty run dir left after Release #%d: %v", i+1, err)
		}
	}
}

func TestReleaseKeepsOtherServicesOfTheRun(t *testing.T) {
	srv := sshtest.Start(t)
	d := newDriver(t)
	svc, stage := newService(t, srv, "web")
	sibling := filepath.Join(filepath.Dir(stage), "db")
	if err := os.MkdirAll(stage, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(sibling, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := d.Release(context.Background(), testRun, svc, bootlevel.Host{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sibling); err != nil {
		t.Fatalf("sibling stage dir removed: %v", err)
	}
}

func TestAcquireConfigErrorsNameThePlan(t *testing.T) {
	dir := t.TempDir()
	goodKey := filepath.Join(dir, "key")
	sshtest.NewKey(t, goodKey)
	lockedKey := filepath.Join(dir, "locked")
	writeLockedKey(t, lockedKey)
	base := launchplan.SSH{Host: "127.0.0.1", Port: closedPort(t), User: "u", KeyFile: goodKey}
	tests := []struct {
		name   string
		edit   func(*launchplan.SSH)
		noHome bool
		want   string
	}{
		{name: "empty host", edit: func(c *launchplan.SSH) { c.Host = "" }, want: "ssh.host is empty"},
		{name: "bad port", edit: func(c *launchplan.SSH) { c.Port = 70000 }, want: "ssh.port 70000 out of range"},
		{name: "no key file", edit: func(c *launchplan.SSH) { c.KeyFile = "" }, want: "ssh.key_file is empty"},
		{name: "missing key file", edit: func(c *launchplan.SSH) { c.KeyFile = filepath.Join(dir, "nope") }, want: "ssh.key_file: open"},
		{name: "garbage key file", edit: func(c *launchplan.SSH) { c.KeyFile = goodKey + ".pub" }, want: "ssh.key_file " + goodKey + ".pub"},
		{name: "passphrase key", edit: func(c *launchplan.SSH) { c.KeyFile = lockedKey }, want: "passphrase-protected"},
		{name: "missing known hosts file", edit: func(c *launchplan.SSH) { c.KnownHostsFile = filepath.Join(dir, "kh") }, want: "ssh.known_hosts_file"},
		{name: "tofu without home", edit: func(*launchplan.SSH) {}, noHome: true, want: "no home dir"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			tc.edit(&cfg)
			svc := &launchplan.Service{Name: "web", Pos: launchplan.Pos{File: "plan.toml", Line: 3}, SSH: &cfg}
			d := newDriver(t)
			if tc.noHome {
				d.Home = ""
			}
			_, err := d.Acquire(context.Background(), testRun, svc)
			if err == nil || !strings.Contains(err.Error(), "plan.toml:3: ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want plan.toml:3 and %q", err, tc.want)
			}
		})
	}
}

func writeLockedKey(t *testing.T, path string) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
}
