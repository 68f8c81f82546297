package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"golang.org/x/sync/errgroup"

	"nightshift/internal/amqpbus"
	"nightshift/internal/backoff"
	"nightshift/internal/brokerurl"
	"nightshift/internal/busid"
	"nightshift/internal/cgroup"
	"nightshift/internal/clikit"
	"nightshift/internal/cmdledger"
	"nightshift/internal/daemonflag"
	"nightshift/internal/envelope"
	"nightshift/internal/nsenv"
	"nightshift/internal/pki"
	"nightshift/internal/psutil"
	"nightshift/internal/redact"
	"nightshift/internal/runlayout"
	"nightshift/internal/ssmparams"
	"nightshift/sitter"
	"nightshift/sitter/httpprobe"
	"nightshift/sitter/sitterbus"
)

const agentUsage = `usage: sitter agent [flags]
Supervises this instance's worker task (from spec.json), publishes
heartbeats and serves drain/control/tail/status/ping on the run's broker.
Every flag defaults from the environment the provisioner's driver sets.
`

// Environment the provisioner's local driver (and operators) set.
const (
	envHome        = nsenv.Home
	envRun         = nsenv.Run
	envJob         = nsenv.Job
	envInstance    = nsenv.InstanceID
	envInstanceDir = nsenv.InstanceDir
	envAMQPURLFile = nsenv.AMQPURLFile
	envAMQPURL     = nsenv.AMQPURL
	envAMQPCAFile  = nsenv.AMQPCAFile
	// envCommandKey is the public half of the run's command key (hex), to
	// verify drain and control. It is no secret: it lets a worker check a
	// command, never make one.
	envCommandKey = nsenv.CommandKey
)

// agentConfig is the agent's resolved input. brokerURL carries the
// password: print it only through redact.
type agentConfig struct {
	run, job, instance   string
	specPath             string
	commandKey           ed25519.PublicKey // nil: drain and control are refused
	brokerURL, urlSource string
	caFile               string // CA an amqps:// broker is verified against
	stateDir             string
	tempState            bool
	heartbeat, sample    time.Duration
	cgroupMode, logLevel string
}

// errAgentHelp: the agent's help was asked for and printed.
var errAgentHelp = errors.New("help shown")

// usageError is bad or missing input: exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// parseAgent resolves flags, then environment, then defaults. It reads
// the broker URL file but starts nothing.
//
// With --amqp-url-ssm it reads the broker URL from that SSM parameter
// through fetch (nil: refused); a failed read is a fetchError.
func parseAgent(args []string, getenv func(string) string, helpOut io.Writer, fetch paramFetcher) (agentConfig, error) {
	var c agentConfig
	fs := flag.NewFlagSet("sitter agent", flag.ContinueOnError)
	// Parse errors are reported once, by the caller; help goes to helpOut
	// (stdout), with exit 0.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	// No --home: an agent keeps nothing under a home. No --amqp-url: a URL
	// on the command line is one other users can read. No --secret-file: a
	// worker's host never holds the run's secret (see --command-key).
	var common daemonflag.Common
	common.Register(fs, daemonflag.Options{NoHome: true, URLFileOnly: true, NoSecret: true})
	fs.StringVar(&c.job, "job", "", "job name (default $"+envJob+")")
	fs.StringVar(&c.instance, "instance", "", "instance id (default $"+envInstance+")")
	fs.StringVar(&c.specPath, "spec", "", "launch spec with the worker task (default $"+nsenv.WorkerDir+", else $"+envInstanceDir+", /spec.json)")
	commandKey := fs.String("command-key", "", "public half of the run's command key (hex), to verify drain and control (default $"+envCommandKey+"; without it they are refused)")
	fs.StringVar(&c.stateDir, "state-dir", "", "logs, status files, control socket (default $"+nsenv.WorkerDir+", else $"+envInstanceDir+", /sitter; else a temp dir)")
	fs.DurationVar(&c.heartbeat, "heartbeat-interval", time.Second, "how often a heartbeat is published")
	fs.DurationVar(&c.sample, "sample-interval", time.Second, "how often task trees are measured")
	fs.StringVar(&c.cgroupMode, "cgroup", "auto", "auto: use cgroup v2 or v1 when available; off: polling only")
	urlParam := fs.String("amqp-url-ssm", "", "SSM SecureString parameter holding the broker URL, read with this host's AWS role (EC2 workers: user data names it, never holds the URL)")
	ssmRegion := fs.String("ssm-region", "", "region of --amqp-url-ssm (default the AWS configuration's)")
	ssmEndpoint := fs.String("ssm-endpoint-url", "", "SSM endpoint other than AWS's, for --amqp-url-ssm (tests against moto)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(helpOut, agentUsage+"\nFlags:\n")
			fs.SetOutput(helpOut)
			fs.PrintDefaults()
			fmt.Fprint(helpOut, "\n"+clikit.ExitCodes+"\n")
			return c, errAgentHelp
		}
		return c, usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return c, usagef("unexpected argument %q", fs.Arg(0))
	}
	orEnv := func(v *string, key string) {
		if *v == "" {
			*v = getenv(key)
		}
	}
	if *urlParam != "" {
		if fetch == nil {
			return c, usagef("--amqp-url-ssm: this sitter cannot read SSM parameters")
		}
		u, err := fetch(*urlParam, *ssmRegion, *ssmEndpoint)
		if err != nil {
			return c, fetchError{err}
		}
		common.Preset(u, "ssm parameter "+*urlParam)
	}
	// The run, the broker (SSM parameter, else URL file, else URL, from
	// flags, then the environment) and the CA.
	if err := common.Resolve(getenv); err != nil {
		return c, usageError{err.Error()}
	}
	c.run, c.logLevel = common.Run, common.LogLevel
	c.brokerURL, c.urlSource, c.caFile = common.URL, common.URLSource, common.AMQPCAFile
	orEnv(&c.job, envJob)
	orEnv(&c.instance, envInstance)
	for _, f := range []struct{ flag, env, val string }{{"job", envJob, c.job}, {"instance", envInstance, c.instance}} {
		if f.val == "" {
			return c, usagef("--%s is required (or set $%s)", f.flag, f.env)
		}
	}
	if c.heartbeat <= 0 || c.sample <= 0 {
		return c, usagef("--heartbeat-interval and --sample-interval must be > 0")
	}
	if c.cgroupMode != "auto" && c.cgroupMode != "off" {
		return c, usagef("--cgroup %q: want auto or off", c.cgroupMode)
	}
	// An isolated worker's own directory holds its spec and state; the
	// instance directory is then the provisioner's, out of its reach.
	instDir := getenv(nsenv.WorkerDir)
	if instDir == "" {
		instDir = getenv(envInstanceDir)
	}
	if c.specPath == "" {
		if instDir == "" {
			return c, usagef("--spec is required (or set $%s to the directory holding spec.json)", envInstanceDir)
		}
		c.specPath = filepath.Join(instDir, runlayout.SpecFile)
	}
	if c.stateDir == "" && instDir != "" {
		c.stateDir = filepath.Join(instDir, runlayout.SitterDir)
	}
	c.tempState = c.stateDir == ""
	orEnv(commandKey, envCommandKey)
	if *commandKey != "" {
		k, err := envelope.ParsePublicKey(*commandKey)
		if err != nil {
			return c, usagef("--command-key: %v", err)
		}
		c.commandKey = k
	}
	// A sitter checks its CA at once: it runs unattended on a worker's host.
	if c.caFile != "" {
		if _, err := pki.LoadPool(c.caFile); err != nil {
			return c, usagef("--amqp-ca-file: %v", err)
		}
	}
	return c, nil
}

// agent runs `sitter agent`: 0 after SIGTERM/SIGINT, 2 for bad input, 1 when
// it could not keep going.
func agent(args []string, stdout, stderr io.Writer) int {
	sigCtx, stopSig := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	c, err := parseAgent(args, os.Getenv, stdout, ssmFetcher(sigCtx))
	stopSig()
	if errors.Is(err, errAgentHelp) {
		return 0
	}
	if fe := (fetchError{}); errors.As(err, &fe) {
		fmt.Fprintln(stderr, "sitter agent:", redact.String(fe.Error()))
		return 1
	}
	if err != nil {
		if msg := err.Error(); msg != "" {
			fmt.Fprintln(stderr, "sitter agent:", msg)
		}
		return 2
	}
	// Tasks inherit the agent's environment; the URL holds the broker
	// password and its variable name does not look secret to the filter.
	os.Unsetenv(envAMQPURL)
	// The CA is no secret, and workers that use the broker themselves
	// (the queue worker) verify it with the same file.
	if c.caFile != "" {
		os.Setenv(envAMQPCAFile, c.caFile)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := runAgent(ctx, c, stderr); err != nil {
		fmt.Fprintln(stderr, "sitter agent:", redact.String(err.Error()))
		if errors.As(err, new(usageError)) {
			return 2
		}
		return 1
	}
	return 0
}

func runAgent(ctx context.Context, c agentConfig, stderr io.Writer) error {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.logLevel)) // checked by parseAgent
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl})).
		With("run", c.run, "job", c.job, "instance", c.instance)

	tasks, err := sitterbus.LoadSpec(c.specPath, c.job)
	if err != nil {
		return usageError{err.Error()}
	}
	// Drain and control are verified with the run's command public key; a
	// worker never holds the run's secret or the command key itself, so it
	// can check a command but not make one. Without the key the server
	// refuses them and says so (sitterbus.Server).
	var signer *envelope.Signer
	if c.commandKey != nil {
		signer = &envelope.Signer{PublicKey: c.commandKey}
	}
	if c.tempState {
		if c.stateDir, err = os.MkdirTemp("", "nightshift-sitter-"+c.instance+"-"); err != nil {
			return fmt.Errorf("state dir: %w", err)
		}
	}
	cfg := sitter.Config{
		StateDir: c.stateDir, Sampler: psutil.New(), Logger: log,
		SampleInterval: c.sample, HeartbeatInterval: c.heartbeat,
		InstanceID: c.instance, Job: c.job,
	}
	if c.cgroupMode == "auto" {
		// An isolated worker's sitter runs as its user, which can make
		// groups only in the one its driver handed it.
		prefix := fmt.Sprintf("nightshift/sitter-%d", os.Getpid())
		if p := os.Getenv(nsenv.Cgroup); p != "" {
			prefix = p
		}
		cg, err := cgroup.Detect(cgroup.DefaultRoot, prefix)
		if err != nil {
			log.Warn("cgroups unusable, polling only", "err", err)
		} else if cg != nil {
			cfg.Limiter = cg
			defer func() {
				if err := cg.Close(); err != nil {
					log.Warn("cgroup cleanup", "err", err)
				}
			}()
		}
	}
	cfg.HTTPProbe = httpprobe.Checker{}
	bus := &laterBus{run: c.run}
	cfg.Sink = &sitterbus.Sink{Bus: bus, Sender: sitterbus.Component(c.instance)}
	s, err := sitter.New(cfg)
	if err != nil {
		return err
	}
	defer s.Close()
	// The worker's own task first: its linked tasks follow it.
	for _, task := range tasks {
		if err := s.AddTask(ctx, task); err != nil {
			return fmt.Errorf("worker spec %s: %w", c.specPath, err)
		}
	}
	log.Info("sitter agent starting", "task", tasks[0].Name, "linked", len(tasks)-1, "spec", c.specPath, "state_dir", c.stateDir,
		"broker", redact.URL(c.brokerURL))

	// Supervision starts at once and never waits for the broker: at boot
	// it may still be coming up, and tasks must run through outages.
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.Serve(gctx) })
	g.Go(func() error {
		err := s.ServeControl(gctx, filepath.Join(c.stateDir, "sitter.sock"))
		if err != nil {
			log.Warn("local control socket unavailable", "err", err)
		}
		return nil
	})
	g.Go(func() error {
		// A worker's own broker user may not declare the run's topology:
		// the provisioner declared this sitter's queue before starting it.
		passive := busid.RoleOf(c.run, brokerUser(c.brokerURL)) == busid.RoleWorker
		b, err := amqpbus.Dial(gctx, amqpbus.Config{URL: c.brokerURL, CAFile: c.caFile, Name: sitterbus.Component(c.instance), Run: c.run, Log: log, Passive: passive})
		if err != nil {
			if gctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("connect to broker: %w", err)
		}
		defer b.Close()
		// Close on shutdown rather than after the consumer returns: a
		// consumer stuck on a half-dead channel must not keep the agent
		// (and so the instance) alive; Close makes it return ErrClosed.
		stopBus := context.AfterFunc(gctx, func() { _ = b.Close() })
		defer stopBus()
		bus.set(b)
		srv := &sitterbus.Server{Bus: b, Sitter: s, Signer: signer, InstanceID: c.instance, Job: c.job, Log: log,
			// In the state dir, so a restarted agent still knows what it obeyed.
			Ledger: &cmdledger.Dir{Path: filepath.Join(c.stateDir, "commands")}}
		if err := srv.Serve(gctx); err != nil && gctx.Err() == nil {
			return err
		}
		return nil
	})
	err = g.Wait()
	if c.tempState {
		_ = os.RemoveAll(c.stateDir)
	}
	if err != nil {
		return err
	}
	log.Info("sitter agent stopped")
	return nil
}

// brokerUser is the user of the broker URL (a cluster's nodes share it).
func brokerUser(raw string) string {
	u, err := amqp.ParseURI(brokerurl.First(raw))
	if err != nil {
		return ""
	}
	return u.Username
}

// laterBus is the heartbeat sink's view of a bus that is dialled after
// supervision has started: until then every heartbeat is dropped.
type laterBus struct {
	run string
	b   atomic.Pointer[amqpbus.Bus]
}

func (l *laterBus) set(b *amqpbus.Bus) { l.b.Store(b) }

func (l *laterBus) Run() string { return l.run }

func (l *laterBus) Connected() bool {
	b := l.b.Load()
	return b != nil && b.Connected()
}

func (l *laterBus) Publish(ctx context.Context, key string, env envelope.Envelope) error {
	b := l.b.Load()
	if b == nil {
		return sitterbus.ErrDisconnected
	}
	return b.Publish(ctx, key, env)
}

// paramFetcher reads an SSM parameter by full name from region (empty: the
// AWS configuration's) at endpoint (empty: AWS's).
type paramFetcher func(name, region, endpoint string) (string, error)

// fetchError is a broker URL that could not be read from SSM: the input was
// fine, the world was not (exit 1, not 2).
type fetchError struct{ err error }

func (e fetchError) Error() string { return e.err.Error() }
func (e fetchError) Unwrap() error { return e.err }

// ssmFetchTimeout bounds the reads of the broker URL at start: an instance's
// role credentials can take a moment after boot, and a sitter that gives
// up leaves a worker the controller judges never_heard.
const ssmFetchTimeout = 2 * time.Minute

// ssmFetcher reads parameters with the standard credential chain (on EC2
// the instance profile through IMDS), retrying on the shared back-off
// curve until ssmFetchTimeout. The value goes from the SDK's response into
// memory only: it is never on a command line, in a file or in a log.
func ssmFetcher(ctx context.Context) paramFetcher {
	return func(name, region, endpoint string) (string, error) {
		ctx, cancel := context.WithTimeout(ctx, ssmFetchTimeout)
		defer cancel()
		s, err := ssmparams.New(ctx, ssmparams.Config{Region: region, EndpointURL: endpoint})
		if err != nil {
			return "", fmt.Errorf("--amqp-url-ssm: %w", err)
		}
		wait := backoff.Backoff{Policy: backoff.Policy{Initial: time.Second, Max: 15 * time.Second}}
		for {
			v, err := s.Get(ctx, name)
			if err == nil {
				return strings.TrimSpace(v), nil
			}
			select {
			case <-ctx.Done():
				return "", fmt.Errorf("--amqp-url-ssm: %w", err)
			case <-time.After(wait.Next()):
			}
		}
	}
}
