// Type turns a Nightshift daemon (the provisioner, the controller) into a
// built-in launch-plan service type: boot starts the
// daemon detached, in its own session, with its log in the service's working
// directory and its AMQP URL in a 0600 file rather than on a command line
// anyone can read (and, for an amqps:// broker, the CA to verify it against,
// config key amqp_ca_file, passed as --amqp-ca-file); ready pings it over
// AMQP; terminate stops it with SIGTERM, then SIGKILL after a grace period.
//
// Given the broker's management API (config key management_url, the
// broker's admin URL), boot first creates the daemon's own broker user
// (busid.ComponentUser, with the Spec's permissions) and writes only that
// user's URL for the daemon: the admin credentials in the plan stay with
// the launcher. Without it the daemon connects with amqp_url as given.

package builtin

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"nightshift/bootlevel"
	"nightshift/internal/amqpbus"
	"nightshift/internal/backoff"
	"nightshift/internal/busid"
	"nightshift/internal/leader"
	"nightshift/internal/metrics"
	"nightshift/internal/nsenv"
	"nightshift/internal/ping"
	"nightshift/internal/pki"
	"nightshift/internal/process"
	"nightshift/internal/redact"
	"nightshift/internal/runlayout"
	"nightshift/launchplan"
)

// Spec describes one daemon type.
type Spec struct {
	// Name is the service type and the default binary name.
	Name string
	// Component is the AMQP component the daemon consumes and answers pings on.
	Component string
	// Keys are the config keys the type accepts besides amqp_url,
	// amqp_ca_file and binary.
	Keys []string
	// Role is the daemon's busid role (provisioner, controller) and
	// Permissions what its own broker user may do.
	Role        string
	Permissions func(run string) busid.Permissions
	// Check, when set, validates what the type's keys mean together,
	// after Type.Check has checked each key alone.
	Check func(cfg map[string]any) error
	// Args builds the daemon's arguments (beyond --run, --amqp-url-file and
	// --amqp-ca-file)
	// from the checked config; it may write files (jobs, specs) into dir,
	// the daemon's directory. binDir is where sibling binaries live.
	Args func(req bootlevel.StepRequest, cfg map[string]any, dir, binDir string, self Self) ([]string, error)
}

// Self is the daemon's own broker identity, as boot created it.
type Self struct {
	// User is empty when the daemon shares amqp_url's user (no
	// management_url in its config).
	User string
	// ManagementURL is the management API with the daemon's own
	// credentials, and ManagementURLFile a 0600 file holding it; both
	// empty without an own user.
	ManagementURL, ManagementURLFile string
	// Home is the Nightshift home as the daemon sees it: the launcher's,
	// or hostinstall.Home on a host of its own.
	Home string
	// Away is set when the service's driver puts the daemon on another
	// host (ssh, ec2), where nothing of this machine's is at hand.
	Away bool
}

// Type implements bootlevel.Driver for a daemon.
type Type struct {
	Spec Spec
	// BinDir is where the daemons' binaries are looked for first (the
	// directory of the running launch binary); then $PATH.
	BinDir string
	Log    *slog.Logger
	Grace  time.Duration
	// Drivers are the engine's drivers by name. A service whose driver is
	// not local runs its daemon where that driver puts it (remote.go).
	Drivers map[string]bootlevel.Driver
}

var _ bootlevel.Driver = (*Type)(nil)

// Check validates a service's config table.
func (t *Type) Check(cfg map[string]any) error {
	common := []string{"amqp_url", "amqp_ca_file", "binary", "management_url", "metrics_addr", "release_url"}
	known := map[string]bool{}
	for _, k := range append(common, t.Spec.Keys...) {
		known[k] = true
	}
	for k := range cfg {
		if !known[k] {
			keys := append(common, t.Spec.Keys...)
			return fmt.Errorf("config.%s: unknown key for a %s (known: %s)", k, t.Spec.Name, strings.Join(keys, ", "))
		}
	}
	if s, _ := cfg["amqp_url"].(string); s == "" {
		return fmt.Errorf("config.amqp_url: required (for example \"${broker.url}\")")
	}
	if v, ok := cfg["metrics_addr"]; ok {
		a, ok := v.(string)
		if !ok {
			return fmt.Errorf("config.metrics_addr: want host:port such as \"127.0.0.1:9464\", or \"off\", got %T", v)
		}
		if a != "off" {
			if _, _, err := net.SplitHostPort(a); err != nil {
				return fmt.Errorf("config.metrics_addr: %q: want host:port such as \"127.0.0.1:9464\", or \"off\"", a)
			}
		}
	}
	if v, ok := cfg["amqp_ca_file"]; ok {
		if _, ok := v.(string); !ok {
			return fmt.Errorf("config.amqp_ca_file: want a path (for example \"${broker.ca_file}\"), got %T", v)
		}
	}
	if v, ok := cfg["release_url"]; ok {
		if _, ok := v.(string); !ok {
			return fmt.Errorf("config.release_url: want a URL that serves the daemon's binary under its name, got %T", v)
		}
	}
	if t.Spec.Check != nil {
		return t.Spec.Check(cfg)
	}
	return nil
}

// caFile is the CA the daemon verifies an amqps:// broker against; empty
// for a plain broker, whose ca_file attribute is empty too, so a plan may
// always write amqp_ca_file = "${broker.ca_file}".
func caFile(cfg map[string]any) (string, error) {
	ca, _ := cfg["amqp_ca_file"].(string)
	if ca == "" {
		return "", nil
	}
	if u, _ := cfg["amqp_url"].(string); !strings.HasPrefix(u, "amqps://") {
		return "", fmt.Errorf("config.amqp_ca_file: given, but amqp_url is not amqps://")
	}
	if !filepath.IsAbs(ca) {
		return "", fmt.Errorf("config.amqp_ca_file: %q is not an absolute path", ca)
	}
	return ca, nil
}

// Acquire: a daemon runs on this machine, or on the host the service's
// driver acquires.
func (t *Type) Acquire(ctx context.Context, run string, svc *launchplan.Service) (bootlevel.Host, error) {
	if err := t.Check(svc.TypeConfig); err != nil {
		return bootlevel.Host{}, fmt.Errorf("%s %s: %w", t.Spec.Name, svc.Name, err)
	}
	if drv, err := t.placed(svc); err != nil || drv != nil {
		if err != nil {
			return bootlevel.Host{}, err
		}
		return drv.Acquire(ctx, run, svc)
	}
	host, _ := os.Hostname()
	if host == "" {
		host = "localhost"
	}
	return bootlevel.Host{Hostname: host, InstanceID: t.Spec.Name + ":" + svc.Name}, nil
}

// Release: nothing beyond the terminate step here; a host the driver
// acquired goes back through it.
func (t *Type) Release(ctx context.Context, run string, svc *launchplan.Service, host bootlevel.Host) error {
	drv, err := t.placed(svc)
	if err != nil || drv == nil {
		return err
	}
	return drv.Release(ctx, run, svc, host)
}

// Run performs boot, ready and terminate.
func (t *Type) Run(ctx context.Context, req bootlevel.StepRequest) (bootlevel.StepResult, error) {
	cfg := req.Service.TypeConfig
	if err := t.Check(cfg); err != nil {
		return bootlevel.StepResult{}, fmt.Errorf("%s %s: %w", t.Spec.Name, req.Service.Name, err)
	}
	dir := filepath.Join(req.WorkDir, t.Spec.Name)
	var tail []string
	say := func(format string, args ...any) {
		line := req.Scrub(fmt.Sprintf(format, args...))
		tail = append(tail, line)
		appendLog(req.LogPath, t.Spec.Name+": "+line)
	}
	drv, err := t.placed(req.Service)
	if err != nil {
		return bootlevel.StepResult{}, err
	}
	away := drv != nil && !stepsHere(drv, req.Service)
	var out map[string]string
	switch {
	case req.Step == bootlevel.StepBoot && drv != nil:
		out, err = t.install(ctx, drv, req, cfg, dir, say)
	case req.Step == bootlevel.StepBoot:
		out, err = t.boot(ctx, req, cfg, dir, say)
	case req.Step == bootlevel.StepReady && away:
		err = t.ready(ctx, req, cfg)
	case req.Step == bootlevel.StepTerminate && away:
		err = t.uninstall(ctx, drv, req, say)
	case req.Step == bootlevel.StepReady:
		if pid, ok := t.pid(dir); !ok {
			say("ready failed: the %s is not running (pid %d)", t.Spec.Name, pid)
			return bootlevel.StepResult{ExitCode: 1, Tail: append(tail, lastLines(filepath.Join(dir, "daemon.log"), 10, req.Scrub)...), Gone: true}, nil
		}
		err = t.ready(ctx, req, cfg)
	case req.Step == bootlevel.StepTerminate:
		err = t.stop(ctx, dir, say)
	}
	if err != nil {
		if ctx.Err() != nil {
			return bootlevel.StepResult{Tail: tail}, fmt.Errorf("%s %s %s: %w", t.Spec.Name, req.Service.Name, req.Step, errors.Join(err, ctx.Err()))
		}
		say("%s failed: %v", req.Step, err)
		if req.Step == bootlevel.StepReady || req.Step == bootlevel.StepBoot {
			tail = append(tail, lastLines(filepath.Join(dir, "daemon.log"), 10, req.Scrub)...)
		}
		return bootlevel.StepResult{ExitCode: 1, Tail: tail}, nil
	}
	return bootlevel.StepResult{Outputs: out, Tail: tail}, nil
}

func (t *Type) binary(cfg map[string]any) (string, error) {
	if b, _ := cfg["binary"].(string); b != "" {
		return b, nil
	}
	return FindBinary(t.BinDir, t.Spec.Name)
}

// FindBinary finds a Nightshift binary: beside the running launch binary
// first (so a build directory is self-contained), then on $PATH.
func FindBinary(binDir, name string) (string, error) {
	if binDir != "" {
		p := filepath.Join(binDir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p, nil
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("no %s binary beside launch (%s) or on $PATH: build them with `go build -o bin/ ./cmd/...`", name, binDir)
	}
	return p, nil
}

func (t *Type) boot(ctx context.Context, req bootlevel.StepRequest, cfg map[string]any, dir string, say func(string, ...any)) (map[string]string, error) {
	if err := t.stop(ctx, dir, say); err != nil { // never two daemons for one service
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	bin, err := t.binary(cfg)
	if err != nil {
		return nil, err
	}
	own, self, err := t.identity(ctx, req, cfg, dir)
	if err != nil {
		return nil, err
	}
	self.Home = os.Getenv(nsenv.Home)
	if self.User != "" {
		say("broker user %s created for the %s", self.User, t.Spec.Name)
	}
	urlFile := filepath.Join(dir, runlayout.URLFile)
	if err := os.WriteFile(urlFile, []byte(own+"\n"), 0o600); err != nil {
		return nil, err
	}
	args := []string{"--run", req.Run, "--amqp-url-file", urlFile}
	ca, err := caFile(cfg)
	if err != nil {
		return nil, err
	}
	if ca != "" {
		args = append(args, "--amqp-ca-file", ca)
	}
	// The daemon serves its metrics where the plan says (default an
	// ephemeral loopback port) and writes the URL it got, which boot waits
	// for and exports as metrics_url.
	metricsAddr, _ := cfg["metrics_addr"].(string)
	if metricsAddr == "" {
		metricsAddr = metrics.DefaultAddr
	}
	metricsFile := filepath.Join(dir, "metrics-url")
	if err := os.Remove(metricsFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	args = append(args, "--metrics-addr", metricsAddr)
	if metricsAddr != "off" {
		args = append(args, "--metrics-url-file", metricsFile)
	}
	if t.Spec.Args != nil {
		more, err := t.Spec.Args(req, cfg, dir, t.BinDir, self)
		if err != nil {
			return nil, err
		}
		args = append(args, more...)
	}
	logf, err := redact.OpenPrivate(filepath.Join(dir, "daemon.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = os.Environ()
	for k, v := range req.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // outlives launch, as a daemon must
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	pid := cmd.Process.Pid
	cmd.Process.Release()
	if err := os.WriteFile(filepath.Join(dir, "pid"), []byte(strconv.Itoa(pid)+"\n"), 0o600); err != nil {
		return nil, err
	}
	say("started %s (pid %d), log %s", bin, pid, filepath.Join(dir, "daemon.log"))
	out := map[string]string{"pid": strconv.Itoa(pid), launchplan.AttrComponent: t.Spec.Component, "log": filepath.Join(dir, "daemon.log"),
		"broker_user": self.User}
	if metricsAddr != "off" {
		u, err := waitMetricsURL(ctx, metricsFile, func() bool { return alive(pid, dir) })
		if err != nil {
			return nil, err
		}
		say("metrics at %s", u)
		out["metrics_url"] = u
	}
	return out, nil
}

// metricsWait bounds how long boot waits for a daemon to serve its metrics,
// which it does before anything else (the broker included).
const metricsWait = 30 * time.Second

// waitMetricsURL waits for the daemon to write the URL of its metrics
// endpoint, failing at once if the daemon dies first.
func waitMetricsURL(ctx context.Context, file string, running func() bool) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, metricsWait)
	defer cancel()
	retry := backoff.Backoff{Policy: backoff.Policy{Initial: 20 * time.Millisecond, Max: 250 * time.Millisecond}}
	for {
		if u, err := metrics.ReadURLFile(file); err == nil && u != "" {
			return u, nil
		}
		if !running() {
			return "", fmt.Errorf("the daemon exited before serving its metrics (see its log)")
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("no metrics URL in %s after %v: %w", file, metricsWait, ctx.Err())
		case <-time.After(retry.Next()):
		}
	}
}

// identity creates the daemon's own broker user when the config names the
// management API, and returns the AMQP URL the daemon is to use. A re-boot
// resets the user's password (PUT is idempotent): the old daemon is
// stopped by then, and the new one gets the new URL.
func (t *Type) identity(ctx context.Context, req bootlevel.StepRequest, cfg map[string]any, dir string) (string, Self, error) {
	amqpURL := cfg["amqp_url"].(string)
	mgmtURL, _ := cfg["management_url"].(string)
	if mgmtURL == "" || t.Spec.Permissions == nil {
		return amqpURL, Self{}, nil
	}
	user := busid.ComponentUser(req.Run, t.Spec.Role, req.Service.Name)
	b := make([]byte, 18)
	if _, err := rand.Read(b); err != nil {
		return "", Self{}, err
	}
	pass := hex.EncodeToString(b)
	ca, err := caFile(cfg)
	if err != nil {
		return "", Self{}, err
	}
	// An amqps:// broker serves its management API over HTTPS with the
	// same CA.
	client, err := pki.HTTPClient(ca, "", 30*time.Second)
	if err != nil {
		return "", Self{}, err
	}
	admin := busid.Admin{URL: mgmtURL, VHost: busid.VHost(amqpURL), Client: client}
	uctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := admin.EnsureUser(uctx, user, pass, t.Spec.Permissions(req.Run)); err != nil {
		return "", Self{}, err
	}
	own, err := busid.WithUser(amqpURL, user, pass)
	if err != nil {
		return "", Self{}, fmt.Errorf("config.amqp_url: %w", err)
	}
	ownMgmt, err := busid.WithUser(mgmtURL, user, pass)
	if err != nil {
		return "", Self{}, fmt.Errorf("config.management_url: %w", err)
	}
	file := filepath.Join(dir, "management-url")
	if err := os.WriteFile(file, []byte(ownMgmt+"\n"), 0o600); err != nil {
		return "", Self{}, err
	}
	return own, Self{User: user, ManagementURL: ownMgmt, ManagementURLFile: file}, nil
}

func (t *Type) ready(ctx context.Context, req bootlevel.StepRequest, cfg map[string]any) error {
	url := cfg["amqp_url"].(string)
	ca, err := caFile(cfg)
	if err != nil {
		return err
	}
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	bus, err := amqpbus.Dial(dctx, amqpbus.Config{URL: url, CAFile: ca, Run: req.Run, Name: "ready-check:" + req.Service.Name, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		return fmt.Errorf("connect to the broker: %w", err)
	}
	defer bus.Close()
	pctx, pcancel := context.WithTimeout(ctx, 3*time.Second)
	defer pcancel()
	_, err = ping.Call(pctx, bus, "launch", t.Spec.Component)
	return err
}

func (t *Type) stop(ctx context.Context, dir string, say func(string, ...any)) error {
	grace := t.Grace
	if grace == 0 {
		grace = 10 * time.Second
	}
	return process.StopPIDFile(ctx, filepath.Join(dir, "pid"), grace, func(pid int) bool { return alive(pid, dir) },
		func(pid int) { say("stopping pid %d", pid) },
		func(pid int) { say("pid %d ignored SIGTERM for %s: SIGKILL", pid, grace) })
}

// pid reads the daemon's pid file and says whether that process still runs.
func (t *Type) pid(dir string) (int, bool) {
	pid, err := process.ReadPIDFile(filepath.Join(dir, "pid"))
	if err != nil {
		return 0, false
	}
	return pid, alive(pid, dir)
}

// alive reports whether pid still runs the daemon started in dir; pids are
// reused, and the daemon's working directory identifies it.
func alive(pid int, dir string) bool {
	cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	if err != nil {
		return false
	}
	if st, err := process.ReadStat("", pid); err == nil && st.Zombie() {
		return false
	}
	return filepath.Clean(cwd) == filepath.Clean(dir)
}

func appendLog(path, line string) {
	if path == "" {
		return
	}
	f, err := redact.OpenPrivate(path)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s %s\n", time.Now().UTC().Format(time.RFC3339), line)
}

func lastLines(path string, n int, scrub func(string) string) []string {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	if len(data) > 64<<10 {
		data = data[len(data)-64<<10:]
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	for i := range lines {
		lines[i] = scrub(lines[i])
	}
	return lines
}

// Process reports the daemon a service of this type runs from workDir (the
// service's working directory): its pid, and whether that process is alive
// and still the daemon started there. It reads one pid file and /proc, so a
// supervisor can ask many times a second.
func (t *Type) Process(workDir string, svc *launchplan.Service) (pid int, alive, watched bool) {
	if drv, err := t.placed(svc); err != nil || (drv != nil && !stepsHere(drv, svc)) {
		return 0, false, false // systemd on its host keeps it
	}
	pid, alive = t.pid(filepath.Join(workDir, t.Spec.Name))
	return pid, alive, true
}

// Lease reports the role and epoch a replica of this type (config.replicas
// > 1) last recorded in its directory, while the process that recorded it
// still runs there; ok is false for a daemon that is no replica, or dead.
// It reads two small files and /proc, as Process does.
func (t *Type) Lease(workDir string, svc *launchplan.Service) (st leader.State, ok bool) {
	dir := filepath.Join(workDir, t.Spec.Name)
	st, err := leader.ReadState(filepath.Join(dir, LeaseFile))
	if err != nil {
		return leader.State{}, false
	}
	if pid, alive := t.pid(dir); !alive || pid != st.PID {
		return leader.State{}, false
	}
	return st, true
}
