// Command sitter supervises the tasks of one host with CPU, memory and
// lifetime limits. `sitter run tasks.toml` runs standalone (no broker) and
// serves a control socket that the other subcommands talk to. `sitter
// agent` runs one instance's worker task from its launch spec and talks to
// the run's broker (heartbeats out, drain and control in). The logic
// lives in package sitter; this file only parses flags and wires adapters.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"nightshift/internal/cgroup"
	"nightshift/internal/clikit"
	"nightshift/internal/nsenv"
	"nightshift/internal/psutil"
	"nightshift/internal/redact"
	"nightshift/internal/termtext"
	"nightshift/sitter"
	"nightshift/sitter/httpprobe"
)

func main() {
	// One P unless the operator says otherwise: a supervisor's work is a
	// short burst per sample and the odd restart, and with more Ps every
	// burst also wakes a second OS thread that looks for work and finds
	// none. Measured with 100 idle tasks (go run ./cmd/nsbench -run
	// sitter): about a fifth less CPU, and steadier.
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func defaultStateDir() string {
	if h := os.Getenv(nsenv.Home); h != "" {
		return filepath.Join(h, "sitter")
	}
	return fmt.Sprintf("/tmp/nightshift-sitter-%d", os.Getuid())
}

func socketPath(stateDir string) string { return filepath.Join(stateDir, "sitter.sock") }

// run runs the sitter command line and returns its exit code.
func run(args []string, stdout, stderr io.Writer) int {
	return clikit.Execute(context.Background(), newRoot(stdout, stderr), args, stderr, exitCode, nil)
}

// exitCode: bad input is 2, like every nightshift binary.
func exitCode(err error) int {
	if errors.As(err, new(usageError)) {
		return clikit.ExitUsage
	}
	return clikit.ExitFailed
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	var stateDir string
	root := &cobra.Command{
		Use:   "sitter",
		Short: "supervise the tasks of one host with CPU, memory and lifetime limits",
		Long: `sitter supervises the tasks of one host with CPU, memory and lifetime limits.
"sitter run" runs standalone (no broker), takes the state dir's lock (one
sitter per state dir) and serves a control socket that the other commands
talk to. "sitter agent" runs one worker instance's task for a run's
provisioner.

Flags go anywhere: before or after the command and its arguments.`,
		Example: `  sitter run tasks.toml
  sitter status --json
  sitter restart web
  sitter tail web -n 50 --state-dir /var/lib/sitter`,
		Args: cobra.NoArgs,
		RunE: clikit.NeedCommand,
	}
	root.PersistentFlags().StringVar(&stateDir, "state-dir", "",
		"directory for logs, status files, the lock and the control socket (default $NIGHTSHIFT_HOME/sitter, else /tmp/nightshift-sitter-<uid>)")
	// Resolved when a command runs, so that help shows the same text
	// wherever it is printed (the docs carry it).
	root.PersistentPreRun = func(*cobra.Command, []string) {
		if stateDir == "" {
			stateDir = defaultStateDir()
		}
	}
	// TASK completes to the tasks of the sitter on the state dir.
	tasks := func(_ *cobra.Command, args []string, prefix string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		dir := stateDir
		if dir == "" {
			dir = defaultStateDir()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		resp, err := sitter.Control(ctx, socketPath(dir), sitter.ControlRequest{Op: "status"})
		if err != nil || resp.Status == nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []cobra.Completion
		for _, t := range resp.Status.Tasks {
			if strings.HasPrefix(t.Name, prefix) {
				out = append(out, t.Name)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}

	root.AddCommand(&cobra.Command{
		Use:   "agent [flags]",
		Short: "run one worker instance's task and talk to the run's broker",
		Long: agentUsage + `
Every flag defaults from the environment the provisioner's driver sets;
see "sitter agent --help" for them.`,
		Example:            `  sitter agent --run hello --job work --instance i-1 --amqp-url-file url`,
		DisableFlagParsing: true, // its flags are the daemons' shared set (internal/daemonflag)
		RunE: func(_ *cobra.Command, args []string) error {
			if code := agent(args, stdout, stderr); code != 0 {
				return clikit.Exit(code)
			}
			return nil
		},
	})

	var cg, level string
	runCmd := &cobra.Command{
		Use:   "run TASKS.toml",
		Short: "supervise the tasks of a tasks file and serve the control socket",
		Long: `run supervises the tasks of TASKS.toml until SIGTERM or SIGINT. It takes an
exclusive lock on the state dir first: a second sitter on the same dir is
refused with the holder's pid, and only the holder cleans up what a killed
sitter left.`,
		Example: `  sitter run tasks.toml
  sitter run --cgroup off --log-level debug tasks.toml`,
		Args:              clikit.Args(1, 1),
		ValidArgsFunction: tomlFiles,
		RunE: func(_ *cobra.Command, args []string) error {
			return serve(stateDir, cg, level, args[0], stderr)
		},
	}
	runCmd.Flags().StringVar(&cg, "cgroup", "auto", "auto: use cgroup v2 or v1 when available; off: polling only")
	runCmd.Flags().StringVar(&level, "log-level", "info", "debug, info, warn or error")
	root.AddCommand(runCmd)

	var asJSON bool
	statusCmd := &cobra.Command{
		Use:   "status",
		Short: "the tasks and their state; exit 3 when one is not running",
		Long: `status shows the host and every task. It exits 0 when every task is running,
exited by its policy or stopped by a command, and 3 when one is starting,
backing off or failed, so that a check can rely on the exit code alone.`,
		Example: `  sitter status
  sitter status --json | jq '.tasks[] | select(.state != "running")'`,
		Args: clikit.Args(0, 0),
		RunE: func(_ *cobra.Command, _ []string) error {
			return status(stateDir, asJSON, stdout)
		},
	}
	statusCmd.Flags().BoolVar(&asJSON, "json", false, "print the raw status as JSON")
	root.AddCommand(statusCmd)

	for _, op := range []struct{ name, short string }{
		{"start", "start a stopped task"},
		{"stop", "stop a task (it stays stopped)"},
		{"restart", "stop a task and start it again"},
		{"drain", "ask a task to finish its work and exit"},
		{"remove", "stop a task and forget it"},
	} {
		root.AddCommand(&cobra.Command{
			Use:               op.name + " TASK",
			Short:             op.short,
			Example:           "  sitter " + op.name + " web",
			Args:              clikit.Args(1, 1),
			ValidArgsFunction: tasks,
			RunE: func(_ *cobra.Command, args []string) error {
				if _, err := control(stateDir, sitter.ControlRequest{Op: op.name, Task: args[0]}); err != nil {
					return err
				}
				fmt.Fprintf(stdout, "%s: %s ok\n", termtext.Line(args[0]), op.name)
				return nil
			},
		})
	}

	var n int
	tailCmd := &cobra.Command{
		Use:               "tail TASK",
		Short:             "the last lines a task printed on stdout and stderr",
		Example:           "  sitter tail web\n  sitter tail web -n 100",
		Args:              clikit.Args(1, 1),
		ValidArgsFunction: tasks,
		RunE: func(_ *cobra.Command, args []string) error {
			resp, err := control(stateDir, sitter.ControlRequest{Op: "tail", Task: args[0], N: n})
			if err != nil || resp.Tail == nil {
				return err
			}
			// Task output is shown escaped and without URL passwords: it is
			// whatever the task printed, and this is a person's terminal.
			fmt.Fprintf(stdout, "==> %s stdout <==\n%s\n==> %s stderr <==\n%s\n", termtext.Line(args[0]),
				shownLines(resp.Tail.Stdout), termtext.Line(args[0]), shownLines(resp.Tail.Stderr))
			return nil
		},
	}
	tailCmd.Flags().IntVarP(&n, "lines", "n", 20, "lines per stream")
	root.AddCommand(tailCmd)

	clikit.AddCompletion(root)
	clikit.Prepare(root, stdout, stderr)
	return root
}

// tomlFiles completes a tasks file.
func tomlFiles(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
	return []cobra.Completion{"toml"}, cobra.ShellCompDirectiveFilterFileExt
}

func control(stateDir string, req sitter.ControlRequest) (sitter.ControlResponse, error) {
	// Stop and restart wait for the task's grace period, so allow long.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	return sitter.Control(ctx, socketPath(stateDir), req)
}

func status(stateDir string, asJSON bool, w io.Writer) error {
	resp, err := control(stateDir, sitter.ControlRequest{Op: "status"})
	if err != nil {
		return err
	}
	st := resp.Status
	if st == nil {
		return errors.New("status: empty response")
	}
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(st); err != nil {
			return err
		}
		return notReady(st)
	}
	fmt.Fprintf(w, "limits: %s   load1 %.2f   cpu %.0f%%   mem %.0f/%.0f MB\n",
		st.LimitMode, st.Host.Load1, st.Host.CPUPercent, st.Host.MemUsedMB, st.Host.MemTotalMB)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TASK\tSTATE\tPID\tRESTARTS\tCPU\tMEM MB\tWORK\tREASON")
	for _, t := range st.Tasks {
		reason := t.Reason
		if t.LastViolation != nil && reason == "" {
			reason = "last: " + t.LastViolation.String()
		}
		q := termtext.Line
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.2f\t%.1f\t%s\t%s\n", q(t.Name), q(string(t.State)), t.PID, t.Restarts, t.CPU, t.MemMB, q(string(t.Work)), q(redact.String(reason)))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return notReady(st)
}

// notReady is status's verdict for scripts: exit 3 when a task is
// starting, backing off or failed. Stopped (by a command) and exited (by
// policy) are states the operator or the tasks file asked for.
func notReady(st *sitter.Status) error {
	for _, t := range st.Tasks {
		switch t.State {
		case sitter.StateStarting, sitter.StateBackoff, sitter.StateFailed:
			return clikit.Exit(clikit.ExitNotReady)
		}
	}
	return nil
}

// shownLines joins a task's log lines for a terminal, each escaped.
func shownLines(lines []string) string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = termtext.Line(redact.String(l))
	}
	return strings.Join(out, "\n")
}

func serve(stateDir, cgMode, level, tasksFile string, stderr io.Writer) error {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl}))
	file, err := sitter.LoadFile(tasksFile)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	cfg := sitter.Config{
		StateDir: stateDir, Sampler: psutil.New(), Logger: log,
		SampleInterval: file.SampleInterval.D(), HeartbeatInterval: file.HeartbeatInterval.D(),
	}
	var cg *cgroup.Manager
	switch cgMode {
	case "off":
	case "auto":
		cg, err = cgroup.Detect(cgroup.DefaultRoot, fmt.Sprintf("nightshift/sitter-%d", os.Getpid()))
		if err != nil {
			log.Warn("cgroups unusable, polling only", "err", err)
			cg = nil
		}
	default:
		return fmt.Errorf("--cgroup %q: want auto or off", cgMode)
	}
	if cg != nil {
		cfg.Limiter = cg
		defer func() {
			if err := cg.Close(); err != nil {
				log.Warn("cgroup cleanup", "err", err)
			}
		}()
	}
	cfg.HTTPProbe = httpprobe.Checker{}
	// New takes the state dir's lock: a second `sitter run` on the same
	// dir stops here, before it sweeps the first one's tasks as orphans or
	// removes its control socket.
	s, err := sitter.New(cfg)
	if err != nil {
		return err
	}
	defer s.Close()
	for _, t := range file.Tasks {
		if err := s.AddTask(ctx, t); err != nil {
			return err
		}
	}
	ctlErr := make(chan error, 1)
	go func() { ctlErr <- s.ServeControl(ctx, socketPath(stateDir)) }()
	if err := s.Serve(ctx); err != nil {
		return err
	}
	return <-ctlErr
}
