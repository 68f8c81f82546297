// Package sshservice owns the ssh Driver: it runs a service's programs on an
// existing host over ssh, the way cloudinit.d did (upload each program to a
// per-service stage dir, run it there, read back what the boot program
// exported), and cleans the stage dir up on Release.
//
// It uses golang.org/x/crypto/ssh (with ssh/knownhosts) and github.com/pkg/sftp
// rather than the ssh/scp binaries: both are maintained, need no local
// OpenSSH client or config, give typed exit statuses and host-key errors,
// and sftp transfers name paths as protocol fields, so uploads never quote
// a path into a remote shell string. The one shell string left, the command
// itself, is built by remoteCommand with every element single-quoted.
package sshservice

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"nightshift/bootlevel"
	"nightshift/internal/redact"
	"nightshift/launchplan"
)

// DefaultDialTimeout bounds connect plus ssh handshake when Driver.DialTimeout is 0.
const DefaultDialTimeout = 10 * time.Second

// DefaultStageDir is the remote base of stage dirs when ssh.stage_dir is empty.
const DefaultStageDir = "/tmp/nightshift"

// OutputFile is the name, inside the stage dir, of the boot program's output file.
const OutputFile = "bootout.json"

// killGrace is how long, after asking for the kill, we wait for the server
// to report the exit before dropping the connection; closing at once could
// reset the TCP stream before sshd has read the request. Dropping the
// connection still kills the program (stdin EOF), just less observably.
const killGrace = 2 * time.Second

// defaultOutputDrain is how long output may keep arriving after the remote
// program exited (see session.exec).
const defaultOutputDrain = 2 * time.Second

// Driver runs programs on existing hosts over ssh. The zero value works
// except for trust-on-first-use, which needs Home.
type Driver struct {
	Log *slog.Logger
	// Home holds known_hosts for trust-on-first-use pinning (services
	// without ssh.known_hosts_file).
	Home string
	// DialTimeout bounds TCP connect plus ssh handshake; 0 means DefaultDialTimeout.
	DialTimeout time.Duration

	mu sync.Mutex // serialises pinning in Home/known_hosts
	// outputDrain bounds the wait for output after the exit status; 0
	// means defaultOutputDrain. Tests shorten it.
	outputDrain time.Duration
}

var _ bootlevel.Driver = (*Driver)(nil)

// New returns a Driver that pins host keys under home and logs to log (nil: discard).
func New(home string, log *slog.Logger) *Driver {
	return &Driver{Home: home, Log: log, DialTimeout: DefaultDialTimeout}
}

func (d *Driver) log() *slog.Logger {
	if d.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return d.Log
}

// Acquire proves the host is reachable and accepts us; ssh hosts already exist.
func (d *Driver) Acquire(ctx context.Context, run string, svc *launchplan.Service) (bootlevel.Host, error) {
	if svc == nil {
		return bootlevel.Host{}, errors.New("acquire: nil service")
	}
	client, t, err := d.connect(ctx, svc)
	if err != nil {
		return bootlevel.Host{}, fmt.Errorf("acquire service %s: %w", svc.Name, err)
	}
	_ = client.Close()
	return bootlevel.Host{Hostname: t.host, InstanceID: "ssh:" + t.host + ":" + strconv.Itoa(t.port)}, nil
}

// Release removes the service's stage dir and, if then empty, the run's dir.
// A missing dir is success, so Release is idempotent.
//
// An unreachable host is an error (wrapping ErrUnreachable), not success:
// the stage dir holds the uploaded programs and bootout.json, whose
// exported attributes may be secrets, so it matters. Callers tearing down a
// host that is gone for good may treat errors.Is(err, ErrUnreachable) as done.
func (d *Driver) Release(ctx context.Context, run string, svc *launchplan.Service, host bootlevel.Host) error {
	if svc == nil {
		return errors.New("release: nil service")
	}
	wrap := func(err error) error { return fmt.Errorf("release service %s: %w", svc.Name, err) }
	stage, err := stageDir(svc.SSH, run, svc.Name)
	if err != nil {
		return wrap(fmt.Errorf("%s: %w", svc.Pos, err))
	}
	s, err := d.open(ctx, svc)
	if err != nil {
		return wrap(err)
	}
	defer s.close()
	if err := s.fs.RemoveAll(stage); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return wrap(s.ctxErr(ctx, fmt.Errorf("remove stage dir %s:%s: %w", s.t.addr, stage, err)))
	}
	// Other services of the run may still use it; then this fails, as it should.
	_ = s.fs.RemoveDirectory(path.Dir(stage))
	d.log().Info("ssh: released stage dir", "run", run, "service", svc.Name, "addr", s.t.addr, "dir", stage)
	return nil
}

// Run uploads the program (unless Program.Remote) into the stage dir
// <ssh.stage_dir>/<run>/<service> and runs it there with req.Env, output
// appended to req.LogPath. For StepBoot, NIGHTSHIFT_OUTPUT names
// <stage>/bootout.json, which is read into Outputs after exit 0.
//
// A non-zero exit is ExitCode with a nil error (128+n for a signal); failing
// to connect, upload or learn the exit status is an error. When ctx ends,
// the remote program's process group is killed and the error wraps
// ctx.Err(). On error ExitCode is meaningless.
func (d *Driver) Run(ctx context.Context, req bootlevel.StepRequest) (bootlevel.StepResult, error) {
	if req.Service == nil {
		return bootlevel.StepResult{}, fmt.Errorf("%s: nil service", req.Step)
	}
	res, err := d.run(ctx, req)
	if err != nil {
		return res, fmt.Errorf("%s service %s: %w", req.Step, req.Service.Name, err)
	}
	return res, nil
}

func (d *Driver) run(ctx context.Context, req bootlevel.StepRequest) (bootlevel.StepResult, error) {
	svc := req.Service
	stage, err := stageDir(svc.SSH, req.Run, svc.Name)
	if err != nil {
		return bootlevel.StepResult{}, fmt.Errorf("%s: %w", svc.Pos, err)
	}
	if req.Program.Path == "" {
		return bootlevel.StepResult{}, fmt.Errorf("%s: program path is empty", req.Program.Pos)
	}

	// Everything that can be checked without the host is checked first.
	prog := req.Program.Path
	if !req.Program.Remote {
		prog = path.Join(stage, filepath.Base(req.Program.Path))
	}
	env := make(map[string]string, len(req.Env)+1)
	for k, v := range req.Env {
		env[k] = v
	}
	outPath := path.Join(stage, OutputFile)
	if req.Step == bootlevel.StepBoot {
		env[launchplan.OutputEnv] = outPath
	} else {
		// A local path from the engine means nothing on the remote host.
		delete(env, launchplan.OutputEnv)
	}
	cmd, err := remoteCommand(stage, env, append([]string{prog}, req.Program.Args...))
	if err != nil {
		return bootlevel.StepResult{}, fmt.Errorf("%s: %w", req.Program.Pos, err)
	}

	var logOut io.Writer
	if req.LogPath != "" {
		f, err := redact.OpenPrivate(req.LogPath)
		if err != nil {
			return bootlevel.StepResult{}, fmt.Errorf("open step log: %w", err)
		}
		defer f.Close()
		logOut = f
	}
	out := newTailWriter(logOut)

	s, err := d.open(ctx, svc)
	if err != nil {
		return bootlevel.StepResult{}, err
	}
	defer s.close()
	where := s.t.addr + ":" + stage

	if err := s.fs.MkdirAll(stage); err != nil {
		return bootlevel.StepResult{}, s.ctxErr(ctx, fmt.Errorf("create stage dir %s: %w", where, err))
	}
	// The stage dir may sit in a shared /tmp; keep other users out of it.
	if err := s.fs.Chmod(stage, 0o700); err != nil {
		return bootlevel.StepResult{}, s.ctxErr(ctx, fmt.Errorf("chmod stage dir %s: %w", where, err))
	}
	if !req.Program.Remote {
		if err := s.upload(req.Program.Path, prog); err != nil {
			return bootlevel.StepResult{}, s.ctxErr(ctx, fmt.Errorf("upload %s (%s): %w", req.Program.Path, req.Program.Pos, err))
		}
	}
	if req.Step == bootlevel.StepBoot {
		if err := s.fs.Remove(outPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return bootlevel.StepResult{}, s.ctxErr(ctx, fmt.Errorf("remove stale %s:%s: %w", s.t.addr, outPath, err))
		}
	}

	d.log().Info("ssh: run step", "run", req.Run, "service", svc.Name, "step", req.Step,
		"addr", s.t.addr, "program", prog, "args", len(req.Program.Args))
	start := time.Now()
	drain := d.outputDrain
	if drain <= 0 {
		drain = defaultOutputDrain
	}
	code, err := s.exec(ctx, cmd, out, drain)
	res := bootlevel.StepResult{ExitCode: code, Tail: out.Tail()}
	if err != nil {
		return res, err
	}
	if werr := out.Err(); werr != nil {
		return res, fmt.Errorf("write step log %s: %w", req.LogPath, werr)
	}
	d.log().Info("ssh: step done", "run", req.Run, "service", svc.Name, "step", req.Step,
		"exit", code, "duration", time.Since(start).Round(time.Millisecond))

	if req.Step == bootlevel.StepBoot && code == 0 {
		// exec owned cancellation until now, so nothing would interrupt
		// the fetch below if ctx expired in between.
		if ctx.Err() != nil {
			return res, fmt.Errorf("fetch outputs: %w", ctx.Err())
		}
		outputs, err := s.fetchOutputs(outPath)
		if err != nil {
			return res, s.ctxErr(ctx, err)
		}
		res.Outputs = outputs
	}
	return res, nil
}

// stageDir is <stage_dir>/<run>/<service>. run and service become path
// elements, so they must not be able to climb out of the stage dir.
func stageDir(cfg *launchplan.SSH, run, service string) (string, error) {
	if cfg == nil {
		return "", errors.New("service has no [ssh] section")
	}
	base := cfg.StageDir
	if base == "" {
		base = DefaultStageDir
	}
	// The program's NIGHTSHIFT_OUTPUT must resolve the same from its cwd
	// (the stage dir) as for sftp (the login dir), so only absolute works.
	if !path.IsAbs(base) {
		return "", fmt.Errorf("ssh.stage_dir %q must be an absolute path", base)
	}
	for _, el := range []struct{ what, v string }{{"run name", run}, {"service name", service}} {
		if el.v == "" || el.v == "." || el.v == ".." || strings.ContainsAny(el.v, "/\x00") {
			return "", fmt.Errorf("%s %q cannot be a stage dir path element", el.what, el.v)
		}
	}
	return path.Join(base, run, service), nil
}

// session is one connection with its sftp client. Cancelling the ctx given
// to open closes both, which is what unblocks any sftp or ssh call in flight.
type session struct {
	t      target
	client *ssh.Client
	fs     *sftp.Client
	stop   func() bool
	// running is set while exec owns cancellation, so that it can kill
	// the remote program before the connection goes away.
	running atomic.Bool
}

func (d *Driver) open(ctx context.Context, svc *launchplan.Service) (*session, error) {
	client, t, err := d.connect(ctx, svc)
	if err != nil {
		return nil, err
	}
	s := &session{t: t, client: client}
	s.stop = context.AfterFunc(ctx, func() {
		// While a command runs, exec owns cancellation: it must signal
		// the remote program before the connection goes away.
		if !s.running.Load() {
			_ = client.Close()
		}
	})
	s.fs, err = sftp.NewClient(client)
	if err != nil {
		s.close()
		return nil, s.ctxErr(ctx, fmt.Errorf("sftp %s: %w", t.addr, err))
	}
	return s, nil
}

func (s *session) close() {
	s.stop()
	if s.fs != nil {
		_ = s.fs.Close()
	}
	_ = s.client.Close()
}

// ctxErr replaces an error caused by our own cancellation-close with the
// ctx error, so callers can tell a timeout from a broken host.
func (s *session) ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (while: %v)", ctx.Err(), err)
	}
	return err
}

// upload copies a local program into the stage dir, mode 0755. It writes a
// temp name and renames it over the target, so a copy still executing from
// an earlier step (ETXTBSY) or a torn upload never leaves a broken program.
func (s *session) upload(local, dst string) error {
	src, err := os.Open(local)
	if err != nil {
		return err
	}
	defer src.Close()
	tmp := dst + ".upload"
	f, err := s.fs.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	if _, err := f.ReadFrom(src); err != nil {
		_ = f.Close()
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := s.fs.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("chmod %s: %w", tmp, err)
	}
	if err := s.fs.PosixRename(tmp, dst); err != nil {
		return fmt.Errorf("rename %s: %w", tmp, err)
	}
	return nil
}

// exitInfo is how the server said the command ended.
type exitInfo struct {
	code int
	got  bool // false: the channel closed without an exit status
}

// exec runs cmd and returns its exit code. A non-zero exit is not an error;
// a lost connection or ctx expiry is.
//
// It drives the session channel itself rather than through ssh.Session,
// whose Wait insists on output EOF: a boot program that leaves a daemon
// holding its stdout would otherwise hang the step until its timeout (as
// plain ssh does). Here the exit status ends the step, and output gets at
// most drain more time to arrive, like exec.Cmd.WaitDelay locally.
func (s *session) exec(ctx context.Context, cmd string, out *tailWriter, drain time.Duration) (int, error) {
	ch, reqs, err := s.client.OpenChannel("session", nil)
	if err != nil {
		return -1, s.ctxErr(ctx, fmt.Errorf("open ssh session on %s: %w", s.t.addr, err))
	}
	defer ch.Close()

	exited := make(chan exitInfo, 1)
	go func() {
		var info exitInfo
		// Requests must be drained until the channel closes, or the whole
		// connection stalls; the first exit report is passed on at once.
		for r := range reqs {
			switch r.Type {
			case "exit-status":
				var m struct{ Status uint32 }
				if ssh.Unmarshal(r.Payload, &m) == nil && !info.got {
					info = exitInfo{code: int(m.Status), got: true}
					exited <- info
				}
			case "exit-signal":
				var m struct {
					Signal     string
					CoreDumped bool
					Error      string
					Lang       string
				}
				if ssh.Unmarshal(r.Payload, &m) == nil && !info.got {
					// Shell convention, so a killed program reads the same
					// whether or not a shell sat in between.
					info = exitInfo{code: 128 + signalNumber(m.Signal), got: true}
					exited <- info
				}
			}
			if r.WantReply {
				_ = r.Reply(false, nil)
			}
		}
		if !info.got {
			exited <- info
		}
	}()
	copied := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(out, ch); copied <- struct{}{} }()
	go func() { _, _ = io.Copy(out, ch.Stderr()); copied <- struct{}{} }()
	// Stop writing into the log once we return, whatever is still in flight.
	defer out.Close()

	// stdin stays open and unwritten: its EOF is how the remote watcher in
	// remoteCommand learns that we are gone.
	ok, err := ch.SendRequest("exec", true, ssh.Marshal(struct{ Command string }{cmd}))
	if err == nil && !ok {
		err = errors.New("server refused the exec request")
	}
	if err != nil {
		return -1, s.ctxErr(ctx, fmt.Errorf("start remote command on %s: %w", s.t.addr, err))
	}
	s.running.Store(true)
	defer s.running.Store(false)

	var info exitInfo
	select {
	case info = <-exited:
	case <-ctx.Done():
		// Two routes to the same end. OpenSSH delivers a "signal" request
		// with killpg, but refuses it for sessions without privilege
		// separation (root logins). EOF on stdin makes the watcher from
		// remoteCommand kill the group, and works for every user.
		_, _ = ch.SendRequest("signal", false, ssh.Marshal(struct{ Signal string }{string(ssh.SIGKILL)}))
		_ = ch.CloseWrite()
		select {
		case <-exited:
		case <-time.After(killGrace):
			_ = s.client.Close()
		}
		return -1, fmt.Errorf("remote program on %s killed: %w", s.t.addr, ctx.Err())
	}
	if !info.got {
		return -1, s.ctxErr(ctx, fmt.Errorf("remote command on %s ended without an exit status (connection lost?)", s.t.addr))
	}
	drained := time.NewTimer(drain)
	defer drained.Stop()
	for n := 0; n < 2; n++ {
		select {
		case <-copied:
		case <-drained.C:
			out.note(fmt.Sprintf("[nightshift: output still open %s after exit; a background process holds stdout/stderr]", drain))
			return info.code, nil
		case <-ctx.Done():
			return info.code, nil
		}
	}
	return info.code, nil
}

// fetchOutputs reads the boot output file through the same parser as the
// local driver, so a plan exports the same attributes wherever it runs.
func (s *session) fetchOutputs(p string) (map[string]string, error) {
	f, err := s.fs.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil // exporting nothing is allowed
	}
	if err != nil {
		return nil, fmt.Errorf("boot outputs %s:%s: %w", s.t.addr, p, err)
	}
	defer f.Close()
	return launchplan.ReadOutputs(s.t.addr+":"+p, f)
}

// signalNumber maps RFC 4254 signal names to Linux numbers.
func signalNumber(name string) int {
	switch ssh.Signal(name) {
	case ssh.SIGHUP:
		return 1
	case ssh.SIGINT:
		return 2
	case ssh.SIGQUIT:
		return 3
	case ssh.SIGILL:
		return 4
	case ssh.SIGABRT:
		return 6
	case ssh.SIGFPE:
		return 8
	case ssh.SIGKILL:
		return 9
	case ssh.SIGUSR1:
		return 10
	case ssh.SIGSEGV:
		return 11
	case ssh.SIGUSR2:
		return 12
	case ssh.SIGPIPE:
		return 13
	case ssh.SIGALRM:
		return 14
	case ssh.SIGTERM:
		return 15
	}
	return 0
}
