package dashboard

import (
	"time"

	"nightshift/mgmt"
)

// Series is one pool's plot: parallel columns, one entry per sample, the
// shape uPlot draws. T is in Unix seconds; a nil Queue entry is a gap (the
// depth was unknown then).
type Series struct {
	T       []float64 `json:"t"`
	Desired []int     `json:"desired"`
	Running []int     `json:"running"`
	Healthy []int     `json:"healthy"`
	Queue   []*int    `json:"queue"`
}

// Len is the number of samples.
func (s Series) Len() int { return len(s.T) }

// Point is one sample of a pool.
type Point struct {
	Time    time.Time
	Desired int
	Running int
	Healthy int
	Queue   *int
}

// PointOf samples a pool's status: running counts workers in state
// running, healthy those of them whose health is ok (what `mgmt status`
// shows in its table).
func PointOf(t time.Time, j mgmt.JobStatus) Point {
	p := Point{Time: t, Desired: j.Desired}
	for _, w := range j.Workers {
		if w.State != "running" {
			continue
		}
		p.Running++
		if w.Health == "ok" {
			p.Healthy++
		}
	}
	if j.QueueDepth != nil {
		q := *j.QueueDepth
		p.Queue = &q
	}
	return p
}

// History keeps the last samples of every pool the dashboard has seen,
// bounded per pool: the oldest sample goes when a new one would exceed the
// bound. Not safe for concurrent use; the Server's poll loop owns it.
type History struct {
	keep int
	jobs map[string][]Point
}

// NewHistory keeps at most keep samples per pool (at least 2).
func NewHistory(keep int) *History {
	return &History{keep: max(keep, 2), jobs: map[string][]Point{}}
}

// Add records one sample of every pool in jobs at time t. A sample not
// after the pool's last one is dropped, so the time axis only moves on.
func (h *History) Add(t time.Time, jobs []mgmt.JobStatus) {
	for _, j := range jobs {
		pts := h.jobs[j.Name]
		if n := len(pts); n > 0 && !t.After(pts[n-1].Time) {
			continue
		}
		pts = append(pts, PointOf(t, j))
		if len(pts) > h.keep {
			// Copy down rather than reslice, so the backing array does
			// not grow without bound.
			pts = append(pts[:0], pts[len(pts)-h.keep:]...)
		}
		h.jobs[j.Name] = pts
	}
}

// Series returns the samples of job, oldest first.
func (h *History) Series(job string) Series {
	return seriesOf(h.jobs[job])
}

func seriesOf(pts []Point) Series {
	s := Series{
		T: make([]float64, len(pts)), Desired: make([]int, len(pts)), Running: make([]int, len(pts)),
		Healthy: make([]int, len(pts)), Queue: make([]*int, len(pts)),
	}
	for i, p := range pts {
		s.T[i] = float64(p.Time.UnixMilli()) / 1000
		s.Desired[i], s.Running[i], s.Healthy[i], s.Queue[i] = p.Desired, p.Running, p.Healthy, p.Queue
	}
	return s
}
