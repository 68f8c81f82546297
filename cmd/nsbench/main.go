// Command nsbench runs Nightshift's benchmarks on real processes (the launch
// binary, the sitter against supervisord, the provisioner and controller
// benchmarks) and writes docs/BENCHMARKS.md with its raw results beside it
// as BENCHMARKS.json. Each scenario runs alone with -run NAME; -quick is a
// smoke test for CI that finishes in under two minutes and asserts nothing
// about times. The rules (parsing, linearity, the table) live in
// nightshift/internal/bench; this command only drives processes.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"github.com/jonboulle/clockwork"

	"nightshift/internal/bench"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("nsbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	only := fs.String("run", "", "comma-separated scenarios to run (default all): "+strings.Join(scenarioNames(), ", "))
	quick := fs.Bool("quick", false, "smoke test: small sizes and short windows, under 2 minutes")
	out := fs.String("out", "", "markdown report path; the JSON goes beside it (default docs/BENCHMARKS.md in the module)")
	keep := fs.Bool("keep", false, "keep the work directory (generated plans, configs, logs) and print its path")
	fuzztime := fs.String("fuzztime", defaultFuzztime, "go test -fuzztime for each fuzz target in the fuzz step (full mode only)")
	if fs.Parse(args) != nil {
		return 2
	}
	if err := checkFuzztime(*fuzztime); err != nil {
		fmt.Fprintln(stderr, "nsbench:", err)
		return 2
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(stderr, "nsbench: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	root, err := moduleRoot(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "nsbench:", err)
		return 1
	}
	work, err := os.MkdirTemp("", "nsbench-")
	if err != nil {
		fmt.Fprintln(stderr, "nsbench: work dir:", err)
		return 1
	}
	// Run as root, the provisioners start workers as their own user,
	// which must reach the binaries built under it.
	if err := os.Chmod(work, 0o755); err != nil {
		fmt.Fprintln(stderr, "nsbench: work dir:", err)
		return 1
	}
	if *keep {
		fmt.Fprintln(stderr, "nsbench: work directory kept at", work)
	} else {
		defer os.RemoveAll(work)
	}
	e := &env{root: root, work: work, quick: *quick, fuzztime: *fuzztime, clock: clockwork.NewRealClock(), log: log}
	all := scenarios(e)
	selected, err := bench.Select(all, *only)
	if err != nil {
		fmt.Fprintln(stderr, "nsbench:", err)
		return 2
	}

	invocation := append([]string{"go", "run", "./cmd/nsbench"}, args...)
	meta := bench.Meta{
		Date: e.clock.Now().UTC(), Command: bench.ShellQuote(invocation), Quick: *quick,
		NProc: runtime.NumCPU(), GoVersion: goVersion(ctx, root), Platform: runtime.GOOS + "/" + runtime.GOARCH,
		LoadStart: loadAvg(),
	}
	rep := bench.Report{Meta: meta}
	failed := false
	for _, s := range selected {
		log.Info("scenario start", "scenario", s.Name)
		o := bench.Execute(ctx, e.clock, s)
		log.Info("scenario end", "scenario", s.Name, "status", o.Status, "reason", o.Reason, "elapsed", o.Elapsed.Round(1e6))
		failed = failed || o.Status == bench.StatusFailed
		rep.Outcomes = append(rep.Outcomes, o)
		if ctx.Err() != nil {
			break
		}
	}
	rep.Meta.LoadEnd = loadAvg()

	mdPath := *out
	if mdPath == "" {
		mdPath = filepath.Join(root, "docs", "BENCHMARKS.md")
	}
	if err := writeReport(mdPath, rep); err != nil {
		fmt.Fprintln(stderr, "nsbench:", err)
		return 1
	}
	fmt.Fprintf(stdout, "wrote %s and %s\n", mdPath, jsonPath(mdPath))
	if failed || ctx.Err() != nil {
		return 1
	}
	return 0
}

func jsonPath(md string) string { return strings.TrimSuffix(md, filepath.Ext(md)) + ".json" }

func writeReport(mdPath string, rep bench.Report) error {
	var md, js bytes.Buffer
	if err := bench.WriteMarkdown(&md, rep); err != nil {
		return err
	}
	if err := bench.WriteJSON(&js, rep); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(mdPath), 0o755); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if err := os.WriteFile(mdPath, md.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if err := os.WriteFile(jsonPath(mdPath), js.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

// moduleRoot is where go.mod is, so the command works from any directory
// inside the checkout.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("find module root: go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("find module root: not inside the nightshift module (run from the checkout)")
	}
	return filepath.Dir(mod), nil
}

// goVersion is the toolchain that builds the binaries under test, which
// may differ from the one that built nsbench.
func goVersion(ctx context.Context, root string) string {
	cmd := exec.CommandContext(ctx, "go", "env", "GOVERSION")
	cmd.Dir = root
	if out, err := cmd.Output(); err == nil {
		return strings.TrimSpace(string(out))
	}
	return runtime.Version()
}

func loadAvg() [3]float64 {
	var l [3]float64
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return l
	}
	f := strings.Fields(string(b))
	for i := 0; i < 3 && i < len(f); i++ {
		l[i], _ = strconv.ParseFloat(f[i], 64)
	}
	return l
}
