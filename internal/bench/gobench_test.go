package bench

import (
	"bytes"
	"encoding/json"
	"flag"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name, or rewrites it under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/bench -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the output; got:\n%s", path, got)
	}
}

func TestParseGoBenchGolden(t *testing.T) {
	inputs, _ := filepath.Glob("testdata/gobench/*.txt")
	if len(inputs) < 3 {
		t.Fatalf("want at least 3 inputs in testdata/gobench, found %d", len(inputs))
	}
	for _, in := range inputs {
		t.Run(filepath.Base(in), func(t *testing.T) {
			b, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			out, err := ParseGoBench(in, bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			js, _ := json.MarshalIndent(out, "", "  ")
			golden(t, strings.TrimPrefix(strings.TrimSuffix(in, ".txt"), "testdata/")+".golden.json", append(js, '\n'))
		})
	}
}

func TestParseGoBenchFigures(t *testing.T) {
	b, err := os.ReadFile("testdata/gobench/provisioner.txt")
	if err != nil {
		t.Fatal(err)
	}
	out, err := ParseGoBench("provisioner.txt", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Results) != 1 {
		t.Fatalf("results = %d, want 1", len(out.Results))
	}
	r := out.Results[0]
	if r.Name != "BenchmarkLaunch/instances=100" || r.Procs != 2 || r.Iterations != 1 {
		t.Errorf("name/procs/iterations = %q/%d/%d", r.Name, r.Procs, r.Iterations)
	}
	if n, ok := r.Param("instances"); !ok || n != 100 {
		t.Errorf("Param(instances) = %d, %v", n, ok)
	}
	for unit, want := range map[string]float64{"p50-ms": 82.94, "p99-ms": 100.1, "launches/s": 844.6, "ns/op": 118420979} {
		if v, ok := r.Metric(unit); !ok || v != want {
			t.Errorf("Metric(%s) = %v, %v; want %v", unit, v, ok, want)
		}
	}
	if _, ok := r.Metric("allocs/op"); ok {
		t.Error("Metric(allocs/op) found a metric the line does not have")
	}
}

func TestParseGoBenchErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"value not a number", "goos: linux\nBenchmarkX-2  10  abc ns/op\n", "src:2: benchmark line \"BenchmarkX-2  10  abc ns/op\": metric \"ns/op\": value \"abc\" is not a finite number"},
		{"value not finite", "BenchmarkX-2 10 NaN ns/op\n", "src:1: benchmark line \"BenchmarkX-2 10 NaN ns/op\": metric \"ns/op\": value \"NaN\" is not a finite number"},
		{"value without unit", "BenchmarkX-2 10 12 ns/op 7\n", "src:1: benchmark line \"BenchmarkX-2 10 12 ns/op 7\": metrics: \"12 ns/op 7\" has a value without a unit"},
		{"iterations overflow", "BenchmarkX 99999999999999999999 1 ns/op\n", "src:1: benchmark line \"BenchmarkX 99999999999999999999 1 ns/op\": iterations: \"99999999999999999999\" is not a count"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseGoBench("src", strings.NewReader(tc.in))
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("err = %v\nwant prefix %s", err, tc.want)
			}
		})
	}
}

func TestParam(t *testing.T) {
	for _, tc := range []struct {
		name, key string
		want      int
		ok        bool
	}{
		{"BenchmarkLaunch/instances=1000", "instances", 1000, true},
		{"BenchmarkQueueLen/step/instances=10", "instances", 10, true},
		{"BenchmarkQueueLen/step/instances=x", "instances", 0, false},
		{"BenchmarkLaunch", "instances", 0, false},
		{"BenchmarkLaunch/maxinstances=5", "instances", 0, false},
	} {
		n, ok := GoBench{Name: tc.name}.Param(tc.key)
		if n != tc.want || ok != tc.ok {
			t.Errorf("%s: Param(%s) = %d, %v; want %d, %v", tc.name, tc.key, n, ok, tc.want, tc.ok)
		}
	}
}

// FuzzParseGoBench: any input gives results or an error naming the line,
// never a panic, and every result has a name and finite metric units.
func FuzzParseGoBench(f *testing.F) {
	for _, in := range []string{"BenchmarkX-2 1 5 ns/op\n", "--- FAIL: BenchmarkY\n", "BenchmarkZ 3 1 a 2 b\n"} {
		f.Add(in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, err := ParseGoBench("fuzz", strings.NewReader(in))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz:") {
				t.Fatalf("error does not name its source: %v", err)
			}
			return
		}
		for _, r := range out.Results {
			if !strings.HasPrefix(r.Name, "Benchmark") || r.Procs < 1 || r.Iterations < 0 {
				t.Fatalf("bad result %+v", r)
			}
			for _, m := range r.Metrics {
				if m.Unit == "" || math.IsNaN(m.Value) || math.IsInf(m.Value, 0) {
					t.Fatalf("metric without unit in %+v", r)
				}
			}
		}
	})
}
