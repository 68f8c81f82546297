package sitter

import (
	"math"
	"slices"
	"testing"
	"time"
)

func TestTreeOf(t *testing.T) {
	procs := []ProcSample{
		{PID: 1, PPID: 0, PGID: 1},
		{PID: 100, PPID: 1, PGID: 100},   // task leader
		{PID: 101, PPID: 100, PGID: 100}, // child
		{PID: 102, PPID: 101, PGID: 100}, // grandchild
		{PID: 103, PPID: 1, PGID: 100},   // orphan, re-parented to init, same group
		{PID: 104, PPID: 103, PGID: 104}, // child of orphan in its own group
		{PID: 200, PPID: 1, PGID: 200},   // unrelated
		{PID: 300, PPID: 1, PGID: 300},   // setsid escapee found only via cgroup
	}
	var got []int
	for _, p := range TreeOf(procs, 100, []int{300, 999}) {
		got = append(got, p.PID)
	}
	slices.Sort(got)
	if want := []int{100, 101, 102, 103, 104, 300}; !slices.Equal(got, want) {
		t.Errorf("TreeOf = %v, want %v", got, want)
	}
	if tree := TreeOf(procs, 555, nil); len(tree) != 0 {
		t.Errorf("tree of a dead leader = %v, want empty", tree)
	}
}

func TestMeasureAndCheck(t *testing.T) {
	t0 := time.Unix(1000, 0)
	task := Task{Name: "w", Command: []string{"x"}, CPU: 0.5, Mem: 100}
	start := StartUsage(t0)
	// 1s after start: leader burnt 0.8s, child 0.1s → 0.9 cores.
	u1 := Measure([]ProcSample{{PID: 1, CPUSeconds: 0.8, RSSBytes: 10 << 20}, {PID: 2, CPUSeconds: 0.1, RSSBytes: 20 << 20}}, t0.Add(time.Second), start)
	if math.Abs(u1.CPU-0.9) > 1e-9 || u1.MemMB != 30 {
		t.Fatalf("u1 = %+v, want 0.9 cores, 30 MB", u1)
	}
	v, strikes := Check(task, u1, 0)
	if v != nil || strikes != 1 {
		t.Fatalf("first sample over: v=%v strikes=%d, want no violation yet, 1 strike", v, strikes)
	}
	// Child exited; leader burnt 0.7s more in 1s.
	u2 := Measure([]ProcSample{{PID: 1, CPUSeconds: 1.5, RSSBytes: 10 << 20}}, t0.Add(2*time.Second), u1)
	if math.Abs(u2.CPU-0.7) > 1e-9 {
		t.Fatalf("u2.CPU = %g, want 0.7", u2.CPU)
	}
	v, _ = Check(task, u2, strikes)
	if v == nil || v.Kind != ViolationCPU || v.Limit != 0.5 || math.Abs(v.Measured-0.7) > 1e-9 {
		t.Fatalf("second sample over: %+v, want cpu violation 0.7 > 0.5", v)
	}
	// A spike followed by a calm sample resets the strikes.
	calm := Measure([]ProcSample{{PID: 1, CPUSeconds: 1.6}}, t0.Add(3*time.Second), u2)
	if _, s := Check(task, calm, 1); s != 0 {
		t.Errorf("calm sample left %d strikes, want 0", s)
	}
	// Memory is caught on the first sample.
	big := Measure([]ProcSample{{PID: 1, CPUSeconds: 1.6, RSSBytes: 150 << 20}}, t0.Add(4*time.Second), calm)
	if v, _ := Check(task, big, 0); v == nil || v.Kind != ViolationMem || v.Measured != 150 || v.Limit != 100 {
		t.Errorf("mem check = %+v, want mem 150 > 100", v)
	}
}
