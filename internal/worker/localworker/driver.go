// Package localworker is the provisioner Driver that runs each instance as a
// detached process tree on this machine. An instance owns a working
// directory Home/runs/<run>/instances/<id>/ holding its stdout, stderr,
// spec.json and owner.json, the ownership marker that lets a teardown (Sweep)
// or a restarted provisioner (List) find and kill it without any database.
// Instances run in their own session, so they outlive the provisioner.
//
// With Config.Isolation (a provisioner running as root) every instance's
// process tree runs as an unprivileged user instead (its job's worker.user,
// else workeruser.DefaultName), started with that uid and gid and no
// supplementary groups. The instance directory then stays the provisioner's
// (0700, inside the run's 0700 directory), and the worker gets a directory
// of its own outside the home (runlayout.Run.WorkerDir) holding only what
// it needs: its spec, its broker URL, the broker's CA and its sitter state.
package localworker

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/jonboulle/clockwork"
	"golang.org/x/sync/errgroup"

	"nightshift/internal/cgroup"
	"nightshift/internal/nsenv"
	"nightshift/internal/redact"
	"nightshift/internal/runlayout"
	"nightshift/internal/worker/instlock"
	"nightshift/internal/workeruser"
	"nightshift/provisioner"
)

// Environment variables every instance process carries. NIGHTSHIFT_HOME and
// NIGHTSHIFT_RUN follow the convention internal/procscan relies on.
const (
	envHome     = nsenv.Home
	envRun      = nsenv.Run
	envJob      = nsenv.Job
	envInstance = nsenv.InstanceID
	envDir      = nsenv.InstanceDir
	envURLFile  = nsenv.AMQPURLFile
	// envCommandKey carries the public half of the run's command key, with
	// which the sitter verifies drain and control (cmd/sitter reads it).
	envCommandKey = nsenv.CommandKey
	envWorkerDir  = nsenv.WorkerDir
)

// DefaultWorkerRoot holds isolated workers' own directories when
// Isolation.Root does not say: beside the default worker user's name, and
// outside any home, whose ancestors (/root) a worker may not traverse.
const DefaultWorkerRoot = "/var/lib/nightshift-worker"

// Names of the files an isolated worker's directory holds besides its
// spec and broker URL.
const workerCAFile = "amqp-ca.pem"

const (
	ownerFile     = "owner.json"
	defaultGrace  = 10 * time.Second
	pollInterval  = 50 * time.Millisecond
	killWaitLimit = 5 * time.Second
)

// pathSafe is the alphabet of run names and instance ids, which become
// directory names.
var pathSafe = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$`)

// Owner is the content of owner.json.
type Owner struct {
	Run        string `json:"run"`
	Job        string `json:"job"`
	InstanceID string `json:"instance_id"`
	LaunchID   string `json:"launch_id,omitempty"`
	PID        int    `json:"pid"`
	// StartTime is the process start time in clock ticks since boot, from
	// /proc/<pid>/stat, so a reused pid is never mistaken for the instance.
	StartTime uint64 `json:"start_time"`
	// User and WorkerDir are set for an isolated instance: the user its
	// tree runs as and its own directory (sitter logs are under it).
	User      string `json:"user,omitempty"`
	WorkerDir string `json:"worker_dir,omitempty"`
	// UID is the uid of the instance's own (Isolation.UIDs), 0 when it
	// runs as a named user: terminate kills every process holding it.
	UID uint32 `json:"uid,omitempty"`
}

// WorkerFile is where instance id keeps a file of its own (its broker URL
// file, its sitter's directory): in its worker directory when it is
// isolated, else in its instance directory.
func WorkerFile(home, run, id, name string) string {
	dir := InstanceDir(home, run, id)
	if o, err := readOwner(dir); err == nil && o.WorkerDir != "" && o.InstanceID == id {
		return filepath.Join(o.WorkerDir, name)
	}
	return filepath.Join(dir, name)
}

// SitterDir is where instance id's sitter keeps its state and logs.
func SitterDir(home, run, id string) string { return WorkerFile(home, run, id, runlayout.SitterDir) }

// Isolation runs every instance as an unprivileged user. Only a root
// process can start one: cmd/provisioner sets it when it is root.
type Isolation struct {
	// Users resolves (and creates, once, the default) worker users; one
	// per process, shared by every launch.
	Users *workeruser.Users
	// User is the user of instances whose job's worker.user names none;
	// default workeruser.DefaultName.
	User string
	// Root holds the workers' own directories; default DefaultWorkerRoot.
	Root string
	// CgroupRoot is where the cgroup hierarchies are mounted (default
	// cgroup.DefaultRoot): each instance gets a group there handed to its
	// user (CgroupPrefix), where its sitter makes its tasks' groups.
	CgroupRoot string
	// UIDs, when set, runs each instance whose job names no worker.user
	// under a uid of its own from this range, with the same number as its
	// gid and no passwd entry (systemd's DynamicUser): workers of one job
	// cannot read each other's files, signal or trace each other, or read
	// each other's environment. The provisioner records the uid with the
	// instance (provisioner.UIDPicker). Nil runs them all as User.
	UIDs *UIDRange
	// PasswdFile and GroupFile are where the host's users and groups are
	// listed, whose ids UIDs never hands out; default /etc/passwd and
	// /etc/group.
	PasswdFile, GroupFile string
}

// CgroupPrefix is the cgroup an isolated instance's sitter is handed, in
// each v1 hierarchy: apart from root sitters' own (nightshift/sitter-PID),
// one directory per run, so a sweep finds all of a run's. The run's
// directory is named as its worker directories are (WorkerRunDir: the run
// and a digest of the absolute home), so two homes' runs of one name never
// share it and one's sweep never reaches the other's tasks.
func CgroupPrefix(home, run, id string) string { return cgroupRunPrefix(home, run) + "/" + id }

func cgroupRunPrefix(home, run string) string {
	return "nightshift-workers/" + filepath.Base(runlayout.Of(home, run).WorkerRunDir("/"))
}

func (iso *Isolation) cgroupRoot() string {
	if iso.CgroupRoot != "" {
		return iso.CgroupRoot
	}
	return cgroup.DefaultRoot
}

// Config configures a Driver.
type Config struct {
	Home    string   // root directory; required
	Run     string   // run name; required
	Command []string // argv of every instance; required
	Env     []string // KEY=VALUE pairs added to the few variables inherited (see inheritedEnv)
	// CommandKey is the public half of the run's command key, handed to
	// every instance so its sitter can verify drain and control. Only the
	// public half: the private key and the run's secret never reach a
	// worker. Nil leaves sitters refusing those commands.
	CommandKey ed25519.PublicKey
	// CAFile is the PEM CA an amqps:// broker chains to, handed to the
	// instance as NIGHTSHIFT_AMQP_CA_FILE (a copy in its own directory
	// when isolated, which cannot reach the run's pki directory).
	CAFile string
	// SharedBrokerURL is the broker URL an instance gets when its launch
	// carries none of its own (no per-worker broker users: every component
	// shares one). It is written to the instance's own 0600 URL file, since
	// an isolated instance cannot read the provisioner's.
	SharedBrokerURL string
	// Isolation, when set, runs instances as another user; nil runs them
	// as this process's user, which lets them read the run's files.
	Isolation *Isolation
	Grace     time.Duration
	Host      string // reported as the instance host; default os.Hostname()
	Log       *slog.Logger
	Clock     clockwork.Clock
}

// Driver implements provisioner.Driver with local processes.
type Driver struct {
	cfg Config
	// locks serialises launch and terminate per instance within this
	// process; flock on the directory covers other processes.
	locks instlock.Set
	exits chan provisioner.Exit
	procs procUIDs // PickUIDs' view of the uids running processes hold
}

var (
	_ provisioner.Driver      = (*Driver)(nil)
	_ provisioner.ExitWatcher = (*Driver)(nil)
)

// Exits reports instances this process started whose process ended, the
// moment it is reaped. After a provisioner restart it is no longer the
// instances' parent, and reconcile finds dead ones instead.
func (d *Driver) Exits() <-chan provisioner.Exit { return d.exits }

// New validates cfg.
func New(cfg Config) (*Driver, error) {
	if cfg.Home == "" || len(cfg.Command) == 0 {
		return nil, errors.New("local worker driver: Home and Command are required")
	}
	if !pathSafe.MatchString(cfg.Run) {
		return nil, fmt.Errorf("local worker driver: run %q: want [a-zA-Z0-9_.-]", cfg.Run)
	}
	home, err := filepath.Abs(cfg.Home)
	if err != nil {
		return nil, fmt.Errorf("local worker driver: home: %w", err)
	}
	cfg.Home = home
	if cfg.Grace <= 0 {
		cfg.Grace = defaultGrace
	}
	if cfg.Host == "" {
		cfg.Host, _ = os.Hostname()
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = clockwork.NewRealClock()
	}
	if iso := cfg.Isolation; iso != nil {
		cp := *iso
		if cp.Users == nil {
			cp.Users = &workeruser.Users{}
		}
		if cp.User == "" {
			cp.User = workeruser.DefaultName
		}
		if cp.Root == "" {
			cp.Root = DefaultWorkerRoot
		}
		if r := cp.UIDs; r != nil && (r.First == 0 || r.Last < r.First) {
			return nil, fmt.Errorf("local worker driver: uid range %d-%d: want 0 < first <= last", r.First, r.Last)
		}
		if !filepath.IsAbs(cp.Root) {
			return nil, fmt.Errorf("local worker driver: worker root %q: want an absolute path", cp.Root)
		}
		cfg.Isolation = &cp
	}
	return &Driver{cfg: cfg, exits: make(chan provisioner.Exit, 256)}, nil
}

// Name implements provisioner.Driver.
func (d *Driver) Name() string { return "local" }

// InstanceDir is where instance id of run keeps its files.
func InstanceDir(home, run, id string) string {
	return runlayout.Of(home, run).Instance(id)
}

// flock takes an exclusive advisory lock on the instance directory so two
// provisioner processes cannot launch the same instance at once.
func flock(ctx context.Context, dir string) (func(), error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", dir, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", dir, ctx.Err())
		case <-time.After(pollInterval):
		}
	}
}

// Launch starts the instance, or returns it if it is already running.
func (d *Driver) Launch(ctx context.Context, spec provisioner.InstanceSpec) (provisioner.LaunchResult, error) {
	if !pathSafe.MatchString(spec.ID) {
		return provisioner.LaunchResult{}, fmt.Errorf("launch: instance id %q: want [a-zA-Z0-9_.-]", spec.ID)
	}
	if spec.Run != "" && spec.Run != d.cfg.Run {
		return provisioner.LaunchResult{}, fmt.Errorf("launch %s: run %q is not this driver's run %q", spec.ID, spec.Run, d.cfg.Run)
	}
	defer d.locks.Lock(spec.ID)()
	dir := InstanceDir(d.cfg.Home, d.cfg.Run, spec.ID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return provisioner.LaunchResult{}, fmt.Errorf("launch %s: %w", spec.ID, err)
	}
	unlock, err := flock(ctx, dir)
	if err != nil {
		return provisioner.LaunchResult{}, fmt.Errorf("launch %s: %w", spec.ID, err)
	}
	defer unlock()
	if o, err := readOwner(dir); err == nil && alive("/proc", o.PID, o.StartTime) {
		return provisioner.LaunchResult{Host: d.cfg.Host, PID: o.PID}, nil
	}
	if spec.BrokerURL == "" {
		spec.BrokerURL = d.cfg.SharedBrokerURL
	}
	var iso *isolated
	if d.cfg.Isolation != nil {
		if iso, err = d.prepareWorker(ctx, spec); err != nil {
			return provisioner.LaunchResult{}, fmt.Errorf("launch %s: %w", spec.ID, err)
		}
	}
	if len(spec.Spec) > 0 {
		if err := writeFileAtomic(filepath.Join(dir, runlayout.SpecFile), spec.Spec); err != nil {
			return provisioner.LaunchResult{}, fmt.Errorf("launch %s: %w", spec.ID, err)
		}
	}
	var urlEnv []string
	if spec.BrokerURL != "" && iso == nil {
		// The instance's own credentials, in a 0600 file rather than the
		// environment, which every task of the instance inherits.
		urlFile := filepath.Join(dir, runlayout.URLFile)
		if err := writeFileAtomic(urlFile, []byte(spec.BrokerURL+"\n")); err != nil {
			return provisioner.LaunchResult{}, fmt.Errorf("launch %s: %w", spec.ID, err)
		}
		urlEnv = []string{envURLFile + "=" + urlFile}
	}
	if d.cfg.CAFile != "" && iso == nil {
		// The sitter verifies the broker with it, and hands it on to its
		// worker tasks, which may use the broker too.
		urlEnv = append(urlEnv, nsenv.AMQPCAFile+"="+d.cfg.CAFile)
	}
	if len(d.cfg.CommandKey) > 0 {
		urlEnv = append(urlEnv, envCommandKey+"="+hex.EncodeToString(d.cfg.CommandKey))
	}
	if iso != nil {
		urlEnv = append(urlEnv, iso.env...)
	}
	stdout, err := redact.OpenPrivate(filepath.Join(dir, "stdout"))
	if err != nil {
		return provisioner.LaunchResult{}, fmt.Errorf("launch %s: %w", spec.ID, err)
	}
	defer stdout.Close()
	stderr, err := redact.OpenPrivate(filepath.Join(dir, "stderr"))
	if err != nil {
		return provisioner.LaunchResult{}, fmt.Errorf("launch %s: %w", spec.ID, err)
	}
	defer stderr.Close()

	// Not CommandContext: the instance must outlive this call and this process.
	cmd := exec.Command(d.cfg.Command[0], d.cfg.Command[1:]...)
	cmd.Dir = dir
	// The provisioner opened stdout and stderr in the instance directory
	// and hands the worker only the open files: it writes them, and
	// cannot reach the directory itself when isolated.
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// urlEnv comes after Config.Env so the instance's own URL and the
	// run's command key win over anything a plan sets.
	cmd.Env = append(append(append(baseEnv(), d.cfg.Env...), urlEnv...),
		envHome+"="+d.cfg.Home, envRun+"="+d.cfg.Run, envJob+"="+spec.Job,
		envInstance+"="+spec.ID, envDir+"="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if iso != nil {
		// The working directory is entered after the switch, so it is
		// the worker's own.
		cmd.Dir = iso.dir
		cmd.SysProcAttr.Credential = iso.id.Credential()
	}
	if err := cmd.Start(); err != nil {
		return provisioner.LaunchResult{}, fmt.Errorf("launch %s: start %s: %w", spec.ID, d.cfg.Command[0], err)
	}
	pid := cmd.Process.Pid
	// Reap it while we live (after we exit init inherits it), and say so
	// at once: the provisioner records it and the pool replaces it.
	go func(id string) {
		err := cmd.Wait()
		reason := "process exited"
		if err != nil {
			reason = "process " + err.Error() // "exit status 2", "signal: killed"
		}
		select {
		case d.exits <- provisioner.Exit{ID: id, Reason: reason}:
		default: // nobody listening and the buffer is full: reconcile covers it
		}
	}(spec.ID)
	st, err := readStat("/proc", pid)
	if err == nil {
		o := Owner{Run: d.cfg.Run, Job: spec.Job, InstanceID: spec.ID, LaunchID: spec.LaunchID, PID: pid, StartTime: st.startTime}
		if iso != nil {
			o.User, o.WorkerDir = iso.id.Name, iso.dir
			if iso.own {
				o.UID = iso.id.UID
			}
		}
		var b []byte
		if b, err = json.MarshalIndent(o, "", "  "); err == nil {
			err = writeFileAtomic(filepath.Join(dir, ownerFile), b)
		}
	}
	if err != nil {
		// Without a marker nobody could find it later; kill it now. The
		// environment scan in List/Sweep still covers a crash right here.
		syscall.Kill(-pid, syscall.SIGKILL)
		return provisioner.LaunchResult{}, fmt.Errorf("launch %s: write ownership marker: %w", spec.ID, err)
	}
	if iso != nil {
		d.cfg.Log.Info("local instance started", "instance", spec.ID, "pid", pid, "dir", dir, "user", iso.id.Name, "uid", iso.id.UID, "worker_dir", iso.dir)
	} else {
		d.cfg.Log.Info("local instance started", "instance", spec.ID, "pid", pid, "dir", dir)
	}
	return provisioner.LaunchResult{Host: d.cfg.Host, PID: pid}, nil
}

// inheritedEnv is all an instance gets from the provisioner's environment:
// the provisioner may hold broker passwords or cloud keys that workers must
// not see unless Config.Env passes them on purpose.
var inheritedEnv = []string{"PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR"}

func baseEnv() []string {
	var env []string
	for _, k := range inheritedEnv {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func readOwner(dir string) (Owner, error) {
	var o Owner
	b, err := os.ReadFile(filepath.Join(dir, ownerFile))
	if err != nil {
		return o, err
	}
	if err := json.Unmarshal(b, &o); err != nil {
		return o, fmt.Errorf("%s: %w", filepath.Join(dir, ownerFile), err)
	}
	return o, nil
}

// Terminate stops every process of the instance: SIGTERM, then SIGKILL
// after the grace period. An instance that is already gone is not an error.
func (d *Driver) Terminate(ctx context.Context, id string) error {
	if !pathSafe.MatchString(id) {
		return fmt.Errorf("terminate: instance id %q: want [a-zA-Z0-9_.-]", id)
	}
	defer d.locks.Lock(id)()
	_, err := terminate(ctx, d.cfg.Log, d.cfg.Clock, d.cfg.Home, d.cfg.Run, id, d.cfg.Grace)
	if err != nil {
		return fmt.Errorf("terminate %s: %w", id, err)
	}
	if o, err := readOwner(InstanceDir(d.cfg.Home, d.cfg.Run, id)); err == nil && o.UID != 0 && o.InstanceID == id {
		// terminate saw the last of the uid's processes go, and only a
		// launch under it (which its record's end forbids) starts another.
		d.procs.release(o.UID)
	}
	if iso := d.cfg.Isolation; iso != nil {
		// The instance's delegated cgroup, with the groups its sitter made
		// in it, goes with it (nothing is left in them by now).
		if err := cgroup.Release(ctx, iso.cgroupRoot(), CgroupPrefix(d.cfg.Home, d.cfg.Run, id), d.cfg.Grace); err != nil {
			return fmt.Errorf("terminate %s: %w", id, err)
		}
	}
	return nil
}

// terminate kills one instance and reports whether anything was running.
// An instance that ran under a uid of its own then has its private
// directory taken back by root, and its files in the shared directories
// removed (reclaim).
func terminate(ctx context.Context, log *slog.Logger, clock clockwork.Clock, home, run, id string, grace time.Duration) (bool, error) {
	had, err := kill(ctx, clock, home, run, id, grace)
	if err != nil {
		return had, err
	}
	return had, reclaim(log, InstanceDir(home, run, id), id)
}

// reclaim gives an ended instance's private directory to root, mode 0700,
// and removes its files from /tmp, /var/tmp and /dev/shm, when the
// instance had a uid of its own: the uid goes to a later worker, which
// would otherwise own, read and change everything the ended one left
// there (its spec, broker URL file, logs, task output, scratch files).
// The caller has made sure nothing of the instance runs.
func reclaim(log *slog.Logger, dir, id string) error {
	o, err := readOwner(dir)
	if err != nil || o.UID == 0 || o.WorkerDir == "" || o.InstanceID != id {
		return nil // nothing of its own to take back
	}
	if err := os.Lchown(o.WorkerDir, 0, 0); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("reclaim %s from uid %d: %w", o.WorkerDir, o.UID, err)
	}
	if err := os.Chmod(o.WorkerDir, 0o700); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("reclaim %s from uid %d: %w", o.WorkerDir, o.UID, err)
	}
	// The workers' root: <root>/<run dir>/<id>.
	// Best effort: what the sweep could not remove it has sealed or left
	// for a launch under the uid to sweep again, and failing here would
	// let a worker keep its own terminate failing forever (its record
	// terminating, its uid and cgroup never released).
	if err := sweepUIDFiles(log, o.UID, sharedDirs, filepath.Dir(filepath.Dir(o.WorkerDir))); err != nil {
		log.Warn("shared directories not fully swept", "instance", id, "uid", o.UID, "err", err)
	}
	return nil
}

// kill stops every process of one instance and reports whether anything
// was running.
func kill(ctx context.Context, clock clockwork.Clock, home, run, id string, grace time.Duration) (bool, error) {
	dir := InstanceDir(home, run, id)
	o, err := readOwner(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	leaderAlive := err == nil && alive("/proc", o.PID, o.StartTime)
	find := func() ([]proc, error) {
		procs, err := scan("/proc")
		if err != nil {
			return nil, err
		}
		return members(procs, home, run, id, o.PID, leaderAlive, o.UID), nil
	}
	ps, err := find()
	if err != nil || len(ps) == 0 {
		return false, err
	}
	if err := signal(ps, syscall.SIGTERM); err != nil {
		return true, err
	}
	if ps, err = waitGone(ctx, clock, find, grace); err != nil || len(ps) == 0 {
		return true, err
	}
	if err := signal(ps, syscall.SIGKILL); err != nil {
		return true, err
	}
	ps, err = waitGone(ctx, clock, find, killWaitLimit)
	if err != nil {
		return true, err
	}
	if len(ps) > 0 {
		return true, fmt.Errorf("%d processes survived SIGKILL (first pid %d)", len(ps), ps[0].pid)
	}
	return true, nil
}

// waitGone polls until find returns nothing or limit passes.
func waitGone(ctx context.Context, clock clockwork.Clock, find func() ([]proc, error), limit time.Duration) ([]proc, error) {
	deadline := clock.Now().Add(limit)
	for {
		ps, err := find()
		if err != nil || len(ps) == 0 || !clock.Now().Before(deadline) {
			return ps, err
		}
		select {
		case <-ctx.Done():
			return ps, ctx.Err()
		case <-clock.After(pollInterval):
		}
	}
}

// List implements provisioner.Driver.
func (d *Driver) List(ctx context.Context) ([]provisioner.Owned, error) {
	owners, err := ListOwned(d.cfg.Home, d.cfg.Run)
	if err != nil {
		return nil, err
	}
	out := make([]provisioner.Owned, 0, len(owners))
	for _, o := range owners {
		out = append(out, provisioner.Owned{Run: o.Run, Job: o.Job, InstanceID: o.InstanceID, LaunchID: o.LaunchID, Host: d.cfg.Host, PID: o.PID})
	}
	return out, nil
}

// ListOwned returns the live instances of run under home: those whose
// owner.json names a live process, plus session leaders whose environment
// names an instance but whose marker was never written (a crash between
// starting the process and writing owner.json).
func ListOwned(home, run string) ([]Owner, error) {
	home, err := filepath.Abs(home)
	if err != nil {
		return nil, fmt.Errorf("list owned: %w", err)
	}
	base := runlayout.Of(home, run).Instances()
	entries, err := os.ReadDir(base)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("list owned: %w", err)
	}
	var out []Owner
	seen := map[string]bool{}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		o, err := readOwner(filepath.Join(base, e.Name()))
		if err != nil {
			continue // no marker yet, or torn; the scan below covers it
		}
		if o.InstanceID != e.Name() || o.Run != run {
			continue // a marker copied elsewhere proves nothing
		}
		if alive("/proc", o.PID, o.StartTime) {
			out = append(out, o)
			seen[o.InstanceID] = true
		}
	}
	procs, err := scan("/proc")
	if err != nil {
		return nil, fmt.Errorf("list owned: %w", err)
	}
	for _, p := range procs {
		if p.ours(home, run) && p.sid == p.pid && !seen[p.instance] {
			out = append(out, Owner{Run: run, InstanceID: p.instance, PID: p.pid, StartTime: p.startTime})
			seen[p.instance] = true
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].InstanceID < out[j].InstanceID })
	return out, nil
}

// Sweep kills every instance process of run under home, found by marker or
// by environment, without needing the provisioner or its database. It
// returns the ids of the instances that had processes.
func Sweep(ctx context.Context, home, run string) (killed []string, err error) {
	home, err = filepath.Abs(home)
	if err != nil {
		return nil, fmt.Errorf("sweep %s: %w", run, err)
	}
	ids := map[string]bool{}
	owners, err := ListOwned(home, run)
	if err != nil {
		return nil, fmt.Errorf("sweep %s: %w", run, err)
	}
	for _, o := range owners {
		ids[o.InstanceID] = true
	}
	procs, err := scan("/proc")
	if err != nil {
		return nil, fmt.Errorf("sweep %s: %w", run, err)
	}
	for _, p := range procs {
		if p.ours(home, run) {
			ids[p.instance] = true
		}
	}
	clock := clockwork.NewRealClock()
	var mu sync.Mutex
	var errs []error
	var g errgroup.Group
	g.SetLimit(16) // each waits out its own grace period; do them together
	for id := range ids {
		g.Go(func() error {
			had, err := terminate(ctx, slog.Default(), clock, home, run, id, defaultGrace)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("instance %s: %w", id, err))
			}
			if had {
				killed = append(killed, id)
			}
			return nil
		})
	}
	g.Wait()
	sort.Strings(killed)
	// The cgroups isolated instances were handed, found by the run's
	// directory of them whoever launched them; none there is no error.
	if os.Geteuid() == 0 {
		if err := cgroup.Release(ctx, cgroup.DefaultRoot, cgroupRunPrefix(home, run), defaultGrace); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return killed, fmt.Errorf("sweep %s: %w", run, err)
	}
	return killed, nil
}
