package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"nightshift/bootlevel"
	"nightshift/internal/app"
	"nightshift/internal/clikit"
	"nightshift/internal/ec2"
	"nightshift/internal/nsenv"
	"nightshift/internal/redact"
	"nightshift/internal/route53dns"
	"nightshift/internal/runlayout"
	"nightshift/internal/service/ec2service"
	"nightshift/internal/ssmparams"
	"nightshift/internal/termtext"
	"nightshift/launchplan"
	"nightshift/mgmt"
)

// mgmtCommand builds one mgmt subcommand around the state every
// subcommand shares. Each lives in its own mgmt_<name>.go file and
// registers its constructor there with registerMgmt, from init.
type mgmtCommand func(m *mgmtCmd) *cobra.Command

// mgmtCommands is written only by the init functions of the mgmt_*.go
// files (before main runs) and read-only after: adding a subcommand is
// then one new file, with no shared list for concurrent changes to
// conflict on. Cobra sorts them by name for help.
var mgmtCommands []mgmtCommand

func registerMgmt(c mgmtCommand) { mgmtCommands = append(mgmtCommands, c) }

// Mgmt runs the mgmt command and returns its exit code.
func Mgmt(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	m := &mgmtCmd{stdout: stdout, stderr: stderr}
	return clikit.Execute(ctx, newMgmtRoot(m), args, stderr, app.ExitCode, func(s string) string { return m.red.String(s) })
}

func newMgmtRoot(m *mgmtCmd) *cobra.Command {
	root := &cobra.Command{
		Use:   "mgmt",
		Short: "inspect, repair and tear down runs",
		Long: `mgmt inspects, repairs and tears down the runs that launch boots.

Flags go anywhere: before or after the command and its arguments.`,
		Example: `  mgmt list
  mgmt status hello --json
  mgmt teardown --home /srv/ns hello`,
		Args: cobra.NoArgs,
		RunE: clikit.NeedCommand,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			lvl, err := parseLevel(m.logLevel)
			if err != nil {
				return err
			}
			m.level = lvl
			if m.asJSON && cmd.Annotations[noJSON] != "" {
				return fmt.Errorf("--json: %s", cmd.Annotations[noJSON])
			}
			return nil
		},
	}
	pf := root.PersistentFlags()
	pf.StringVar(&m.homeFlag, "home", "", "home directory for runs (default $NIGHTSHIFT_HOME or ~/.nightshift)")
	pf.BoolVar(&m.asJSON, "json", false, "print JSON for programs instead of text")
	pf.BoolVar(&m.plain, "plain", false, "one line per event even on a terminal; no screen redraws")
	pf.StringVar(&m.logLevel, "log-level", "info", "level of mgmt's log file (mgmt.log in the home): debug, info, warn, error")
	for _, c := range mgmtCommands {
		root.AddCommand(c(m))
	}
	// Every RUN argument completes to the home's runs unless its command
	// says otherwise (logs, decisions, reconfigure: their later arguments).
	for _, c := range root.Commands() {
		if c.ValidArgsFunction == nil && strings.HasPrefix(strings.TrimPrefix(c.Use, c.Name()), " RUN") {
			c.ValidArgsFunction = m.completeArgs(runNames)
		}
	}
	clikit.AddCompletion(root)
	clikit.Prepare(root, m.stdout, m.stderr)
	return root
}

// noJSON is the annotation of a subcommand that has nothing to print as
// JSON; its value says why, and --json with it is a usage error.
const noJSON = "nightshift/no-json"

// runArg checks a run name from the command line before it makes any path.
func runArg(name string) (string, error) {
	if err := launchplan.CheckRunName(name); err != nil {
		return "", &app.UsageError{Err: err}
	}
	return name, nil
}

type mgmtCmd struct {
	stdout, stderr io.Writer
	// Global flags, accepted before or after the subcommand.
	homeFlag, logLevel string
	asJSON, plain      bool
	level              slog.Level
	home               string
	// red knows the secrets of the run a command works on, once it has
	// one; everything printed passes through it (nil-safe before then).
	red *redact.Redactor
}

// learn loads the redactor of run, for everything the command prints after.
func (m *mgmtCmd) learn(ctx context.Context, a *app.App, run string) {
	red, err := a.Redactor(ctx, run)
	if err != nil {
		fmt.Fprintf(m.stderr, "note: %s\n", termtext.Line(red.String(err.Error())))
	}
	m.red = red
}

// line is how one value is shown to a person: redacted, then escaped.
func (m *mgmtCmd) line(s string) string { return termtext.Line(m.red.String(s)) }

// json prints v for programs: exact, apart from the run's secrets.
func (m *mgmtCmd) json(v any) error { return m.red.EncodeJSON(m.stdout, v) }

func (m *mgmtCmd) open(ctx context.Context) (*app.App, error) {
	home, err := app.ResolveHome(m.homeFlag)
	if err != nil {
		return nil, err
	}
	m.home = home
	// mgmt only reads and acts on runs: it never creates a SQLite run
	// store (a PostgreSQL one, NIGHTSHIFT_STORE, is shared and may exist).
	if _, err := os.Stat(runlayout.DB(home)); err != nil && os.Getenv(nsenv.Store) == "" {
		return nil, fmt.Errorf("no runs in %s (nothing was launched with this home)", home)
	}
	log, _, err := newLogger(runlayout.MgmtLog(home), m.level, nil)
	if err != nil {
		return nil, err
	}
	return app.Open(ctx, home, log)
}

// hasPools reports whether a run has worker pools that status should
// show and teardown must stop first: a service recorded that it runs a
// controller or a provisioner (mgmt.HasPools).
func hasPools(ctx context.Context, a *app.App, run string) bool {
	recs, err := a.Store.Services(ctx, run)
	return err == nil && mgmt.HasPools(recs)
}

// ec2Sweepers returns a tag sweeper and an SSM parameter sweeper for every
// region and endpoint any service or job of the run names (mgmt.EC2Places),
// and a DNS record sweeper for every hosted zone a job names
// (mgmt.DNSZones), so teardown looks everywhere the run may have gone, with
// its provisioner dead too.
func ec2Sweepers(ctx context.Context, r bootlevel.Run) ([]mgmt.Sweeper, error) {
	p, err := bootlevel.LoadRunPlan(r)
	if err != nil {
		return nil, nil
	}
	var out []mgmt.Sweeper
	for _, pl := range mgmt.EC2Places(p, os.Getenv("AWS_ENDPOINT_URL")) {
		c, err := ec2.New(ctx, ec2.Config{Region: pl.Region, EndpointURL: pl.EndpointURL})
		if err != nil {
			return out, fmt.Errorf("%s: %w", pl, err)
		}
		out = append(out, ec2service.Sweeper{Client: c, Place: pl.String()})
		s, err := ssmparams.New(ctx, ssmparams.Config{Region: pl.Region, EndpointURL: pl.EndpointURL})
		if err != nil {
			return out, fmt.Errorf("%s: %w", pl, err)
		}
		out = append(out, ssmparams.Sweeper{Store: s, Place: pl.String()})
	}
	// The run's DNS records, by their TXT owners, in every zone a job
	// names: with the provisioner dead they are otherwise left behind.
	var errs []error
	for _, dz := range mgmt.DNSZones(p, os.Getenv("AWS_ENDPOINT_URL")) {
		api, err := route53dns.NewAPI(ctx, route53dns.Config{EndpointURL: dz.EndpointURL})
		if err == nil {
			var z *route53dns.Zone
			if z, err = route53dns.OpenZone(ctx, api, dz.Zone, nil); err == nil {
				out = append(out, route53dns.Sweeper{Zone: z})
				continue
			}
			if errors.Is(err, route53dns.ErrNoZone) {
				continue // a zone that is gone holds no record
			}
		}
		// Not knowing is not "none left": the zone is reported remaining.
		out = append(out, route53dns.Unreachable{Zone: dz.Zone, Err: err})
		errs = append(errs, fmt.Errorf("dns zone %s: %w", dz.Zone, err))
	}
	return out, errors.Join(errs...)
}
