package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"

	"nightshift/internal/bench"
)

// env is what every scenario shares: where the module and the scratch
// space are, the mode, and the binaries built so far.
type env struct {
	root  string // module root, where go build and go test run
	work  string // scratch space for plans, configs, homes and logs
	quick bool
	// fuzztime is go test's -fuzztime for each target of the fuzz step.
	fuzztime string
	// sizes overrides the scale scenario's pool sizes (-scale-sizes).
	sizes []int
	// settle is the pause between "every child is up" and the start of a
	// CPU window, so start-up work is not billed as idle cost; 0 means 3 s.
	settle time.Duration
	clock  clockwork.Clock
	log    *slog.Logger

	mu    sync.Mutex
	built map[string]string // package -> binary
}

func scenarios(e *env) []bench.Scenario {
	return []bench.Scenario{
		{Name: "boot", Title: "Boot: launch binary on generated plans", Reproduce: "go run ./cmd/nsbench -run boot", Run: e.bootScenario},
		{Name: "provisioner", Title: "Provisioner: launch throughput and request-to-running latency", Reproduce: "go run ./cmd/nsbench -run provisioner", Run: e.provisionerScenario},
		{Name: "sitter", Title: "Sitter against supervisord: 100 idle processes", Reproduce: "go run ./cmd/nsbench -run sitter", Run: e.sitterScenario},
		{Name: "controller", Title: "Controller and decision engines: time per tick, heartbeat ingest", Reproduce: "go run ./cmd/nsbench -run controller", Run: e.controllerScenario},
		{Name: "recovery", Title: "Recovery end to end on plans/local.toml, teardown of 50 workers", Reproduce: "go run ./cmd/nsbench -run recovery", Run: e.recoveryScenario},
		{Name: "selfheal", Title: "Self-healing: kill -9 of each daemon, the broker node and the keeper on plans/local.toml", Reproduce: "go run ./cmd/nsbench -run selfheal", Run: e.selfhealScenario},
		{Name: "ha", Title: "High availability on plans/ha.toml: the active controller, the active provisioner mid-burst, a broker node", Reproduce: "go run ./cmd/nsbench -run ha", Run: e.haScenario},
		{Name: "scale", Title: "Scale: 100 to 10,000 simulated workers over the real broker, one controller", Reproduce: "go run ./cmd/nsbench -run scale", Run: e.scaleScenario},
		{Name: "fuzz", Title: "Bad-input corpus: every fuzz target of the module", Reproduce: "go run ./cmd/nsbench -run fuzz", Run: e.fuzzScenario},
	}
}

func scenarioNames() []string {
	var n []string
	for _, s := range scenarios(&env{}) {
		n = append(n, s.Name)
	}
	return n
}

// rel shows a scratch path as $WORK/... in recorded commands: the real
// temp path means nothing once it is removed, and -keep prints it.
func (e *env) rel(p string) string {
	if r, err := filepath.Rel(e.work, p); err == nil && !strings.HasPrefix(r, "..") {
		return filepath.Join("$WORK", r)
	}
	return p
}

func (e *env) relArgv(argv []string) string {
	out := make([]string, len(argv))
	for i, a := range argv {
		out[i] = e.rel(a)
	}
	return bench.ShellQuote(out)
}

// build compiles a command of the module once per run into $WORK/bin. A
// package that does not build yet means its scenario is not measured.
func (e *env) build(ctx context.Context, pkg string) (string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if p, ok := e.built[pkg]; ok {
		return p, nil
	}
	bin := filepath.Join(e.work, "bin", filepath.Base(pkg))
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, pkg)
	cmd.Dir = e.root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", bench.NotMeasured("go build %s failed (component not ready?): %v: %s", pkg, err, lastLines(out, 3))
	}
	if e.built == nil {
		e.built = map[string]string{}
	}
	e.built[pkg] = bin
	return bin, nil
}

// goBench runs one package's benchmarks and parses them. It returns the
// exact command for the report.
func (e *env) goBench(ctx context.Context, pkg, pattern, benchtime string, timeout time.Duration) (bench.GoBenchOutput, string, error) {
	argv := []string{"go", "test", "-run", "^$", "-bench", pattern, "-benchtime", benchtime, pkg}
	cmdline := bench.ShellQuote(argv)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = e.root
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	res, perr := bench.ParseGoBench(cmdline, bytes.NewReader(stdout.Bytes()))
	if perr != nil {
		return res, cmdline, fmt.Errorf("parse %s: %w", pkg, perr)
	}
	if len(res.Results) == 0 {
		why := lastLines(append(stdout.Bytes(), stderr.Bytes()...), 3)
		if ctx.Err() != nil {
			why = fmt.Sprintf("timed out after %s", timeout)
		}
		return res, cmdline, bench.NotMeasured("%s produced no benchmark results (%v): %s", cmdline, runErr, why)
	}
	if runErr != nil && len(res.Failed) == 0 {
		res.Failed = append(res.Failed, fmt.Sprintf("(%v)", runErr))
	}
	return res, cmdline, nil
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " / ")
}

// sleepCtx waits d on the injected clock unless ctx ends first.
func sleepCtx(ctx context.Context, clock clockwork.Clock, d time.Duration) error {
	t := clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.Chan():
		return nil
	}
}

func isNotMeasured(err error) bool {
	var nm *bench.NotMeasuredError
	return errors.As(err, &nm)
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
