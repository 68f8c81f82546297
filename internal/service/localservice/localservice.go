// Package localservice owns running a service's programs on the launching
// machine: a bootlevel.Driver that execs argv (never a shell) in its own
// process group with output appended to the step's log file, reads the boot
// program's exported attributes, and kills the whole group when a step's
// context expires.
package localservice

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jonboulle/clockwork"

	"nightshift/bootlevel"
	"nightshift/internal/redact"
	"nightshift/launchplan"
)

var _ bootlevel.Driver = (*Driver)(nil)

// DefaultKillGrace is how long a timed-out program gets between SIGTERM and
// SIGKILL.
const DefaultKillGrace = 2 * time.Second

const (
	// tailLines is how many lines of a step's output StepResult.Tail keeps.
	tailLines = 20
	// tailBytes caps how much of the log is read back for the tail, so a
	// chatty program cannot make the driver read gigabytes.
	tailBytes = 64 << 10
	// instanceID is what Acquire reports: there is one local host.
	instanceID = "local"
	// outputDir is the directory under WorkDir that holds output files.
	outputDir = ".nightshift"
)

// Driver runs programs on this machine.
type Driver struct {
	Log *slog.Logger
	// KillGrace is the pause between SIGTERM and SIGKILL on timeout; 0 means
	// DefaultKillGrace.
	KillGrace time.Duration
	// Clock stamps log headers and output file names; nil means the real
	// clock.
	Clock clockwork.Clock
}

// New returns a Driver with the default kill grace; a nil log discards.
// WritesStepHeader: Run starts every step's log with a header line.
func (d *Driver) WritesStepHeader(bootlevel.StepRequest) bool { return true }

func New(log *slog.Logger) *Driver {
	return &Driver{Log: log, KillGrace: DefaultKillGrace}
}

func (d *Driver) log() *slog.Logger {
	if d.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return d.Log
}

func (d *Driver) clock() clockwork.Clock {
	if d.Clock == nil {
		return clockwork.NewRealClock()
	}
	return d.Clock
}

func (d *Driver) killGrace() time.Duration {
	if d.KillGrace <= 0 {
		return DefaultKillGrace
	}
	return d.KillGrace
}

// Acquire returns this machine.
func (d *Driver) Acquire(ctx context.Context, run string, svc *launchplan.Service) (bootlevel.Host, error) {
	if err := ctx.Err(); err != nil {
		return bootlevel.Host{}, fmt.Errorf("acquire local host for %s: %w", svcName(svc), err)
	}
	name, err := os.Hostname()
	if err != nil || name == "" {
		name = "localhost"
	}
	return bootlevel.Host{Hostname: name, InstanceID: instanceID}, nil
}

// Release has nothing to give back.
func (d *Driver) Release(ctx context.Context, run string, svc *launchplan.Service, host bootlevel.Host) error {
	return nil
}

func svcName(svc *launchplan.Service) string {
	if svc == nil {
		return "service ?"
	}
	return "service " + svc.Name
}

// Run runs req.Program to completion. See bootlevel.Driver.
func (d *Driver) Run(ctx context.Context, req bootlevel.StepRequest) (bootlevel.StepResult, error) {
	what := fmt.Sprintf("%s %s", svcName(req.Service), req.Step)
	if err := ctx.Err(); err != nil {
		return bootlevel.StepResult{}, fmt.Errorf("%s: not started: %w", what, err)
	}
	if err := checkRequest(req); err != nil {
		return bootlevel.StepResult{}, fmt.Errorf("%s: %w", what, err)
	}
	if err := os.MkdirAll(req.WorkDir, 0o755); err != nil {
		return bootlevel.StepResult{}, fmt.Errorf("%s: workdir: %w", what, err)
	}
	logFile, err := openLog(req.LogPath)
	if err != nil {
		return bootlevel.StepResult{}, fmt.Errorf("%s: %w", what, err)
	}
	defer logFile.Close()
	// Reading back goes through its own descriptor so that the program's
	// stdout and stderr are write-only.
	logReader, err := os.Open(req.LogPath)
	if err != nil {
		return bootlevel.StepResult{}, fmt.Errorf("%s: %w", what, err)
	}
	defer logReader.Close()

	now := d.clock().Now()
	var outputPath string
	env := inheritedEnv()
	for _, k := range sortedKeys(req.Env) {
		env = append(env, k+"="+req.Env[k])
	}
	if req.Step == bootlevel.StepBoot {
		if outputPath, err = freshOutputPath(req, now); err != nil {
			return bootlevel.StepResult{}, fmt.Errorf("%s: %w", what, err)
		}
		env = append(env, launchplan.OutputEnv+"="+outputPath)
	}

	if _, err := fmt.Fprintf(logFile, "%s=== %s %s: %s ===\n", lineBreak(logReader), now.UTC().Format(time.RFC3339Nano), req.Step, commandLine(req.Program, req.Scrub)); err != nil {
		return bootlevel.StepResult{}, fmt.Errorf("%s: write log %s: %w", what, req.LogPath, err)
	}
	start, err := logFile.Seek(0, io.SeekEnd)
	if err != nil {
		return bootlevel.StepResult{}, fmt.Errorf("%s: log %s: %w", what, req.LogPath, err)
	}

	cmd := exec.Command(req.Program.Path, req.Program.Args...)
	cmd.Env = env
	cmd.Dir = req.WorkDir
	// The file itself, not a pipe: a daemon started by the program inherits
	// these descriptors and would keep a pipe open, so Wait would never
	// return.
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Its own process group, so that a timeout can kill everything it started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}

	log := d.log().With("run", req.Run, "service", serviceName(req), "step", string(req.Step))
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(logFile, "%s=== could not start: %s ===\n", lineBreak(logReader), req.Scrub(err.Error()))
		return bootlevel.StepResult{}, fmt.Errorf("%s: start %s: %w", what, req.Program.Path, err)
	}
	log.DebugContext(ctx, "step started", "pid", cmd.Process.Pid, "program", req.Program.Path)

	waitErr, ctxErr := d.wait(ctx, cmd, log)
	res := bootlevel.StepResult{ExitCode: exitCode(cmd.ProcessState), Tail: tail(logReader, start)}
	if ctxErr != nil {
		elapsed := d.clock().Since(now)
		if dl, ok := ctx.Deadline(); ok && errors.Is(ctxErr, context.DeadlineExceeded) {
			elapsed = dl.Sub(now)
		}
		verb := "timed out"
		if !errors.Is(ctxErr, context.DeadlineExceeded) {
			verb = "cancelled"
		}
		fmt.Fprintf(logFile, "%s=== %s %s after %s: process group killed ===\n", lineBreak(logReader), req.Step, verb, roundDuration(elapsed))
		return res, fmt.Errorf("%s %s after %s: %w", what, verb, roundDuration(elapsed), ctxErr)
	}
	var exitErr *exec.ExitError
	if waitErr != nil && !errors.As(waitErr, &exitErr) {
		return res, fmt.Errorf("%s: wait for %s: %w", what, req.Program.Path, waitErr)
	}
	log.DebugContext(ctx, "step exited", "exit_code", res.ExitCode)
	if res.ExitCode != 0 || outputPath == "" {
		return res, nil
	}
	outputs, err := readOutputs(outputPath)
	if err != nil {
		return res, fmt.Errorf("%s: %w", what, err)
	}
	res.Outputs = outputs
	return res, nil
}

func serviceName(req bootlevel.StepRequest) string {
	if req.Service == nil {
		return ""
	}
	return req.Service.Name
}

func checkRequest(req bootlevel.StepRequest) error {
	if req.Program.Path == "" {
		return errors.New("program path is empty")
	}
	if req.WorkDir == "" {
		return errors.New("workdir is empty")
	}
	if req.LogPath == "" {
		return errors.New("log path is empty")
	}
	for _, k := range sortedKeys(req.Env) {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return fmt.Errorf("env: invalid variable name %q", k)
		}
		if strings.Contains(req.Env[k], "\x00") {
			return fmt.Errorf("env %s: value contains a NUL byte", k)
		}
	}
	return nil
}

// inheritedEnv is this process's environment minus the output variable: if
// nightshift itself runs under a boot program, its NIGHTSHIFT_OUTPUT belongs
// to that program and must not reach ours.
func inheritedEnv() []string {
	env := os.Environ()
	out := env[:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, launchplan.OutputEnv+"=") {
			out = append(out, kv)
		}
	}
	return out
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// openLog opens the step log for appending, private to the owner because
// programs print connection strings; a log left 0644 is tightened.
func openLog(path string) (*os.File, error) {
	f, err := redact.OpenPrivate(path)
	if err != nil {
		return nil, fmt.Errorf("open log %s: %w", path, err)
	}
	return f, nil
}

// freshOutputPath names a boot output file that does not exist, unique per
// service and instant so that services sharing a WorkDir never read each
// other's (or a previous boot's) outputs.
func freshOutputPath(req bootlevel.StepRequest, now time.Time) (string, error) {
	dir := filepath.Join(req.WorkDir, outputDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("output dir: %w", err)
	}
	name := fmt.Sprintf("%s-%s-%d.json", req.Step, safeName(serviceName(req)), now.UnixNano())
	path := filepath.Join(dir, name)
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("remove old output file: %w", err)
	}
	return path, nil
}

func safeName(s string) string {
	if s == "" {
		return "service"
	}
	return strings.Map(func(r rune) rune {
		if r == '-' || r == '_' || r == '.' || (r >= '0' && r <= '9') || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') {
			return r
		}
		return '_'
	}, s)
}

// commandLine renders argv for the log header, quoting where needed and
// passing each argument through scrub: expanded templates put the run's
// secret, passwords and URLs with passwords on command lines.
func commandLine(p launchplan.Program, scrub func(string) string) string {
	parts := []string{strconv.Quote(p.Path)}
	if !strings.ContainsAny(p.Path, " \t\n\"'\\") {
		parts[0] = p.Path
	}
	for _, a := range p.Args {
		a = scrub(a)
		if a == "" || strings.ContainsAny(a, " \t\n\"'\\$;&|<>()`*?[]{}#~") {
			a = strconv.Quote(a)
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

// wait waits for the program, or on ctx expiry terminates its process group:
// SIGTERM, up to KillGrace for the group to empty, then SIGKILL. It returns
// Wait's error and, if the context ended the step, the context's error.
func (d *Driver) wait(ctx context.Context, cmd *exec.Cmd, log *slog.Logger) (waitErr, ctxErr error) {
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err, nil
	case <-ctx.Done():
	}
	pgid := cmd.Process.Pid
	log.Info("step context ended, terminating process group", "pgid", pgid, "cause", ctx.Err())
	_ = syscall.Kill(-pgid, syscall.SIGTERM)

	// Wait for the leader first, then for stragglers that outlive it, all
	// within one grace period.
	clock := d.clock()
	grace := clock.NewTimer(d.killGrace())
	defer grace.Stop()
	poll := clock.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	exited := false
wait:
	for !exited || groupAlive(pgid) {
		select {
		case waitErr = <-done:
			exited = true
		case <-poll.Chan():
		case <-grace.Chan():
			break wait
		}
	}
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err == nil {
		log.Warn("process group ignored SIGTERM, killed", "pgid", pgid, "grace", d.killGrace())
	}
	if !exited {
		// The group kill covers the leader; killing it by pid as well means
		// a failed group kill cannot leave us waiting forever.
		_ = cmd.Process.Kill()
		waitErr = <-done
	}
	return waitErr, ctx.Err()
}

// groupAlive reports whether any process of the group still exists (zombies
// included, which only makes us send a harmless SIGKILL).
func groupAlive(pgid int) bool {
	return syscall.Kill(-pgid, 0) == nil
}

// exitCode maps a finished process to a shell-style exit code: 128+signal
// when a signal killed it.
func exitCode(ps *os.ProcessState) int {
	if ps == nil {
		return -1
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

// roundDuration keeps "timed out after 5s" readable: the deadline was set a
// little before the step started, so the measured span is a hair short.
func roundDuration(d time.Duration) time.Duration {
	if d >= 500*time.Millisecond {
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(10 * time.Millisecond)
}

// lineBreak returns "\n" when f does not end with one, so that our marker
// lines start a line even after output without a final newline.
func lineBreak(f *os.File) string {
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return ""
	}
	last := make([]byte, 1)
	if _, err := f.ReadAt(last, fi.Size()-1); err != nil || last[0] == '\n' {
		return ""
	}
	return "\n"
}

// tail returns the last tailLines lines written to f since offset start.
func tail(f *os.File, start int64) []string {
	fi, err := f.Stat()
	if err != nil || fi.Size() <= start {
		return nil
	}
	from, partial := start, false
	if fi.Size()-start > tailBytes {
		from, partial = fi.Size()-tailBytes, true
	}
	buf := make([]byte, fi.Size()-from)
	n, err := f.ReadAt(buf, from)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil
	}
	return lastLines(buf[:n], partial, tailLines)
}

// lastLines splits text into lines and keeps the last n; when partial, the
// first line was cut by the byte cap and is dropped.
func lastLines(buf []byte, partial bool, n int) []string {
	text := strings.ToValidUTF8(string(buf), "\uFFFD")
	text = strings.TrimSuffix(text, "\n")
	lines := strings.Split(text, "\n")
	if partial && len(lines) > 1 {
		lines = lines[1:]
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	for i, l := range lines {
		lines[i] = strings.TrimSuffix(l, "\r")
	}
	return lines
}
