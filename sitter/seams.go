package sitter

import "context"

// Sampler measures processes and the host. The default implementation is
// internal/psutil (gopsutil); tests may fake it.
type Sampler interface {
	// Processes lists every process on the host once, so that all task
	// trees can be cut from one consistent scan.
	Processes(ctx context.Context) ([]ProcSample, error)
	// Host returns the machine's load and memory.
	Host(ctx context.Context) (HostVitals, error)
}

// Limits are hard caps handed to the kernel. Zero means no cap.
type Limits struct {
	CPU      float64 // cores
	MemBytes uint64
}

// Limiter puts a run into a kernel-enforced group (a cgroup). The
// implementation is internal/cgroup; nil means polling only.
type Limiter interface {
	// Mode names the mechanism: "cgroup-v2", "cgroup-v1" or "polling".
	Mode() string
	// Create makes a fresh, empty group named name with the given caps.
	Create(ctx context.Context, name string, l Limits) (Group, error)
}

// Group is one run's cgroup.
type Group interface {
	// Add moves pid into the group.
	Add(pid int) error
	// PIDs lists the processes in the group.
	PIDs() ([]int, error)
	// OOM reports whether the kernel killed something in the group for
	// crossing its memory cap, and the peak memory use in bytes.
	OOM() (killed bool, peakBytes uint64, err error)
	// Remove kills whatever is left and deletes the group.
	Remove(ctx context.Context) error
}
