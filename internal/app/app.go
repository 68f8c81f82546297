// Package app wires Nightshift's adapters together for the command-line
// programs: where the home directory is, which store backs the runs, and which
// drivers and built-in service types the boot engine gets. Keeping the wiring
// here keeps cmd/* thin and gives launch and mgmt exactly the same engine.
package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"nightshift/bootlevel"
	"nightshift/internal/nsenv"
	"nightshift/internal/redact"
	"nightshift/internal/runlayout"
	"nightshift/internal/service/builtin"
	"nightshift/internal/service/ec2service"
	"nightshift/internal/service/localservice"
	"nightshift/internal/service/sshservice"
	"nightshift/internal/store/ctlstore"
	"nightshift/internal/store/runstore"
	"nightshift/launchplan"
	"nightshift/mgmt"
)

// HomeEnv names the environment variable that sets the home directory.
const HomeEnv = nsenv.Home

// ResolveHome picks the home directory: the flag, then $NIGHTSHIFT_HOME,
// then ~/.nightshift. The result is absolute, because it is handed to
// programs that run in other working directories.
func ResolveHome(flagValue string) (string, error) {
	home := flagValue
	if home == "" {
		home = os.Getenv(HomeEnv)
	}
	if home == "" {
		u, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("find home directory (set --home or %s): %w", HomeEnv, err)
		}
		home = filepath.Join(u, ".nightshift")
	}
	abs, err := filepath.Abs(home)
	if err != nil {
		return "", fmt.Errorf("home %q: %w", home, err)
	}
	return abs, nil
}

// App is an opened home: the run store and a boot engine over it.
type App struct {
	Home   string
	Store  RunStore
	Engine *bootlevel.Engine
	Log    *slog.Logger
}

// RunStore is the home's run store: SQLite in the home by default, or
// PostgreSQL when NIGHTSHIFT_STORE names one (OpenRunStore).
type RunStore interface {
	bootlevel.Store
	Close() error
}

// OpenRunStore opens home's run store: the SQLite file in home, or, when
// NIGHTSHIFT_STORE holds a postgres:// URL, a schema of that database
// named after the home's absolute path, so that homes sharing a server
// never see each other's runs. create false opens SQLite only when its
// file exists (nil, nil otherwise), for callers that must not create one.
func OpenRunStore(ctx context.Context, home string, create bool) (RunStore, error) {
	if u := os.Getenv(nsenv.Store); u != "" {
		if !strings.HasPrefix(u, "postgres://") && !strings.HasPrefix(u, "postgresql://") {
			return nil, fmt.Errorf("%s: want a postgres:// URL, got %q", nsenv.Store, redact.String(u))
		}
		abs, err := filepath.Abs(home)
		if err != nil {
			return nil, fmt.Errorf("run store: %w", err)
		}
		st, err := runstore.OpenPG(ctx, u, RunStoreSchema(abs))
		if err != nil {
			return nil, errors.New(redact.String(err.Error()))
		}
		return st, nil
	}
	if !create {
		if _, err := os.Stat(runlayout.DB(home)); err != nil {
			return nil, nil
		}
	}
	st, err := runstore.Open(ctx, runlayout.DB(home))
	if err != nil {
		return nil, err
	}
	return st, nil
}

// RunStoreSchema is the PostgreSQL schema of the home at absolute path
// home: ns_runs_ and a hash of the path.
func RunStoreSchema(home string) string {
	sum := sha256.Sum256([]byte(home))
	return "ns_runs_" + hex.EncodeToString(sum[:6])
}

// Open opens (creating if needed) the home directory and its run database.
func Open(ctx context.Context, home string, log *slog.Logger) (*App, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, fmt.Errorf("create home %s: %w", home, err)
	}
	st, err := OpenRunStore(ctx, home, true)
	if err != nil {
		return nil, fmt.Errorf("open run database of %s: %w", home, err)
	}
	local := localservice.New(log)
	ssh := sshservice.New(home, log)
	drivers := map[string]bootlevel.Driver{
		launchplan.DriverLocal: local,
		launchplan.DriverSSH:   ssh,
		launchplan.DriverEC2: &ec2service.Driver{
			Remote: ssh, Local: local, Log: log,
			// Tests point prod plans at moto, whose instances cannot be
			// reached over ssh: run their steps here instead.
			AllStepsLocal: os.Getenv(nsenv.EC2StepsLocal) == "1",
		},
	}
	eng := &bootlevel.Engine{
		Store:   st,
		Drivers: drivers,
		// The types place their daemons with the same drivers.
		Types:  builtin.Types(BinDir(), log, drivers),
		Log:    log,
		Home:   home,
		RunEnv: builtin.RunEnv(home),
		Secrets: func(run string) *redact.Redactor {
			red, err := builtin.RunRedactor(home, run)
			if err != nil {
				log.Warn("redaction may miss secrets", "run", run, "err", err)
			}
			return red
		},
	}
	return &App{Home: home, Store: st, Engine: eng, Log: log}, nil
}

// PlaceSteps records in plan, before a launch stores it as run's, whether
// the run's ec2 services run their steps on this machine: when this process
// has NIGHTSHIFT_EC2_STEPS_LOCAL=1, or when a launch of the same (not torn
// down) run recorded so already. Teardown, repair, status and the keeper
// then read it from the run and place the steps the same way, so nobody
// has to repeat the switch (without it they would ssh to moto's instances).
func (a *App) PlaceSteps(ctx context.Context, run string, plan *launchplan.Plan) {
	here := os.Getenv(nsenv.EC2StepsLocal) == "1"
	if !here {
		if prev, err := a.Store.GetRun(ctx, run); err == nil && prev.State != bootlevel.RunTerminated {
			if stored, err := bootlevel.LoadRunPlan(prev); err == nil {
				here = ec2service.StepsLocal(stored)
			}
		}
	}
	if here {
		ec2service.MarkStepsLocal(plan)
	}
}

// Redactor returns what a person may see of a run's output: a redactor that
// knows the run's secret file and registry (builtin.RunRedactor) and the
// secrets in its stored plan and service records (bootlevel.LearnSecrets).
// It never fails: what cannot be read is reported in the error, and the
// redactor still knows everything else.
func (a *App) Redactor(ctx context.Context, run string) (*redact.Redactor, error) {
	red, err := builtin.RunRedactor(a.Home, run)
	errs := []error{err}
	if r, gerr := a.Store.GetRun(ctx, run); gerr == nil {
		plan, perr := bootlevel.LoadRunPlan(r)
		errs = append(errs, perr)
		recs, serr := a.Store.Services(ctx, run)
		errs = append(errs, serr)
		bootlevel.LearnSecrets(red, plan, recs)
	}
	return red, errors.Join(errs...)
}

// BinDir is the directory of the running binary, where the other
// Nightshift binaries are looked for first.
func BinDir() string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	if real, err := filepath.EvalSymlinks(exe); err == nil {
		exe = real
	}
	return filepath.Dir(exe)
}

// Close releases the store.
func (a *App) Close() error { return a.Store.Close() }

// Exit codes shared by every command.
const (
	ExitOK      = 0
	ExitFailed  = 1 // an operation failed
	ExitUsage   = 2 // bad usage or an invalid plan
	exitUnknown = ExitFailed
)

// UsageError marks an error that is the caller's fault (exit code 2).
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// Usagef builds a UsageError.
func Usagef(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}

// ExitCode maps an error to the process exit code.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var ue *UsageError
	if errors.As(err, &ue) {
		return ExitUsage
	}
	var pe *launchplan.Error
	var pl *launchplan.ErrorList
	if errors.As(err, &pe) || errors.As(err, &pl) {
		return ExitUsage
	}
	return exitUnknown
}

// OpenHistory opens a controller's store file read-only for mgmt.History
// and mgmt.Plot: mgmt decides what to show, this adapter reads it.
func OpenHistory(ctx context.Context, file string) (mgmt.HistoryStore, error) {
	if filepath.Base(file) == ctlstore.LocatorFile {
		// A controller on PostgreSQL: its locator names the schema.
		st, err := ctlstore.OpenLocated(ctx, file)
		if err != nil {
			return nil, err
		}
		return st, nil
	}
	st, err := ctlstore.OpenReadOnly(ctx, file)
	if err != nil {
		return nil, err
	}
	return st, nil
}
