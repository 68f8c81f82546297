// Command controller is the daemon that keeps every job (worker pool) of one
// run at its decision engine's policy; see package controller and
// docs/jobs.md. It is a thin main: flags, logging and wiring of the bus
// (controller/ctlbus), the store (internal/store/ctlstore), the provisioner
// client and the controller.
package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"
	"golang.org/x/sync/errgroup"

	"nightshift/alert"
	"nightshift/alert/journal"
	"nightshift/alert/notify"
	"nightshift/controller"
	"nightshift/controller/ctlbus"
	"nightshift/decision"
	"nightshift/decision/execengine"
	"nightshift/internal/amqpbus"
	"nightshift/internal/brokerurl"
	"nightshift/internal/cmdledger"
	"nightshift/internal/daemonflag"
	"nightshift/internal/envelope"
	"nightshift/internal/leader"
	"nightshift/internal/metrics"
	"nightshift/internal/pki"
	"nightshift/internal/redact"
	"nightshift/internal/runlayout"
	"nightshift/internal/store/ctlstore"
	"nightshift/internal/store/pgdb"
	"nightshift/provisioner"
	"nightshift/provisioner/client"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stderr))
}

type options struct {
	// common.AMQPCAFile is the CA of an amqps:// broker and of its https://
	// management API.
	common         daemonflag.Common
	stateDir, jobs string
	// alerts is the plan's [alerts] table as JSON (alert.Config); ""
	// means the defaults and no sinks (alerts are still journaled).
	alerts  string
	tick    time.Duration
	metrics metrics.Flags
	// store chooses SQLite (STATE-DIR/controller.db) or PostgreSQL, and
	// standby with --lease.
	store daemonflag.Store
}

func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) int {
	fs := flag.NewFlagSet("controller", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	o.common.Register(fs, daemonflag.Options{SecretDefault: true})
	fs.StringVar(&o.stateDir, "state-dir", "", "the controller's own directory; its store is STATE-DIR/controller.db (required)")
	fs.StringVar(&o.jobs, "jobs", "", "jobs file: TOML [jobs.NAME] tables, or JSON {\"jobs\":{...}} (required)")
	fs.StringVar(&o.alerts, "alerts", "", "alerts file: the plan's [alerts] table as JSON (default: default thresholds, no sinks)")
	fs.DurationVar(&o.tick, "tick", controller.DefaultTick, "decision period")
	o.metrics.Register(fs)
	o.store.Register(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.common.LogLevel)); err != nil {
		fmt.Fprintf(stderr, "controller: --log-level: %v\n", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if err := serve(ctx, o, getenv, log); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("controller stopped", "err", redact.String(err.Error()))
		return 1
	}
	return 0
}

func serve(ctx context.Context, o options, getenv func(string) string, log *slog.Logger) error {
	if o.stateDir == "" || o.jobs == "" {
		return errors.New("--state-dir and --jobs are required")
	}
	if err := o.common.Resolve(getenv); err != nil {
		return err
	}
	if err := o.store.Resolve(); err != nil {
		return err
	}
	// From here on every record is redacted by the values the daemon was
	// handed (the broker password, the run secret, the run's registry).
	red, err := o.common.Redactor()
	if err != nil {
		return err
	}
	red.AddURLPasswords(o.store.URL)
	log = slog.New(redact.Handler(log.Handler(), red))
	url := o.common.URL
	// Queue depth comes from the broker's management API, which a TLS
	// broker serves over HTTPS with the certificate of its AMQPS listener:
	// same CA, and the same name when the URL gives one to verify
	// (server_name_indication, for a broker reached by address).
	sni := ""
	if uri, err := amqp.ParseURI(brokerurl.First(url)); err == nil {
		sni = uri.ServerName
	}
	mgmtHTTP, err := pki.HTTPClient(o.common.AMQPCAFile, sni, 5*time.Second)
	if err != nil {
		return fmt.Errorf("--amqp-ca-file: %w", err)
	}
	log = log.With("run", o.common.Run)
	// Metrics listen first, so the service type that booted this daemon
	// learns their URL while the broker may still be coming up.
	promReg := metrics.NewRegistry()
	msrv, err := o.metrics.Start(promReg, log)
	if err != nil {
		return err
	}
	// Serving starts now, not with the rest: a replica standing by for its
	// lease is seen on its metrics too.
	serveMetrics := metrics.Start(ctx, msrv)
	reg := decision.NewRegistry()
	if err := reg.Register(execengine.Name, execengine.Factory(log)); err != nil {
		return err
	}
	jobs, err := controller.LoadJobs(o.jobs, reg)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(o.stateDir, 0o700); err != nil {
		return fmt.Errorf("create --state-dir: %w", err)
	}
	store, lease, storeName, err := openStore(ctx, o, log, promReg)
	if err != nil {
		return err
	}
	defer store.Close()
	secret, err := envelope.LoadOrCreateSecret(o.common.SecretFile)
	if err != nil {
		return err
	}
	red.Add(hex.EncodeToString(secret), string(secret))
	host, _ := os.Hostname()
	sender := "controller@" + host
	bus, err := amqpbus.Dial(ctx, amqpbus.Config{URL: url, CAFile: o.common.AMQPCAFile, Name: sender, Run: o.common.Run, Log: log})
	if err != nil {
		return fmt.Errorf("connect to broker %s: %w", redact.URL(url), err)
	}
	defer bus.Close()
	signer := &envelope.Signer{Secret: secret, Seen: envelope.NewReplayCache(10000)}
	// Drains are signed with the run's command key, not the secret: a
	// sitter verifies them with the public half and so cannot sign one.
	key, err := envelope.LoadOrCreateCommandKey(envelope.CommandKeyPath(o.common.SecretFile))
	if err != nil {
		return err
	}
	drainSigner := &envelope.Signer{Key: key}
	var watcher *notify.Watcher
	ctrl, err := controller.New(ctx, controller.Config{
		Jobs: jobs, Registry: reg, Store: store,
		Provisioner:   provClient{client.New(bus, signer, sender, log)},
		Drainer:       ctlbus.BusDrainer{Bus: bus, Signer: drainSigner, Sender: sender},
		Meter:         ctlbus.Meter{Bus: bus},
		MgmtAPI:       ctlbus.MgmtAPI{HTTP: mgmtHTTP},
		Link:          bus,
		Log:           log,
		Tick:          o.tick,
		RemoteRefused: func(err error) bool { return errors.Is(err, client.ErrRemote) },
		ReconfigureAlerts: func(values map[string]any) error {
			return watcher.Reconfigure(values)
		},
		Observer: metrics.NewController(promReg, o.common.Run),
		// Serve below binds the instance subscription; its first bind's
		// reread of the records is the recovery's.
		AwaitBind: true,
	})
	if err != nil {
		return err
	}
	alerts, dispatch, err := alertWatcher(o, log, ctrl)
	if err != nil {
		return err
	}
	watcher = alerts
	names := make([]string, 0, len(jobs))
	for _, j := range jobs {
		names = append(names, j.Name)
	}
	log.Info("controller starting", "jobs", names, "broker", redact.URL(url), "store", storeName)
	parent := ctx
	g, ctx := errgroup.WithContext(ctx)
	if lease != nil {
		// Losing the lease ends the group with an error: the process exits
		// non-zero and its supervisor starts it again, as a standby.
		g.Go(func() error { return lease(ctx) })
	}
	g.Go(func() error {
		srv := &ctlbus.Server{Bus: bus, Controller: ctrl, Signer: signer, Ledger: store.Commands(), Log: log}
		return srv.Serve(ctx)
	})
	g.Go(func() error { return ctrl.Run(ctx) })
	// Alerts are evaluated and delivered beside the decision rounds, never
	// in them: a sink that hangs holds up nothing but its own queue.
	g.Go(func() error { dispatch.Run(ctx); return nil })
	g.Go(func() error { alerts.Run(ctx); return nil })
	if msrv != nil {
		log.Info("metrics", "url", msrv.URL)
		g.Go(func() error { return serveMetrics(ctx) })
	}
	g.Go(func() error {
		// Closing the connection first unblocks consumers whose channel
		// close would otherwise wait on the broker during shutdown.
		<-ctx.Done()
		return bus.Close()
	})
	err = g.Wait()
	if parent.Err() != nil {
		// Asked to stop: whichever part noticed first, this is a clean exit.
		log.Info("controller stopped")
		return nil
	}
	return err
}

// alertWatcher builds the controller's alert watcher: the plan's [alerts]
// table (--alerts), the run's journal under --home, what the journal says
// still fires, and the controller's pools as its source.
func alertWatcher(o options, log *slog.Logger, ctrl *controller.Controller) (*notify.Watcher, *notify.Dispatcher, error) {
	var cfg alert.Config
	if o.alerts != "" {
		data, err := os.ReadFile(o.alerts)
		if err != nil {
			return nil, nil, fmt.Errorf("--alerts: %w", err)
		}
		if err := json.Unmarshal(data, &cfg); err != nil {
			return nil, nil, fmt.Errorf("--alerts %s: %w", o.alerts, err)
		}
		if err := cfg.Validate(); err != nil {
			return nil, nil, fmt.Errorf("--alerts %s: %w", o.alerts, err)
		}
	}
	journalPath := runlayout.Of(o.common.Home, o.common.Run).Alerts()
	recs, err := journal.ReadJournal(journalPath)
	if err != nil {
		log.Warn("alert journal unreadable; alerts firing before this start may fire again", "err", err)
	}
	dispatch := notify.New(notify.Options{Journal: notify.NewJournal(journalPath), Log: log.With("part", "alerts"), Redact: redact.String})
	w, err := notify.NewWatcher(o.common.Run, cfg, filepath.Join(o.stateDir, "alerts-state.json"), alert.OfKinds(journal.Firing(recs), alert.ControllerKinds), dispatch,
		func(time.Time) alert.Input { return alert.Input{Pools: ctrl.AlertPools()} })
	if err != nil {
		return nil, nil, err
	}
	return w, dispatch, nil
}

// provClient adapts the provisioner's bus client to controller.Provisioner.
type provClient struct{ *client.Client }

// Describe asks for every record of job, gone ones included, so that a
// launch whose instances already ended is still recognised after a crash.
func (p provClient) Describe(ctx context.Context, job string) (provisioner.Status, error) {
	return p.Client.Describe(ctx, provisioner.DescribeBody{Job: job})
}

// daemonStore is what the controller needs of either backend.
type daemonStore interface {
	controller.Store
	Commands() cmdledger.Ledger
	Close() error
}

// openStore opens STATE-DIR/controller.db, or the run's controller schema
// in PostgreSQL. With --lease it first stands by until it holds the
// controller's lease, and returns the store fenced by it and the function
// that keeps the lease (returning an error wrapping leader.ErrLost when it
// is lost). name is what the log may show of the store.
func openStore(ctx context.Context, o options, log *slog.Logger, promReg prometheus.Registerer) (s daemonStore, lease func(context.Context) error, name string, err error) {
	if !o.store.PG() {
		path := filepath.Join(o.stateDir, "controller.db")
		st, err := ctlstore.Open(ctx, path)
		if err != nil {
			return nil, nil, "", err
		}
		return st, nil, path, nil
	}
	schema := pgdb.DaemonSchema(o.common.Run, "controller")
	name = redact.URL(o.store.URL) + " schema " + schema
	pg, err := ctlstore.OpenPG(ctx, o.store.URL, schema, leader.Fence{})
	if err != nil {
		return nil, nil, "", err
	}
	// mgmt's history and plot look for the store in the state directory.
	if err := ctlstore.WriteLocator(o.stateDir, ctlstore.Locator{URL: o.store.URL, Schema: schema}); err != nil {
		pg.Close()
		return nil, nil, "", err
	}
	if !o.store.Lease {
		return pg, nil, name, nil
	}
	// The lease has connections of its own: its renewals must never wait
	// behind the store's writes for one.
	leasePool, err := pgdb.Connect(ctx, o.store.URL, 2)
	if err != nil {
		pg.Close()
		return nil, nil, "", err
	}
	l, err := leader.New(ctx, leader.Config{DB: leasePool, Schema: schema, Name: "controller",
		Holder: leader.NewHolder("controller"), TTL: o.store.LeaseTTL, Log: log})
	if err != nil {
		leasePool.Close()
		pg.Close()
		return nil, nil, "", err
	}
	// Served while standing by too, so an operator sees the standby.
	obs := metrics.NewLease(promReg, o.common.Run, "controller")
	log.Info("standby: waiting for the controller lease", "schema", schema)
	if err := leader.WriteState(o.store.LeaseFile, leader.State{Role: leader.RoleStandby}); err != nil {
		log.Warn("role not recorded for status", "err", err)
	}
	f, err := l.Acquire(ctx)
	if err != nil {
		leasePool.Close()
		pg.Close()
		return nil, nil, "", err
	}
	log.Info("active: holding the controller lease", "epoch", f.Epoch, "holder", f.Holder)
	obs.Active(f.Epoch)
	if err := leader.WriteState(o.store.LeaseFile, leader.State{Role: leader.RoleActive, Epoch: f.Epoch}); err != nil {
		log.Warn("role not recorded for status", "err", err)
	}
	return pg.Fenced(f), func(ctx context.Context) error {
		defer leasePool.Close()
		err := l.Hold(ctx, f)
		obs.Standby()
		// The process exits next; until its supervisor starts it again,
		// status must not show it as the active one.
		_ = leader.WriteState(o.store.LeaseFile, leader.State{Role: leader.RoleStandby})
		return err
	}, name, nil
}
