// Command provisioner runs the provisioner service for one run: it serves
// launch, terminate, terminate_all, enable and describe commands from the
// run's AMQP command queue, keeps instance records in SQLite under the run
// directory, and runs instances with the local worker driver.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"nightshift/internal/amqpbus"
	"nightshift/internal/envelope"
	"nightshift/internal/provstore"
	"nightshift/internal/redact"
	localworker "nightshift/internal/workerdriver/local"
	"nightshift/provisioner"
	"nightshift/provisioner/provbus"
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
	run, home, amqpURL, driver, db, secretFile, logLevel string
	workerCommand, workerEnv                             []string
	maxLaunches, maxTerminations                         int
	reconcileEvery, grace, callTimeout                   time.Duration
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	var worker string
	fs := flag.NewFlagSet("provisioner", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.run, "run", "", "run name (required)")
	fs.StringVar(&c.home, "home", os.Getenv("NIGHTSHIFT_HOME"), "home directory (default $NIGHTSHIFT_HOME or ~/.nightshift)")
	defURL := os.Getenv("NIGHTSHIFT_AMQP_URL")
	if defURL == "" {
		defURL = "amqp://guest:guest@127.0.0.1:5672/"
	}
	fs.StringVar(&c.amqpURL, "amqp-url", defURL, "broker URL (default $NIGHTSHIFT_AMQP_URL)")
	var urlFile string
	fs.StringVar(&urlFile, "amqp-url-file", "", "read the broker URL from this file, keeping its password off the command line")
	fs.StringVar(&c.driver, "driver", "local", "instance driver: local")
	fs.StringVar(&worker, "worker-command", "", "command each local instance runs, split on spaces (required for --driver local)")
	fs.Func("worker-env", "KEY=VALUE for local instances (repeatable); they inherit only PATH, HOME, LANG and similar", func(v string) error {
		if k, _, ok := strings.Cut(v, "="); !ok || k == "" {
			return fmt.Errorf("want KEY=VALUE, got %q", v)
		}
		c.workerEnv = append(c.workerEnv, v)
		return nil
	})
	fs.StringVar(&c.db, "db", "", "SQLite file (default <home>/runs/<run>/provisioner.db)")
	fs.StringVar(&c.secretFile, "secret-file", "", "run secret for destructive commands (default <home>/runs/<run>/secret)")
	fs.IntVar(&c.maxLaunches, "max-launches", 8, "concurrent driver launches")
	fs.IntVar(&c.maxTerminations, "max-terminations", 8, "concurrent driver terminations")
	fs.DurationVar(&c.reconcileEvery, "reconcile-every", 30*time.Second, "period of reconciliation with the driver")
	fs.DurationVar(&c.grace, "grace", 10*time.Second, "SIGTERM to SIGKILL grace for local instances")
	fs.DurationVar(&c.callTimeout, "call-timeout", 2*time.Minute, "deadline of every driver call")
	fs.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if urlFile != "" {
		b, err := os.ReadFile(urlFile)
		if err != nil {
			return c, fmt.Errorf("--amqp-url-file: %w", err)
		}
		c.amqpURL = strings.TrimSpace(string(b))
	}
	if c.run == "" {
		return c, errors.New("--run is required")
	}
	if c.driver != "local" {
		return c, fmt.Errorf("--driver %q: only local is available", c.driver)
	}
	c.workerCommand = strings.Fields(worker)
	if len(c.workerCommand) == 0 {
		return c, errors.New("--worker-command is required for --driver local")
	}
	if c.home == "" {
		h, err := os.UserHomeDir()
		if err != nil {
			return c, fmt.Errorf("--home: %w", err)
		}
		c.home = filepath.Join(h, ".nightshift")
	}
	abs, err := filepath.Abs(c.home)
	if err != nil {
		return c, fmt.Errorf("--home: %w", err)
	}
	c.home = abs
	runDir := filepath.Join(c.home, "runs", c.run)
	if c.db == "" {
		c.db = filepath.Join(runDir, "provisioner.db")
	}
	if c.secretFile == "" {
		c.secretFile = filepath.Join(runDir, "secret")
	}
	return c, nil
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	c, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	if err := os.MkdirAll(filepath.Dir(c.db), 0o700); err != nil {
		return err
	}
	store, err := provstore.Open(ctx, c.db)
	if err != nil {
		return err
	}
	defer store.Close()
	secret, err := envelope.LoadOrCreateSecret(c.secretFile)
	if err != nil {
		return err
	}
	drv, err := localworker.New(localworker.Config{Home: c.home, Run: c.run, Command: c.workerCommand, Env: c.workerEnv, Grace: c.grace, Log: log})
	if err != nil {
		return err
	}
	host, _ := os.Hostname()
	bus, err := amqpbus.Dial(ctx, amqpbus.Config{URL: c.amqpURL, Name: "provisioner@" + host, Run: c.run, Log: log})
	if err != nil {
		return err
	}
	defer bus.Close()
	p, err := provisioner.New(provisioner.Config{
		Run: c.run, Driver: drv, Store: store, Events: provbus.Events{Bus: bus}, Log: log,
		MaxLaunches: c.maxLaunches, MaxTerminations: c.maxTerminations,
		CallTimeout: c.callTimeout, ReconcileEvery: c.reconcileEvery,
	})
	if err != nil {
		return err
	}
	srv := &provbus.Server{Bus: bus, Provisioner: p, Log: log,
		Signer: &envelope.Signer{Secret: secret, Seen: envelope.NewReplayCache(10000)}}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return p.Run(gctx) })
	g.Go(func() error {
		// Recover before taking new work, so requests never race the
		// start-up reconcile.
		select {
		case <-p.Ready():
		case <-gctx.Done():
			return nil
		}
		log.Info("provisioner ready", "run", c.run, "db", c.db, "amqp", redact.URL(c.amqpURL))
		return srv.Serve(gctx)
	})
	if err := g.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
