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
	"flag"
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

	"nightshift/internal/cgroup"
	"nightshift/internal/nsenv"
	"nightshift/internal/psutil"
	"nightshift/internal/redact"
	"nightshift/internal/termtext"
	"nightshift/sitter"
)

const usage = `usage:
  sitter agent [--run R --job J --instance I --amqp-url-file F ...]   (see sitter agent -h)
  sitter run [--state-dir DIR] [--cgroup auto|off] [--log-level LEVEL] tasks.toml
  sitter status [--json]
  sitter start|stop|restart|drain|remove TASK
  sitter tail [-n LINES] TASK
All subcommands take --state-dir (default $NIGHTSHIFT_HOME/sitter, else /tmp/nightshift-sitter-<uid>).
`

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

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, args := args[0], args[1:]
	if cmd == "agent" {
		return agent(args, stderr)
	}
	fs := flag.NewFlagSet("sitter "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	stateDir := fs.String("state-dir", defaultStateDir(), "directory for logs, status files and the control socket")
	var err error
	switch cmd {
	case "run":
		cg := fs.String("cgroup", "auto", "auto: use cgroup v2 or v1 when available; off: polling only")
		level := fs.String("log-level", "info", "debug, info, warn or error")
		if fs.Parse(args) != nil {
			return 2
		}
		if fs.NArg() != 1 {
			fmt.Fprint(stderr, usage)
			return 2
		}
		err = serve(*stateDir, *cg, *level, fs.Arg(0), stderr)
	case "status":
		asJSON := fs.Bool("json", false, "print the raw status as JSON")
		if fs.Parse(args) != nil {
			return 2
		}
		err = status(*stateDir, *asJSON, stdout)
	case "start", "stop", "restart", "drain", "remove":
		if fs.Parse(args) != nil {
			return 2
		}
		if fs.NArg() != 1 {
			fmt.Fprint(stderr, usage)
			return 2
		}
		_, err = control(*stateDir, sitter.ControlRequest{Op: cmd, Task: fs.Arg(0)})
		if err == nil {
			fmt.Fprintf(stdout, "%s: %s ok\n", fs.Arg(0), cmd)
		}
	case "tail":
		n := fs.Int("n", 20, "lines per stream")
		if fs.Parse(args) != nil {
			return 2
		}
		if fs.NArg() != 1 {
			fmt.Fprint(stderr, usage)
			return 2
		}
		var resp sitter.ControlResponse
		resp, err = control(*stateDir, sitter.ControlRequest{Op: "tail", Task: fs.Arg(0), N: *n})
		if err == nil && resp.Tail != nil {
			// Task output is shown escaped and without URL passwords: it is
			// whatever the task printed, and this is a person's terminal.
			fmt.Fprintf(stdout, "==> %s stdout <==\n%s\n==> %s stderr <==\n%s\n", termtext.Line(fs.Arg(0)),
				shownLines(resp.Tail.Stdout), termtext.Line(fs.Arg(0)), shownLines(resp.Tail.Stderr))
		}
	default:
		fmt.Fprint(stderr, usage)
		return 2
	}
	if err != nil {
		fmt.Fprintln(stderr, "sitter:", termtext.Text(redact.String(err.Error())))
		return 1
	}
	return 0
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
		return enc.Encode(st)
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
	return tw.Flush()
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
