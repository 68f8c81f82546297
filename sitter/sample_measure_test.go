package sitter

import (
	"math"
	"slices"
	"testing"
	"time"
)

// TestMeasurePIDReuse: a pid whose start time changed between samples is a
// new process, so all of its CPU time is new; subtracting what its
// predecessor had burnt would hide it (or go negative and be dropped).
func TestMeasurePIDReuse(t *testing.T) {
	t0 := time.Unix(1000, 0)
	prev := Measure([]ProcSample{{PID: 7, CPUSeconds: 10, Start: 100}}, t0, StartUsage(t0.Add(-time.Second)))
	cases := []struct {
		name string
		now  ProcSample
		want float64 // cores over the 1 s interval
	}{
		{"same process", ProcSample{PID: 7, CPUSeconds: 10.5, Start: 100}, 0.5},
		{"pid reused", ProcSample{PID: 7, CPUSeconds: 0.75, Start: 250}, 0.75},
		{"start unknown now", ProcSample{PID: 7, CPUSeconds: 10.25}, 0.25},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			u := Measure([]ProcSample{c.now}, t0.Add(time.Second), prev)
			if math.Abs(u.CPU-c.want) > 1e-9 {
				t.Errorf("CPU = %g, want %g", u.CPU, c.want)
			}
		})
	}
}

func TestUsageMembers(t *testing.T) {
	u := Measure([]ProcSample{{PID: 3, Start: 30}, {PID: 4, Start: 40}, {PID: 5}}, time.Unix(1, 0), Usage{})
	want := []Member{{PID: 3, Start: 30}, {PID: 4, Start: 40}, {PID: 5}}
	if got := u.Members(); !slices.Equal(got, want) {
		t.Errorf("Members = %v, want %v", got, want)
	}
	if got := (Usage{}).Members(); len(got) != 0 {
		t.Errorf("Members of an empty usage = %v", got)
	}
}
