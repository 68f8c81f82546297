// Command provisioner runs the provisioner service for one run: it serves
// launch, terminate, terminate_all, enable and describe commands from the
// run's AMQP command queue, keeps instance records in SQLite under the run
// directory, and runs instances with the local worker driver (processes on
// this machine), the ec2 worker driver (one EC2 instance per worker, with
// credentials from the AWS SDK's standard chain only) or the sim driver
// (simulated workers whose heartbeats are real, for capacity planning).
package main

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"nightshift/internal/amqpbus"
	"nightshift/internal/busid"
	"nightshift/internal/cmdledger"
	"nightshift/internal/daemonflag"
	"nightshift/internal/ec2"
	"nightshift/internal/envelope"
	"nightshift/internal/jobspec"
	"nightshift/internal/leader"
	"nightshift/internal/metrics"
	"nightshift/internal/pki"
	"nightshift/internal/redact"
	"nightshift/internal/route53dns"
	"nightshift/internal/runlayout"
	"nightshift/internal/store/pgdb"
	"nightshift/internal/store/provstore"
	"nightshift/internal/worker/ec2worker"
	"nightshift/internal/worker/localworker"
	"nightshift/internal/worker/simworker"
	"nightshift/internal/workeruser"
	"nightshift/provisioner"
	"nightshift/provisioner/provbus"
	"nightshift/sitter"
	"nightshift/sitter/sitterbus"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "provisioner:", redact.String(err.Error()))
		os.Exit(1)
	}
}

type config struct {
	run, home, amqpURL, driver, db, secretFile string
	level                                      slog.Level
	jobsFile                                   string
	workerCommand, workerEnv                   []string
	// workerUser and workerRoot: who local workers run as, and where
	// their own directories are, when this provisioner is root.
	workerUser, workerRoot string
	// ownUIDs: local workers whose job names no user each run under a uid
	// of their own; off when --worker-user is given.
	ownUIDs bool
	// commandKey is the public half of the run's command key, for workers.
	commandKey                         ed25519.PublicKey
	maxLaunches, maxTerminations       int
	reconcileEvery, grace, callTimeout time.Duration

	// amqpCAFile is the CA an amqps:// broker is verified against; workers
	// are handed the same CA (local: its path; ec2: its PEM in user data).
	amqpCAFile string

	// --driver ec2 only. Credentials are deliberately not flags: they come
	// from the SDK's chain (environment, profile, instance role).
	ec2Region, ec2Endpoint string
	ec2WaitTimeout         time.Duration
	// managementURL (from --management-url-file) is the broker's management
	// API with this provisioner's own, administrator, credentials; with it
	// every worker gets a broker user of its own.
	managementURL string

	// common is the shared daemon flags, resolved: the source of what the
	// log redacts by value.
	common daemonflag.Common

	// --driver sim only.
	simConns          int
	simBoot, simEvery time.Duration
	simFailRate       float64

	metrics metrics.Flags
	// store chooses SQLite (db) or PostgreSQL, and standby with --lease.
	store daemonflag.Store
}

func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	var c config
	var worker string
	fs := flag.NewFlagSet("provisioner", flag.ContinueOnError)
	fs.SetOutput(stderr)
	// --run, --home, the broker and its CA (handed to workers too), the
	// secret and the log level, as every daemon has them.
	var common daemonflag.Common
	common.Register(fs, daemonflag.Options{DefaultURL: "amqp://guest:guest@127.0.0.1:5672/", SecretDefault: true})
	var mgmtFile string
	fs.StringVar(&mgmtFile, "management-url-file", "", "file holding the broker's management API URL with this provisioner's administrator credentials: each worker then gets a broker user of its own")
	fs.StringVar(&c.driver, "driver", "local", "instance driver: local, ec2 or sim")
	fs.IntVar(&c.simConns, "sim-connections", 4, "AMQP connections the sim driver's heartbeats share")
	fs.DurationVar(&c.simBoot, "sim-boot-delay", simworker.DefaultBootDelay, "sim driver: time from launch to a simulated worker's first heartbeat (a job's instance.boot_delay overrides it)")
	fs.DurationVar(&c.simEvery, "sim-heartbeat-interval", simworker.DefaultHeartbeatInterval, "sim driver: heartbeat interval (a job's instance.heartbeat_interval overrides it)")
	fs.Float64Var(&c.simFailRate, "sim-fail-rate", 0, "sim driver: probability per second that a simulated worker dies (a job's instance.fail_rate overrides it)")
	fs.StringVar(&worker, "worker-command", "", "command each local instance runs, split on spaces (required for --driver local)")
	fs.StringVar(&c.ec2Region, "ec2-region", "", "AWS region for --driver ec2 (default AWS_REGION or the profile's)")
	fs.StringVar(&c.ec2Endpoint, "ec2-endpoint-url", os.Getenv("AWS_ENDPOINT_URL"), "EC2 endpoint for --driver ec2 (default $AWS_ENDPOINT_URL, else AWS's)")
	fs.DurationVar(&c.ec2WaitTimeout, "ec2-wait-timeout", 5*time.Minute, "how long an EC2 worker may take to run with an address")
	fs.StringVar(&c.workerUser, "worker-user", workeruser.DefaultName, "when run as root: the user local workers run as unless their job's worker.user names one (this default is created if missing); when not given, each local worker whose job names no user runs under a uid of its own (61184-65519)")
	fs.StringVar(&c.workerRoot, "worker-root", localworker.DefaultWorkerRoot, "when run as root: where each local worker gets a directory of its own")
	fs.Func("worker-env", "KEY=VALUE for local instances (repeatable); they inherit only PATH, HOME, LANG and similar", func(v string) error {
		if k, _, ok := strings.Cut(v, "="); !ok || k == "" {
			return fmt.Errorf("want KEY=VALUE, got %q", v)
		}
		c.workerEnv = append(c.workerEnv, v)
		return nil
	})
	fs.StringVar(&c.jobsFile, "jobs", "", "the run's job definitions (required): JSON or TOML [jobs.NAME] tables, mode 0600; launches run only these workers")
	fs.StringVar(&c.db, "db", "", "SQLite file (default <home>/runs/<run>/provisioner.db); unused with --store")
	c.store.Register(fs)
	fs.IntVar(&c.maxLaunches, "max-launches", 8, "concurrent driver launches")
	fs.IntVar(&c.maxTerminations, "max-terminations", 8, "concurrent driver terminations")
	fs.DurationVar(&c.reconcileEvery, "reconcile-every", 30*time.Second, "period of reconciliation with the driver")
	fs.DurationVar(&c.grace, "grace", 10*time.Second, "SIGTERM to SIGKILL grace for local instances")
	fs.DurationVar(&c.callTimeout, "call-timeout", 2*time.Minute, "deadline of every driver call")
	c.metrics.Register(fs)
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	c.ownUIDs = true
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "worker-user" {
			c.ownUIDs = false
		}
	})
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if err := common.Resolve(getenv); err != nil {
		return c, err
	}
	if err := c.store.Resolve(); err != nil {
		return c, err
	}
	c.run, c.home, c.amqpURL, c.amqpCAFile, c.secretFile, c.level = common.Run, common.Home, common.URL, common.AMQPCAFile, common.SecretFile, common.Level
	c.common = common
	if mgmtFile != "" {
		b, err := os.ReadFile(mgmtFile)
		if err != nil {
			return c, fmt.Errorf("--management-url-file: %w", err)
		}
		c.managementURL = strings.TrimSpace(string(b))
	}
	if c.jobsFile == "" {
		return c, errors.New("--jobs is required: the provisioner launches only the run's job definitions")
	}
	c.workerCommand = strings.Fields(worker)
	switch c.driver {
	case "local":
		if len(c.workerCommand) == 0 {
			return c, errors.New("--worker-command is required for --driver local")
		}
		if err := workeruser.CheckName(c.workerUser); err != nil {
			return c, fmt.Errorf("--worker-user: %w", err)
		}
		if !filepath.IsAbs(c.workerRoot) {
			return c, fmt.Errorf("--worker-root %q: want an absolute path", c.workerRoot)
		}
	case "ec2":
		if len(c.workerCommand) > 0 || len(c.workerEnv) > 0 {
			return c, errors.New("--worker-command and --worker-env are for --driver local; ec2 workers run the sitter named in the job's instance table")
		}
		if c.ec2WaitTimeout <= 0 {
			return c, errors.New("--ec2-wait-timeout must be positive")
		}
	case simworker.Name:
		if len(c.workerCommand) > 0 || len(c.workerEnv) > 0 {
			return c, errors.New("--worker-command and --worker-env are for --driver local; sim workers run nothing")
		}
		if c.simConns < 1 || c.simConns > 64 {
			return c, fmt.Errorf("--sim-connections %d: want 1..64", c.simConns)
		}
		if c.simBoot < 0 || c.simEvery <= 0 || c.simFailRate < 0 || c.simFailRate > 1 {
			return c, errors.New("--sim-boot-delay must be >= 0, --sim-heartbeat-interval > 0 and --sim-fail-rate within 0..1")
		}
	default:
		return c, fmt.Errorf("--driver %q: want local, ec2 or sim", c.driver)
	}
	if c.db == "" {
		c.db = runlayout.Of(c.home, c.run).ProvisionerDB()
	}
	return c, nil
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	c, err := parseFlags(args, os.Getenv, stderr)
	if err != nil {
		return err
	}
	red, err := c.common.Redactor()
	if err != nil {
		return err
	}
	red.AddURLPasswords(c.store.URL)
	log := c.common.Logger(stderr, red, true)
	// Metrics listen first, so the service type that booted this daemon
	// learns their URL while the broker may still be coming up.
	promReg := metrics.NewRegistry()
	msrv, err := c.metrics.Start(promReg, log)
	if err != nil {
		return err
	}
	// Serving starts now, not with the rest: a replica standing by for its
	// lease is seen on its metrics too.
	serveMetrics := metrics.Start(ctx, msrv)
	if err := os.MkdirAll(filepath.Dir(c.db), 0o700); err != nil {
		return err
	}
	jobs, err := jobspec.Load(c.jobsFile)
	if err != nil {
		return err
	}
	store, lease, err := openStore(ctx, c, log, promReg)
	if err != nil {
		return err
	}
	defer store.Close()
	secret, err := envelope.LoadOrCreateSecret(c.secretFile)
	if err != nil {
		return err
	}
	red.Add(hex.EncodeToString(secret), string(secret))
	// Workers get the public half of the run's command key, with which
	// their sitters verify the drain and control the controller and mgmt
	// sign; the key itself stays beside the secret.
	key, err := envelope.LoadOrCreateCommandKey(envelope.CommandKeyPath(c.secretFile))
	if err != nil {
		return err
	}
	c.commandKey = key.Public().(ed25519.PublicKey)
	host, _ := os.Hostname()
	bus, err := amqpbus.Dial(ctx, amqpbus.Config{URL: c.amqpURL, CAFile: c.amqpCAFile, Name: "provisioner@" + host, Run: c.run, Log: log})
	if err != nil {
		return err
	}
	defer bus.Close()
	var drv provisioner.Driver
	var sim *simworker.Driver
	if c.driver == simworker.Name {
		var closeSim func()
		if sim, closeSim, err = newSimDriver(ctx, c, jobs, secret, red, log); err != nil {
			return err
		}
		defer closeSim()
		drv = sim
	} else if drv, err = newDriver(ctx, c, workeruser.IsRoot(), log); err != nil {
		return err
	}
	// Simulated workers speak with the simulator's one identity, not a
	// user each (see newSimDriver).
	if sim == nil && c.managementURL != "" {
		// An amqps:// broker serves its management API over HTTPS with
		// the same CA.
		hc, err := pki.HTTPClient(c.amqpCAFile, "", 30*time.Second)
		if err != nil {
			return err
		}
		drv = &provbus.WorkerUsers{Driver: drv, Bus: bus, Run: c.run, Key: secret, BrokerURL: c.amqpURL, Log: log,
			Redactor: red, Registry: runlayout.Of(c.home, c.run).RedactValues(),
			Admin: busid.Admin{URL: c.managementURL, VHost: busid.VHost(c.amqpURL), Client: hc}}
		log.Info("each worker gets its own broker user", "management", redact.URL(c.managementURL))
	} else if sim == nil {
		log.Warn("no --management-url-file: workers share this provisioner's broker user")
	}
	// Jobs with a dns table get their hosted zone now. One that does not
	// resolve is logged and looked up again on a back-off: failing the
	// start would only restart the provisioner in a loop, pools stopped.
	zones, err := route53dns.JobZones(ctx, jobs, log)
	if err != nil {
		return err
	}
	dns := map[string]provisioner.DNSZone{}
	for job, z := range zones {
		dns[job] = z
	}
	p, err := provisioner.New(provisioner.Config{
		Run: c.run, Driver: drv, Store: store, Events: provbus.Events{Bus: bus}, Log: log, Jobs: jobs, DNS: dns,
		MaxLaunches: c.maxLaunches, MaxTerminations: c.maxTerminations,
		CallTimeout: c.callTimeout, ReconcileEvery: c.reconcileEvery,
		Observer: metrics.NewProvisioner(promReg, c.run),
	})
	if err != nil {
		return err
	}
	srv := &provbus.Server{Bus: bus, Provisioner: p, Log: log, Ledger: store.Commands(),
		Signer: &envelope.Signer{Secret: secret}}
	g, gctx := errgroup.WithContext(ctx)
	if lease != nil {
		// Losing the lease ends the group with an error: the process exits
		// non-zero and its supervisor starts it again, as a standby.
		g.Go(func() error { return lease(gctx) })
	}
	g.Go(func() error { return p.Run(gctx) })
	if sim != nil {
		g.Go(func() error { return sim.Serve(gctx, runlayout.Of(c.home, c.run).Sim(), 0) })
	}
	if msrv != nil {
		log.Info("metrics", "url", msrv.URL)
		g.Go(func() error { return serveMetrics(gctx) })
	}
	g.Go(func() error {
		// Recover before taking new work, so requests never race the
		// start-up reconcile.
		select {
		case <-p.Ready():
		case <-gctx.Done():
			return nil
		}
		log.Info("provisioner ready", "run", c.run, "store", storeName(c), "jobs", slices.Sorted(maps.Keys(jobs)), "amqp", redact.URL(c.amqpURL))
		return srv.Serve(gctx)
	})
	if err := g.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

func newDriver(ctx context.Context, c config, isRoot bool, log *slog.Logger) (provisioner.Driver, error) {
	if c.driver == "local" {
		iso, err := workerIsolation(ctx, c, isRoot, &workeruser.Users{}, log)
		if err != nil {
			return nil, err
		}
		cfg := localworker.Config{Home: c.home, Run: c.run, Command: c.workerCommand, Env: c.workerEnv, Grace: c.grace, Log: log,
			CommandKey: c.commandKey, CAFile: c.amqpCAFile, Isolation: iso}
		if c.managementURL == "" {
			// No per-worker users: workers share this provisioner's,
			// in a URL file of their own.
			cfg.SharedBrokerURL = c.amqpURL
		}
		return localworker.New(cfg)
	}
	var brokerCA []byte
	if c.amqpCAFile != "" {
		var err error
		if brokerCA, err = os.ReadFile(c.amqpCAFile); err != nil {
			return nil, fmt.Errorf("--amqp-ca-file: %w", err)
		}
	}
	cl, err := ec2.New(ctx, ec2.Config{Region: c.ec2Region, EndpointURL: c.ec2Endpoint, Log: log})
	if err != nil {
		return nil, fmt.Errorf("--driver ec2: %w", err)
	}
	log.Info("ec2 worker driver", "region", c.ec2Region, "endpoint", redact.URL(c.ec2Endpoint))
	return ec2worker.New(ec2worker.Config{
		Run: c.run, Client: cl, Region: c.ec2Region, EndpointURL: c.ec2Endpoint,
		// Workers reach the broker at the URL this provisioner uses; in the
		// prod plan that is the broker instance's private address.
		BrokerURL: c.amqpURL, BrokerCA: brokerCA, WaitTimeout: c.ec2WaitTimeout, Log: log, CommandKey: c.commandKey,
	})
}

// workerIsolation decides who local workers run as. As root: a user of
// their own, the default one resolved (and created, once) now, so a host
// that cannot have it fails here rather than at every launch. Otherwise
// they run as this process's user and can read the run's secrets: said
// once, loudly, and recorded for mgmt status. isRoot is the probe, a
// parameter so the non-root path is tested as root.
func workerIsolation(ctx context.Context, c config, isRoot bool, users *workeruser.Users, log *slog.Logger) (*localworker.Isolation, error) {
	if !isRoot {
		me := workeruser.Current()
		log.Warn(localworker.NotIsolatedNote(me))
		if err := localworker.WriteIdentity(c.home, c.run, localworker.Identity{User: me}); err != nil {
			return nil, err
		}
		return nil, nil
	}
	id, err := users.Resolve(ctx, c.workerUser, "")
	if err != nil {
		return nil, fmt.Errorf("--worker-user: %w", err)
	}
	if id.UID == 0 {
		return nil, fmt.Errorf("--worker-user %s is root: local workers would read every file of the run; name an unprivileged user", c.workerUser)
	}
	if err := localworker.WriteIdentity(c.home, c.run, localworker.Identity{Isolated: true, User: id.Name}); err != nil {
		return nil, err
	}
	log.Info("local workers run as their own user", "user", id.Name, "uid", id.UID, "worker_root", c.workerRoot)
	iso := &localworker.Isolation{Users: users, User: c.workerUser, Root: c.workerRoot}
	if c.ownUIDs {
		r := localworker.DefaultUIDs
		iso.UIDs = &r
		log.Info("local workers whose job names no user each run under a uid of their own", "first", r.First, "last", r.Last)
	}
	return iso, nil
}

// newSimDriver dials the sim driver's few connections. With the broker's
// management API (--management-url-file) the simulator gets the run's one
// simulator user (busid.SimulatorUser), allowed to publish the heartbeats
// of the jobs whose driver is "sim" and nothing else, and the controller
// accepts its heartbeats for those jobs only; without it, it shares this
// provisioner's user as every component then does.
func newSimDriver(ctx context.Context, c config, jobs map[string]jobspec.Spec, secret []byte, red *redact.Redactor, log *slog.Logger) (*simworker.Driver, func(), error) {
	url, passive := c.amqpURL, false
	if c.managementURL != "" {
		var simJobs []string
		for _, n := range slices.Sorted(maps.Keys(jobs)) {
			if jobs[n].Driver == simworker.Name {
				simJobs = append(simJobs, n)
			}
		}
		hc, err := pki.HTTPClient(c.amqpCAFile, "", 30*time.Second)
		if err != nil {
			return nil, nil, err
		}
		admin := busid.Admin{URL: c.managementURL, VHost: busid.VHost(c.amqpURL), Client: hc}
		user := busid.SimulatorUser(c.run)
		pass := busid.Password(secret, user)
		// Redacted by value like every worker's password, here and in
		// whatever reads the run's registry (mgmt, teardown).
		red.Add(pass)
		if err := redact.Register(runlayout.Of(c.home, c.run).RedactValues(), pass); err != nil {
			return nil, nil, fmt.Errorf("--driver sim: %w", err)
		}
		if err := admin.EnsureUser(ctx, user, pass, busid.SimulatorPermissions(c.run, simJobs)); err != nil {
			return nil, nil, fmt.Errorf("--driver sim: %w", err)
		}
		if url, err = busid.WithUser(c.amqpURL, user, pass); err != nil {
			return nil, nil, err
		}
		passive = true
		log.Info("sim driver speaks as its own broker user", "user", user, "jobs", simJobs)
	}
	var buses []*amqpbus.Bus
	closeAll := func() {
		for _, b := range buses {
			b.Close()
		}
	}
	sinks := make([]sitter.HeartbeatSink, 0, c.simConns)
	for i := range c.simConns {
		b, err := amqpbus.Dial(ctx, amqpbus.Config{URL: url, CAFile: c.amqpCAFile, Name: fmt.Sprintf("sim-%d", i), Run: c.run, Log: log, Passive: passive})
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("--driver sim: connection %d: %w", i, err)
		}
		buses = append(buses, b)
		// Unconfirmed: thousands of simulated sitters share this
		// connection, and waiting for each beat's confirm made the
		// simulator the bottleneck at 10,000 (issue #18). The messages
		// are a real sitter's; a lost one is covered by the next.
		sinks = append(sinks, &sitterbus.Sink{Bus: b, Sender: "sim@" + c.run, Timeout: c.simEvery, Unconfirmed: true})
	}
	d, err := simworker.New(simworker.Config{Run: c.run, Sinks: sinks, BootDelay: c.simBoot, HeartbeatInterval: c.simEvery,
		FailRate: c.simFailRate, Log: log})
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	return d, func() { d.Close(); closeAll() }, nil
}

// daemonStore is what the provisioner needs of either backend.
type daemonStore interface {
	provisioner.Store
	Commands() cmdledger.Ledger
	Close() error
}

func storeName(c config) string {
	if c.store.PG() {
		return redact.URL(c.store.URL) + " schema " + pgdb.DaemonSchema(c.run, "provisioner")
	}
	return c.db
}

// openStore opens the SQLite ledger, or the run's provisioner schema in
// PostgreSQL. With --lease it first stands by until it holds the
// provisioner's lease, and returns the store fenced by it and the
// function that keeps the lease (returning an error wrapping
// leader.ErrLost when it is lost).
func openStore(ctx context.Context, c config, log *slog.Logger, promReg prometheus.Registerer) (daemonStore, func(context.Context) error, error) {
	if !c.store.PG() {
		s, err := provstore.Open(ctx, c.db)
		if err != nil {
			return nil, nil, err
		}
		return s, nil, nil
	}
	schema := pgdb.DaemonSchema(c.run, "provisioner")
	s, err := provstore.OpenPG(ctx, c.store.URL, schema, leader.Fence{})
	if err != nil {
		return nil, nil, err
	}
	if !c.store.Lease {
		return s, nil, nil
	}
	// The lease has connections of its own: its renewals must never wait
	// behind the store's writes for one.
	leasePool, err := pgdb.Connect(ctx, c.store.URL, 2)
	if err != nil {
		s.Close()
		return nil, nil, err
	}
	l, err := leader.New(ctx, leader.Config{DB: leasePool, Schema: schema, Name: provisioner.Component,
		Holder: leader.NewHolder("provisioner"), TTL: c.store.LeaseTTL, Log: log})
	if err != nil {
		leasePool.Close()
		s.Close()
		return nil, nil, err
	}
	// Served while standing by too, so an operator sees the standby.
	obs := metrics.NewLease(promReg, c.run, "provisioner")
	log.Info("standby: waiting for the provisioner lease", "schema", schema)
	if err := leader.WriteState(c.store.LeaseFile, leader.State{Role: leader.RoleStandby}); err != nil {
		log.Warn("role not recorded for status", "err", err)
	}
	f, err := l.Acquire(ctx)
	if err != nil {
		leasePool.Close()
		s.Close()
		return nil, nil, err
	}
	log.Info("active: holding the provisioner lease", "epoch", f.Epoch, "holder", f.Holder)
	obs.Active(f.Epoch)
	if err := leader.WriteState(c.store.LeaseFile, leader.State{Role: leader.RoleActive, Epoch: f.Epoch}); err != nil {
		log.Warn("role not recorded for status", "err", err)
	}
	return s.Fenced(f), func(ctx context.Context) error {
		defer leasePool.Close()
		err := l.Hold(ctx, f)
		obs.Standby()
		// The process exits next; until its supervisor starts it again,
		// status must not show it as the active one.
		_ = leader.WriteState(c.store.LeaseFile, leader.State{Role: leader.RoleStandby})
		return err
	}, nil
}
