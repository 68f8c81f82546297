package bench

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// Metric is one value/unit pair of a benchmark line, such as 1234 ns/op or
// a b.ReportMetric figure like 0.52 p50-ms.
type Metric struct {
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
}

// GoBench is one result line of `go test -bench`.
type GoBench struct {
	// Name is the full benchmark name without the -GOMAXPROCS suffix,
	// e.g. "BenchmarkLaunch/instances=100".
	Name       string   `json:"name"`
	Procs      int      `json:"procs"`
	Iterations int64    `json:"iterations"`
	Metrics    []Metric `json:"metrics"`
}

// Metric returns the value reported with unit, if the line has it.
func (b GoBench) Metric(unit string) (float64, bool) {
	for _, m := range b.Metrics {
		if m.Unit == unit {
			return m.Value, true
		}
	}
	return 0, false
}

// Param returns the integer value of a key=value element of the name, as
// sub-benchmarks spell their sizes ("instances=1000").
func (b GoBench) Param(key string) (int, bool) {
	for _, part := range strings.Split(b.Name, "/") {
		if v, ok := strings.CutPrefix(part, key+"="); ok {
			n, err := strconv.Atoi(v)
			return n, err == nil
		}
	}
	return 0, false
}

// GoBenchOutput is everything ParseGoBench understood.
type GoBenchOutput struct {
	Results []GoBench `json:"results"`
	// Failed lists benchmarks reported as "--- FAIL:", so that a caller
	// can say which size is missing rather than silently dropping it.
	Failed []string `json:"failed,omitempty"`
}

// ParseGoBench reads `go test -bench` output. Log lines, headers (goos,
// pkg, cpu) and PASS/ok lines are ignored; a line that starts like a result
// but does not parse is an error naming source:line, because a figure
// silently dropped would later read as "not measured" for the wrong reason.
func ParseGoBench(source string, r io.Reader) (GoBenchOutput, error) {
	var out GoBenchOutput
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if name, ok := strings.CutPrefix(text, "--- FAIL: "); ok {
			if f := strings.Fields(name); len(f) > 0 && strings.HasPrefix(f[0], "Benchmark") {
				out.Failed = append(out.Failed, f[0])
			}
			continue
		}
		fields := strings.Fields(text)
		// A name alone, or a name followed by whatever the benchmark
		// printed, comes before the result of a benchmark that writes
		// output; the result follows on a later line. Only a name followed
		// by an iteration count is a result line.
		if len(fields) < 2 || !strings.HasPrefix(fields[0], "Benchmark") || !isCount(fields[1]) {
			continue
		}
		res, err := parseResultLine(fields)
		if err != nil {
			return out, fmt.Errorf("%s:%d: benchmark line %q: %w", source, line, text, err)
		}
		out.Results = append(out.Results, res)
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("%s:%d: read: %w", source, line, err)
	}
	return out, nil
}

func parseResultLine(fields []string) (GoBench, error) {
	res := GoBench{Name: fields[0], Procs: 1}
	if i := strings.LastIndexByte(res.Name, '-'); i > 0 {
		if p, err := strconv.Atoi(res.Name[i+1:]); err == nil && p > 0 {
			res.Name, res.Procs = res.Name[:i], p
		}
	}
	n, err := strconv.ParseInt(fields[1], 10, 64)
	if err != nil {
		return res, fmt.Errorf("iterations: %q is not a count: %w", fields[1], err)
	}
	res.Iterations = n
	rest := fields[2:]
	if len(rest)%2 != 0 {
		return res, fmt.Errorf("metrics: %q has a value without a unit", strings.Join(rest, " "))
	}
	for i := 0; i < len(rest); i += 2 {
		v, err := strconv.ParseFloat(rest[i], 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return res, fmt.Errorf("metric %q: value %q is not a finite number", rest[i+1], rest[i])
		}
		res.Metrics = append(res.Metrics, Metric{Value: v, Unit: rest[i+1]})
	}
	return res, nil
}

func isCount(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}
