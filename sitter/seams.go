package sitter

import "context"

// Sampler measures processes and the host. The default implementation is
// internal/psutil (/proc, cgroup counters, gopsutil for host vitals), which
// also implements TreeSampler; tests may fake it.
type Sampler interface {
	// Processes lists every process on the host once, so that all task
	// trees can be cut from one consistent scan.
	Processes(ctx context.Context) ([]ProcSample, error)
	// Host returns the machine's load and memory.
	Host(ctx context.Context) (HostVitals, error)
}

// TreeSampler is an optional extension of Sampler that measures only the
// given task trees, so that a sample costs in proportion to what the sitter
// supervises rather than to every process on the host. The sitter uses it
// when its Sampler implements it and falls back to Processes+TreeOf
// otherwise; internal/psutil implements it.
type TreeSampler interface {
	// Trees returns, for each root still alive, the processes of its tree
	// keyed by Root.PID (see Root for what belongs). A root that is gone,
	// or whose start time no longer matches, has no entry. The slices are
	// the caller's to keep. With an error, a non-nil map still holds the
	// trees that could be read.
	Trees(ctx context.Context, roots []Root) (map[int][]ProcSample, error)
}

// Root is one run's process tree as the sitter knows it between samples.
// A tree is the leader and its descendants (also those that called setsid),
// plus Known members still alive, plus Extra, plus their descendants.
type Root struct {
	// PID is the run's leader; it leads its own process group.
	PID int
	// Start is the leader's start time in clock ticks since boot; 0 skips
	// the check. A leader whose start differs is another process that got
	// the pid after the run's leader died.
	Start uint64
	// Known are members seen in earlier samples. They stay members after
	// their parent dies and they are re-parented outside the tree, but only
	// while their start time matches (a reused pid is not a member).
	Known []Member
	// Extra are pids known to belong now, taken without a start check.
	Extra []int
	// Group is the run's cgroup, nil in polling mode. A sampler may read
	// the group's own counters instead of walking the tree (then the tree
	// is the leader alone, carrying the whole group's use); when it walks,
	// the group's members count as Extra.
	Group Group
}

// Member identifies one process across samples: the pid and the start
// time (clock ticks since boot) that tell it apart from a later process
// with the same pid.
type Member struct {
	PID   int
	Start uint64
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
