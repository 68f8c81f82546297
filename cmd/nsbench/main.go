// Command nsbench runs Nightshift's benchmarks on real processes (the launch
// binary, the sitter against supervisord, the provisioner and controller
// benchmarks) and updates docs/BENCHMARKS.md with its raw results beside it
// as BENCHMARKS.json: the scenarios it ran replace their own blocks, and the
// rest of the report is kept (bench.MergeMarkdown). Each scenario runs alone
// with -run NAME; -quick is a smoke test for CI that finishes in under two
// minutes, asserts nothing about times and, without -out, writes under the
// temporary directory so that smoke figures never land in docs/. The rules (parsing, linearity, the table) live in
// nightshift/internal/bench; this command only drives processes.
package main

import (
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
	out := fs.String("out", "", "markdown report to update; the JSON goes beside it (default docs/BENCHMARKS.md in the module, or $TMPDIR/nsbench-quick/BENCHMARKS.md with -quick)")
	keep := fs.Bool("keep", false, "keep the work directory (generated plans, configs, logs) and print its path")
	sizes := fs.String("scale-sizes", "", "comma-separated pool sizes for the scale scenario (default 100,1000,10000; 1000 with -quick), to measure one size again without the others")
	fuzztime := fs.String("fuzztime", defaultFuzztime, "go test -fuzztime for each fuzz target in the fuzz step (full mode only)")
	if fs.Parse(args) != nil {
		return 2
	}
	if err := checkFuzztime(*fuzztime); err != nil {
		fmt.Fprintln(stderr, "nsbench:", err)
		return 2
	}
	scaleSizes, err := parseSizes(*sizes)
	if err != nil {
		fmt.Fprintln(stderr, "nsbench: -scale-sizes:", err)
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
	e := &env{root: root, work: work, quick: *quick, fuzztime: *fuzztime, sizes: scaleSizes, clock: clockwork.NewRealClock(), log: log}
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
	switch {
	case mdPath != "":
	case *quick:
		// Smoke figures merged into the committed report would pass for
		// measurements; they go where nobody commits them.
		mdPath = filepath.Join(os.TempDir(), "nsbench-quick", "BENCHMARKS.md")
	default:
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

// writeReport merges rep into the report at mdPath and its JSON sibling.
// Both merges are computed before either file is written, and each file is
// replaced by a rename, so a malformed old report stops the run with the
// old files untouched.
func writeReport(mdPath string, rep bench.Report) error {
	oldMD, err := readIfExists(mdPath)
	if err != nil {
		return err
	}
	oldJS, err := readIfExists(jsonPath(mdPath))
	if err != nil {
		return err
	}
	md, err := bench.MergeMarkdown(oldMD, rep)
	if err != nil {
		return fmt.Errorf("%s: %w (file left as it was)", mdPath, err)
	}
	js, err := bench.MergeJSON(oldJS, rep)
	if err != nil {
		return fmt.Errorf("%s: %w (file left as it was)", jsonPath(mdPath), err)
	}
	if err := os.MkdirAll(filepath.Dir(mdPath), 0o755); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if err := replaceFile(mdPath, md); err != nil {
		return err
	}
	return replaceFile(jsonPath(mdPath), js)
}

func readIfExists(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read report: %w", err)
	}
	return b, nil
}

// replaceFile writes a sibling temporary file and renames it over path, so
// an interrupted write never leaves half a report.
func replaceFile(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing to remove
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write report: %w", err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("write report: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
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
