package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"nightshift/internal/bench"
)

// provisionerScenario runs the provisioner's own BenchmarkLaunch (no-op
// driver, real SQLite) once per size and reads its b.ReportMetric figures.
func (e *env) provisionerScenario(ctx context.Context) (bench.Result, error) {
	var res bench.Result
	pattern, timeout := "^BenchmarkLaunch$", 15*time.Minute
	if e.quick {
		pattern, timeout = "^BenchmarkLaunch$/^instances=(100|1000)$", 90*time.Second
		res.Notes = append(res.Notes, "quick mode skips the 10,000-instance size")
	}
	out, cmd, err := e.goBench(ctx, "./provisioner", pattern, "1x", timeout)
	if err != nil {
		return res, err
	}
	noteFailed(&res, out)
	series := bench.Series{Name: "provisioner: time to launch n instances", SizeUnit: "instances", CostUnit: "s", Command: cmd}
	metrics := []struct{ unit, name, show string }{
		{"launches/s", "launch throughput", "launches/s"},
		{"p50-ms", "request to running, p50", "ms"},
		{"p99-ms", "request to running, p99", "ms"},
		{"heap-B/record", "memory per record (heap)", "B"},
		{"disk-B/record", "disk per record (SQLite + WAL)", "B"},
	}
	for _, r := range sorted(out.Results, "instances") {
		n, _ := r.Param("instances")
		for _, m := range metrics {
			v, ok := r.Metric(m.unit)
			if !ok {
				res.Notes = append(res.Notes, fmt.Sprintf("%s did not report %s", r.Name, m.unit))
				continue
			}
			res.Figures = append(res.Figures, bench.Figure{Name: fmt.Sprintf("%s at %d instances", m.name, n), Value: v, Unit: m.show, Command: cmd})
		}
		if tput, ok := r.Metric("launches/s"); ok && tput > 0 {
			series.Points = append(series.Points, bench.Point{Size: float64(n), Cost: float64(n) / tput})
		}
	}
	if len(res.Figures) == 0 {
		return res, bench.NotMeasured("%s reported no provisioner metrics", cmd)
	}
	res.Series = append(res.Series, series)
	return res, nil
}

// controllerScenario reads the controller benchmarks (tick of a
// steady pool, heartbeat ingest) and the pure decision engines.
func (e *env) controllerScenario(ctx context.Context) (bench.Result, error) {
	var res bench.Result
	benchtime, timeout := "1s", 10*time.Minute
	if e.quick {
		benchtime, timeout = "20x", 90*time.Second
	}
	var missing []string

	out, cmd, err := e.goBench(ctx, "./controller", "^(BenchmarkTick|BenchmarkHeartbeatIngest)$", benchtime, timeout)
	switch {
	case isNotMeasured(err):
		missing = append(missing, err.Error())
	case err != nil:
		return res, err
	default:
		noteFailed(&res, out)
		tick := bench.Series{Name: "controller: one tick of a steady pool", SizeUnit: "instances", CostUnit: "µs", Command: cmd}
		for _, r := range sorted(out.Results, "instances") {
			ns, ok := r.Metric("ns/op")
			if !ok {
				continue
			}
			if n, ok := r.Param("instances"); ok && strings.HasPrefix(r.Name, "BenchmarkTick/") {
				res.Figures = append(res.Figures, bench.Figure{Name: fmt.Sprintf("decision time per tick at %d instances", n), Value: ns / 1e3, Unit: "µs", Command: cmd})
				tick.Points = append(tick.Points, bench.Point{Size: float64(n), Cost: ns / 1e3})
			}
			if r.Name == "BenchmarkHeartbeatIngest" {
				hb, ok := r.Metric("heartbeats/s")
				if !ok && ns > 0 {
					hb = 1e9 / ns
				}
				res.Figures = append(res.Figures, bench.Figure{Name: "heartbeat ingest (decode + record)", Value: hb, Unit: "heartbeats/s",
					Target: ">= 10,000/s on one core", Verdict: atLeast(hb, 10000), Command: cmd})
			}
		}
		if len(tick.Points) > 0 {
			res.Series = append(res.Series, tick)
		}
	}

	out, cmd, err = e.goBench(ctx, "./decision", "^(BenchmarkNPreserving|BenchmarkQueueLen)$", benchtime, timeout)
	switch {
	case isNotMeasured(err):
		missing = append(missing, err.Error())
	case err != nil:
		return res, err
	default:
		noteFailed(&res, out)
		curves := map[string]*bench.Series{}
		var order []string
		for _, r := range sorted(out.Results, "instances") {
			ns, ok1 := r.Metric("ns/op")
			n, ok2 := r.Param("instances")
			if !ok1 || !ok2 {
				continue
			}
			engine := strings.TrimPrefix(r.Name[:strings.LastIndexByte(r.Name, '/')], "Benchmark")
			res.Figures = append(res.Figures, bench.Figure{Name: fmt.Sprintf("engine %s decision at %d instances", engine, n), Value: ns / 1e3, Unit: "µs", Command: cmd})
			s, ok := curves[engine]
			if !ok {
				s = &bench.Series{Name: "decision engine " + engine, SizeUnit: "instances", CostUnit: "µs", Command: cmd}
				curves[engine] = s
				order = append(order, engine)
			}
			s.Points = append(s.Points, bench.Point{Size: float64(n), Cost: ns / 1e3})
		}
		for _, k := range order {
			res.Series = append(res.Series, *curves[k])
		}
	}
	if len(missing) > 0 {
		return res, bench.NotMeasured("%s", strings.Join(missing, "; "))
	}
	return res, nil
}

// sorted orders results by name, then by the size parameter, so the table
// reads small to large whatever order go test printed.
func sorted(rs []bench.GoBench, param string) []bench.GoBench {
	out := slices.Clone(rs)
	slices.SortStableFunc(out, func(a, b bench.GoBench) int {
		pa, pb := a.Name, b.Name
		if i := strings.LastIndexByte(pa, '/'); i > 0 {
			pa = pa[:i]
		}
		if i := strings.LastIndexByte(pb, '/'); i > 0 {
			pb = pb[:i]
		}
		if c := strings.Compare(pa, pb); c != 0 {
			return c
		}
		na, _ := a.Param(param)
		nb, _ := b.Param(param)
		return na - nb
	})
	return out
}

func noteFailed(res *bench.Result, out bench.GoBenchOutput) {
	for _, f := range out.Failed {
		res.Notes = append(res.Notes, "benchmark failed, its figures are missing: "+f)
	}
}

func atLeast(v, limit float64) string {
	if v >= limit {
		return bench.Met
	}
	return bench.Missed
}
