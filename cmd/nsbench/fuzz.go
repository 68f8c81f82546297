package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"nightshift/internal/bench"
)

// defaultFuzztime is issue 8's budget per fuzz target in a full run.
const defaultFuzztime = "60s"

var fuzzCount = regexp.MustCompile(`^[1-9][0-9]*x$`)

// checkFuzztime accepts what go test's -fuzztime accepts: a positive
// duration or a count of executions such as 1000x.
func checkFuzztime(s string) error {
	if fuzzCount.MatchString(s) {
		return nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return nil
	}
	return fmt.Errorf("-fuzztime %q: want a positive duration (60s) or a count of executions (1000x)", s)
}

// fuzzScenario runs every fuzz target of the module for -fuzztime each and
// reports each target's corpus and verdict. It is the bad-input step of a
// full run; quick mode skips it because it takes minutes per target.
func (e *env) fuzzScenario(ctx context.Context) (bench.Result, error) {
	var res bench.Result
	if e.quick {
		return res, bench.NotMeasured("full mode only: the fuzz step runs every fuzz target for -fuzztime (default 60s) each")
	}
	fuzztime := e.fuzztime
	if fuzztime == "" {
		fuzztime = defaultFuzztime
	}
	if err := checkFuzztime(fuzztime); err != nil {
		return res, err
	}
	mod, err := e.modulePath(ctx)
	if err != nil {
		return res, err
	}
	dir := filepath.Join(e.work, "fuzz")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return res, fmt.Errorf("fuzz: %w", err)
	}

	listArgv := []string{"go", "test", "-json", "-list", "^Fuzz", "./..."}
	lctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	list := exec.CommandContext(lctx, listArgv[0], listArgv[1:]...)
	list.Dir = e.root
	var stdout, stderr bytes.Buffer
	list.Stdout, list.Stderr = &stdout, &stderr
	listErr := list.Run() // non-zero whenever one package does not build; broken says which
	targets, broken, err := bench.ParseTestList(bench.ShellQuote(listArgv), &stdout)
	if err != nil {
		return res, fmt.Errorf("fuzz: %w", err)
	}
	if len(targets) == 0 {
		return res, bench.NotMeasured("%s found no fuzz targets (%v): %s", bench.ShellQuote(listArgv), listErr, lastLines(stderr.Bytes(), 3))
	}
	res.Notes = append(res.Notes, fmt.Sprintf("Targets found with `%s`: %d. Each runs alone as `go test -run '^$' -fuzz '^NAME$' -fuzztime %s ./PKG`; "+
		"its corpus is the files in PKG/testdata/fuzz/NAME before the run plus the run's last \"new interesting\" count "+
		"(inputs go test kept in its cache).", bench.ShellQuote(listArgv), len(targets), fuzztime))
	if len(broken) > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("packages whose tests did not build, so their fuzz targets are missing: %s", strings.Join(broken, ", ")))
	}

	// Crashers go test writes into a package's testdata are moved out of the
	// tree, so that a run never leaves files for someone to commit by
	// accident; the note says where they are.
	crashDir := filepath.Join(os.TempDir(), fmt.Sprintf("nsbench-crashers-%d", e.clock.Now().Unix()))
	var failed []string
	for _, t := range targets {
		f, err := e.fuzzOne(ctx, mod, t, fuzztime, dir, crashDir)
		if err != nil {
			return res, err
		}
		res.Figures = append(res.Figures, f.figure)
		if f.note != "" {
			res.Notes = append(res.Notes, f.note)
		}
		if !f.passed {
			failed = append(failed, t.Name+" ("+f.pkgDir+")")
		}
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
	}
	if len(failed) > 0 {
		return res, fmt.Errorf("fuzz: %d of %d targets failed: %s", len(failed), len(targets), strings.Join(failed, ", "))
	}
	return res, nil
}

type fuzzOutcome struct {
	figure bench.Figure
	note   string
	passed bool
	pkgDir string
}

func (e *env) fuzzOne(ctx context.Context, mod string, t bench.FuzzTarget, fuzztime, logDir, crashDir string) (fuzzOutcome, error) {
	rel, err := pkgDir(mod, t.Package)
	if err != nil {
		return fuzzOutcome{}, err
	}
	o := fuzzOutcome{pkgDir: rel}
	corpus := filepath.Join(e.root, rel, "testdata", "fuzz", t.Name)
	before, err := listFiles(corpus)
	if err != nil {
		return o, err
	}
	argv := []string{"go", "test", "-run", "^$", "-fuzz", "^" + t.Name + "$", "-fuzztime", fuzztime, rel}
	cmdline := bench.ShellQuote(argv)
	e.log.Info("fuzz", "target", t.Name, "package", rel, "fuzztime", fuzztime)
	// Building an instrumented test binary under load can take minutes;
	// the fuzzing itself is bounded by -fuzztime.
	limit := 10 * time.Minute
	if d, err := time.ParseDuration(fuzztime); err == nil {
		limit += d
	}
	cctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cmd := exec.CommandContext(cctx, argv[0], argv[1:]...)
	cmd.Dir = e.root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	runErr := cmd.Run()
	logName := filepath.Join(logDir, strings.ReplaceAll(strings.TrimPrefix(rel, "./"), "/", "_")+"_"+t.Name+".log")
	_ = os.WriteFile(logName, out.Bytes(), 0o644)
	// Output that does not parse fails this target only: the others
	// still deserve their run.
	run, perr := bench.ParseFuzzOutput(cmdline, bytes.NewReader(out.Bytes()))
	after, err := listFiles(corpus)
	if err != nil {
		return o, err
	}
	var moved []string
	for name := range after {
		if before[name] {
			continue
		}
		dst := filepath.Join(crashDir, strings.TrimPrefix(rel, "./"), "testdata", "fuzz", t.Name, name)
		if err := moveFile(filepath.Join(corpus, name), dst); err != nil {
			return o, fmt.Errorf("fuzz %s: move crasher out of the tree: %w", t.Name, err)
		}
		moved = append(moved, dst)
	}
	if len(moved) > 0 {
		// go test may have created these for the crasher; os.Remove
		// leaves any that still hold files.
		for d := corpus; d != filepath.Join(e.root, rel); d = filepath.Dir(d) {
			_ = os.Remove(d)
		}
	}

	o.passed = perr == nil && run.Passed && runErr == nil && len(moved) == 0
	seeds := len(before)
	verdict, note := bench.Met, fmt.Sprintf("pass, %d execs", run.Execs)
	switch {
	case o.passed:
	case perr != nil:
		verdict, note = bench.Missed, perr.Error()
	case cctx.Err() != nil && ctx.Err() == nil:
		verdict, note = bench.Missed, fmt.Sprintf("timed out after %s", limit)
	case !run.Progress && bytes.Contains(out.Bytes(), []byte("[build failed]")):
		verdict, note = bench.Missed, "tests did not build: "+lastLines(out.Bytes(), 2)
	default:
		verdict, note = bench.Missed, "FAIL: "+lastLines(out.Bytes(), 3)
	}
	o.figure = bench.Figure{
		Name:  fmt.Sprintf("%s (%s): corpus = %d in testdata + %d new interesting", t.Name, rel, seeds, run.NewInteresting),
		Value: float64(seeds + run.NewInteresting), Unit: "inputs",
		Target: "no failing input", Verdict: verdict, Command: cmdline, Note: note,
	}
	if len(moved) > 0 {
		o.note = fmt.Sprintf("%s (%s) found failing inputs, moved out of the tree to %s; to reproduce, copy one back into %s/testdata/fuzz/%s "+
			"and run `go test -run '%s/NAME' %s`", t.Name, rel, strings.Join(moved, ", "), rel, t.Name, t.Name, rel)
	}
	return o, nil
}

// modulePath is the module's import path, to turn the import paths that go
// test lists into directories.
func (e *env) modulePath(ctx context.Context) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "list", "-m")
	cmd.Dir = e.root
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("fuzz: go list -m: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// pkgDir turns an import path of module mod into a ./relative directory.
func pkgDir(mod, pkg string) (string, error) {
	if pkg == mod {
		return ".", nil
	}
	rest, ok := strings.CutPrefix(pkg, mod+"/")
	if !ok || rest == "" || strings.Contains(rest, "..") {
		return "", fmt.Errorf("fuzz: package %q is not inside module %q", pkg, mod)
	}
	return "./" + rest, nil
}

// listFiles names the regular files of dir; a missing dir has none.
func listFiles(dir string) (map[string]bool, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]bool{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("fuzz corpus: %w", err)
	}
	out := map[string]bool{}
	for _, en := range entries {
		if en.Type().IsRegular() {
			out[en.Name()] = true
		}
	}
	return out, nil
}

func moveFile(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if err := os.Rename(src, dst); err == nil {
		return nil
	}
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		return err
	}
	return os.Remove(src)
}
